#!/usr/bin/env bash
# Local base images, for machines that reach Debian's packages but no container registry:
# mmdebstrap builds a minimal Debian from the machine's own apt sources, and podman imports it.
#
#   base-image.sh python     a stand-in for python:3.11-slim-bookworm: the Dockerfile's
#                            PYTHON_IMAGE build arg in the local checks (the production build
#                            keeps the official image)
#   base-image.sh standins   the base of the CI-only Kafka, PostgreSQL and MailDev stand-ins
#                            (containers/*/Containerfile): Java, PostgreSQL 15, Node.js
#
# It carries the machine's CA certificates (SSL_CERT_FILE, PIP_CERT, UV_SYSTEM_CERTS=1) so that
# pip and uv inside a build reach the package index through a TLS-inspecting proxy, if the
# machine has one. That is why it is never pushed anywhere.
#
# Cached: the image is rebuilt only when this script changes (its hash is the image label),
# and a copy is kept in .local/containers/ for machines whose podman storage was wiped.
set -euo pipefail
source "$(dirname "$0")/env.sh"

kind="${1:-python}"
case "$kind" in
  # pip installed from Debian's pip wheel, not Debian's python3-pip: as in the official image,
  # it lives in /usr/local, where the Dockerfile's `pip uninstall` in the final stage removes it
  # (it cannot remove Debian's; Debian's python also refuses ensurepip).
  python) image="$BASE_IMAGE"; include=python3,python3-pip-whl,ca-certificates ;;
  standins) image="$STANDIN_BASE"
    include=python3,ca-certificates,openjdk-17-jre-headless,postgresql-15,nodejs,wget,procps ;;
  *) die "usage: base-image.sh python|standins" ;;
esac
stamp="$( (cat "$0"; echo "$kind") | sha256sum | cut -c1-16)"
archive="$CACHE/base-$kind-$stamp.tar"
if [ "$(podman image inspect --format '{{index .Labels "org.homeward.stamp"}}' "$image" 2>/dev/null)" = "$stamp" ]; then
  exit 0
fi
if [ -f "$archive" ]; then
  say "loading the local base image from $archive"
  podman load --quiet -i "$archive" >/dev/null && exit 0
fi
command -v mmdebstrap >/dev/null || die "mmdebstrap not found (scripts/containers/install-tools.sh installs it)"
mkdir -p "$CACHE"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
say "making the local base image $image with mmdebstrap (Debian $kind: $include)"
suite="$(. /etc/os-release && echo "${VERSION_CODENAME:-bookworm}")"
mmdebstrap --quiet --variant=minbase \
  --include="$include" \
  --customize-hook='ln -sf /usr/bin/python3.11 "$1/usr/local/bin/python3.11"' \
  --customize-hook='ln -sf /usr/bin/python3.11 "$1/usr/local/bin/python3"' \
  --customize-hook='ln -sf /usr/bin/python3.11 "$1/usr/local/bin/python"' \
  --customize-hook='rm -f "$1"/usr/lib/python3*/EXTERNALLY-MANAGED' \
  --customize-hook='for w in "$1"/usr/share/python-wheels/pip-*.whl; do [ -e "$w" ] || continue; w="${w#"$1"}";
      chroot "$1" python3.11 "$w/pip" install --quiet --no-index --no-cache-dir --disable-pip-version-check --root-user-action=ignore "$w"; done' \
  --customize-hook='cp /etc/ssl/certs/ca-certificates.crt "$1/etc/ssl/certs/ca-certificates.crt"' \
  --customize-hook='rm -rf "$1"/var/lib/apt/lists/* "$1"/var/cache/apt/*' \
  "$suite" "$work/rootfs.tar"
podman import --quiet \
  --change 'ENV PATH=/usr/local/bin:/usr/local/sbin:/usr/sbin:/usr/bin:/sbin:/bin' \
  --change 'ENV LANG=C.UTF-8' \
  --change 'ENV SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt' \
  --change 'ENV PIP_CERT=/etc/ssl/certs/ca-certificates.crt' \
  --change 'ENV UV_SYSTEM_CERTS=1' \
  --change "LABEL org.homeward.stamp=$stamp" \
  --change 'CMD ["python3"]' \
  "$work/rootfs.tar" "$image" >/dev/null
rm -f "$CACHE/base-$kind-"*.tar
podman save --quiet -o "$archive" "$image"
say "local base image $image ready ($(podman image inspect --format '{{.Size}}' "$image") bytes)"
