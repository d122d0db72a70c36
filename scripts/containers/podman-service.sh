#!/usr/bin/env bash
# podman's Docker-compatible API on $PODMAN_SOCKET (default /run/homeward-podman/podman.sock),
# for testcontainers and compose: `podman-service.sh start` starts it unless it answers already
# (and prints the DOCKER_HOST to use); `podman-service.sh stop` stops the one it started.
# Never the default /var/run/docker.sock: elsewhere the native stack stays the default.
set -euo pipefail
source "$(dirname "$0")/env.sh"
pidfile="$CACHE/podman-service.pid"

answers() { curl -fsS --max-time 2 --unix-socket "$PODMAN_SOCKET" http://d/_ping >/dev/null 2>&1; }

case "${1:-start}" in
  start)
    if ! answers; then
      command -v podman >/dev/null || die "podman not found (scripts/containers/install-tools.sh installs it)"
      mkdir -p "$(dirname "$PODMAN_SOCKET")" "$CACHE"
      podman system service --time=0 "unix://$PODMAN_SOCKET" >"$CACHE/podman-service.log" 2>&1 &
      echo $! > "$pidfile"
      for _ in $(seq 1 100); do answers && break; sleep 0.2; done
      answers || die "podman system service did not answer on $PODMAN_SOCKET; see $CACHE/podman-service.log"
    fi
    echo "unix://$PODMAN_SOCKET"
    ;;
  stop)
    if [ -f "$pidfile" ]; then
      kill "$(cat "$pidfile")" 2>/dev/null || true
      rm -f "$pidfile"
    fi
    ;;
  *) die "usage: podman-service.sh start|stop" ;;
esac
