#!/usr/bin/env bash
# Install what a fresh Debian machine lacks for Homeward: Debian packages, uv, and the
# Python workspace. Idempotent: each step checks first and does nothing when satisfied.
# Kafka's jars (Maven Central) and maildev (npm) are fetched by `homeward-stack up`; the staff
# view's CSS and axe-core (npm) are installed here, into .local/staff.
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf '\033[1mbootstrap:\033[0m %s\n' "$*"; }
die() { printf '\033[31mbootstrap: %s\033[0m\n' "$*" >&2; exit 1; }

need_apt=()
command -v java >/dev/null || need_apt+=(openjdk-17-jre-headless)
command -v mvn >/dev/null || need_apt+=(maven)
command -v node >/dev/null || need_apt+=(nodejs)
command -v npm >/dev/null || need_apt+=(npm)
command -v kcat >/dev/null || need_apt+=(kcat)
command -v jq >/dev/null || need_apt+=(jq)
command -v curl >/dev/null || need_apt+=(curl)
command -v docker-compose >/dev/null || need_apt+=(docker-compose)
[ -x /usr/lib/postgresql/15/bin/postgres ] || ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1 || need_apt+=(postgresql)
if [ "${HOMEWARD_BROWSER_TESTS:-1}" = "1" ]; then
  command -v chromium >/dev/null || need_apt+=(chromium)
fi

if [ ${#need_apt[@]} -gt 0 ]; then
  if [ "$(id -u)" != "0" ]; then
    die "missing Debian packages: ${need_apt[*]}. Run as root, or: sudo apt-get install -y ${need_apt[*]}"
  fi
  say "installing Debian packages: ${need_apt[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq || die "apt-get update failed (is the Debian mirror reachable?)"
  apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null \
    || die "apt-get install ${need_apt[*]} failed; see the message above"
fi

if ! command -v uv >/dev/null; then
  say "installing uv from PyPI"
  python3.11 -m pip install --quiet uv 2>/dev/null || python3 -m pip install --quiet uv \
    || die "could not install uv with pip (is PyPI reachable?)"
fi

export UV_PYTHON_DOWNLOADS=never
PY="$(command -v python3.11 || true)"
[ -n "$PY" ] || die "Python 3.11 is required (python3.11 not found)"
say "syncing the Python workspace (uv, Python 3.11)"
uv sync --frozen --all-packages --python "$PY" --quiet || die "uv sync failed; see the message above"

# The staff view's browser assets from npm (the NHS design system's CSS; axe-core for the tests),
# into .local/staff: the pages serve them themselves, never from a CDN. Again only when the lock
# file (src/homeward/staff/npm/) changes.
say "installing the staff view's assets (npm ci: nhsuk-frontend, axe-core)"
.venv/bin/python -m homeward.staff.assets >/dev/null \
  || die "could not install the staff view's assets with npm; see the message above"
