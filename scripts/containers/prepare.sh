#!/usr/bin/env bash
# Everything the container checks need, made or reused (tests/test_containers.py runs it once
# per test session; `make image` and friends too): the tools, the image built and linted, the
# stand-ins where podman is the engine, and podman's Docker-compatible socket. Prints what it
# made as NAME=value lines on stdout; everything else goes to stderr.
set -euo pipefail
source "$(dirname "$0")/env.sh"
out="$("$(dirname "$0")/image.sh")"   # its last line: ENGINE IMAGE
read -r engine image <<<"$(tail -1 <<<"$out")"
echo "ENGINE=$engine"
echo "HOMEWARD_IMAGE=$image"
if [ "$engine" = podman ]; then
  "$(dirname "$0")/standin-images.sh" >&2
  echo "DOCKER_HOST=$("$(dirname "$0")/podman-service.sh" start)"
  echo "HOMEWARD_KAFKA_IMAGE=$KAFKA_STANDIN"
  echo "HOMEWARD_POSTGRES_IMAGE=$POSTGRES_STANDIN"
  echo "HOMEWARD_MAIL_IMAGE=$MAIL_STANDIN"
fi
