#!/usr/bin/env bash
# Validate the Kubernetes manifests (scripts/containers/manifests.py says how); installs the
# tools first. Usage: check-manifests.sh [KUSTOMIZATION_DIR ...]   (default: base + every overlay)
set -euo pipefail
source "$(dirname "$0")/env.sh"
"$(dirname "$0")/install-tools.sh"
exec "$TOOLS/venv/bin/python" "$(dirname "$0")/manifests.py" "$ROOT" "$@"
