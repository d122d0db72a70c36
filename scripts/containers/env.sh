# Sourced by the container scripts: where things live and how podman is configured.
# Nothing here touches /etc/containers: podman reads the project's own settings.
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
CACHE="${HOMEWARD_CONTAINERS_CACHE:-$ROOT/.local/containers}"
TOOLS="$CACHE/tools"
export CONTAINERS_CONF="${CONTAINERS_CONF:-$ROOT/containers/podman/containers.conf}"
export CONTAINERS_STORAGE_CONF="${CONTAINERS_STORAGE_CONF:-$ROOT/containers/podman/storage.conf}"
export PATH="$TOOLS/bin:$PATH"
# The local base image (made by base-image.sh) and the image names the checks use.
BASE_IMAGE="${HOMEWARD_BASE_IMAGE:-localhost/homeward-base/python:3.11-bookworm}"
HOMEWARD_IMAGE="${HOMEWARD_IMAGE:-localhost/homeward:ci}"
STANDIN_BASE="${HOMEWARD_STANDIN_BASE:-localhost/homeward-base/standins:bookworm}"
# The CI-only stand-ins (containers/README.md) of the official images docker-compose.yml names.
KAFKA_STANDIN="localhost/homeward-standin/kafka:4.1.1"
POSTGRES_STANDIN="localhost/homeward-standin/postgres:15"
MAIL_STANDIN="localhost/homeward-standin/maildev:2.2.1"
# podman's Docker-compatible API, for testcontainers and docker-compose (never the default
# /var/run/docker.sock: the native stack stays the default for everything else).
PODMAN_SOCKET="${HOMEWARD_PODMAN_SOCKET:-/run/homeward-podman/podman.sock}"

say() { printf '\033[1mcontainers:\033[0m %s\n' "$*" >&2; }
die() { printf '\033[31mcontainers: %s\033[0m\n' "$*" >&2; exit 1; }

# The engine: docker where its daemon answers, else podman (installed by install-tools.sh).
engine() {
  if [ -n "${HOMEWARD_CONTAINER_ENGINE:-}" ]; then echo "$HOMEWARD_CONTAINER_ENGINE"; return; fi
  # A docker CLI pointed at podman's socket (DOCKER_HOST) answers too: that is podman.
  if command -v docker >/dev/null && [ "${DOCKER_HOST:-}" != "unix://$PODMAN_SOCKET" ] \
     && docker info >/dev/null 2>&1; then echo docker; return; fi
  command -v podman >/dev/null && { echo podman; return; }
  echo none
}
