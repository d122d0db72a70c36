#!/usr/bin/env bash
# Build the production image from ./Dockerfile and lint it (make image; tests/test_containers.py).
#
# The engine is docker where its daemon answers, else podman (HOMEWARD_CONTAINER_ENGINE picks).
# With docker, the Dockerfile's own base (python:3.11-slim-bookworm from the registry). With
# podman, the local base image (base-image.sh) unless HOMEWARD_PYTHON_IMAGE names another:
# the build is the same Dockerfile, only its PYTHON_IMAGE build arg differs, so nothing of the
# local base (its CA certificates) enters the production build path.
#
# The image is tagged $HOMEWARD_IMAGE (default localhost/homeward:ci). podman builds with
# --format docker: the OCI format has no HEALTHCHECK.
set -euo pipefail
source "$(dirname "$0")/env.sh"
"$(dirname "$0")/install-tools.sh"

say "hadolint Dockerfile"
hadolint "$ROOT/Dockerfile" || die "hadolint found problems in the Dockerfile (above)"

engine="$(engine)"
case "$engine" in
  docker)
    args=()
    [ -n "${HOMEWARD_PYTHON_IMAGE:-}" ] && args+=(--build-arg "PYTHON_IMAGE=$HOMEWARD_PYTHON_IMAGE")
    say "docker build -t $HOMEWARD_IMAGE"
    docker build "${args[@]}" -t "$HOMEWARD_IMAGE" "$ROOT" >&2 ;;
  podman)
    base="${HOMEWARD_PYTHON_IMAGE:-}"
    if [ -z "$base" ]; then
      "$(dirname "$0")/base-image.sh" python
      base="$BASE_IMAGE"
    fi
    say "podman build --format docker --build-arg PYTHON_IMAGE=$base -t $HOMEWARD_IMAGE"
    podman build --quiet --format docker --build-arg "PYTHON_IMAGE=$base" -t "$HOMEWARD_IMAGE" "$ROOT" >/dev/null \
      || die "podman build failed; run it again without --quiet to see why: podman build --format docker --build-arg PYTHON_IMAGE=$base $ROOT" ;;
  *) die "no container engine: neither a docker daemon nor podman (scripts/containers/install-tools.sh installs podman)" ;;
esac
echo "$engine $HOMEWARD_IMAGE"
