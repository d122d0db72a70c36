"""The staff view's browser assets from npm: the NHS design system (``nhsuk-frontend``: its CSS,
fonts and icons) and, for the tests, ``axe-core``.

Installed with ``npm ci`` from the committed ``npm/package.json`` and ``package-lock.json`` into
``<repo>/.local/staff/node_modules`` (``HOMEWARD_STAFF_ASSETS_DIR`` elsewhere, e.g. a container
image), never into the source tree, and again only when the lock file changes. The staff app
serves them itself: a page never loads anything from a CDN.

Run by ``scripts/bootstrap.sh`` (``python -m homeward.staff.assets``), by the main job before it
starts the staff view, and by the tests.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

NPM_SOURCE = Path(__file__).resolve().parent / "npm"
MARKER = ".homeward-installed"


class AssetsMissing(RuntimeError):
    """npm could not install the assets, or they are not installed where expected."""


def _repo_root() -> Path:
    here = Path(__file__).resolve()
    for parent in here.parents:
        if (parent / "pyproject.toml").exists() and (parent / "services").is_dir():
            return parent
    return Path.cwd()


def assets_dir() -> Path:
    """Where ``node_modules`` lives: ``HOMEWARD_STAFF_ASSETS_DIR``, else ``<repo>/.local/staff``."""
    configured = os.environ.get("HOMEWARD_STAFF_ASSETS_DIR")
    return Path(configured) if configured else _repo_root() / ".local" / "staff"


def _lock_hash() -> str:
    h = hashlib.sha256()
    for name in ("package.json", "package-lock.json"):
        h.update((NPM_SOURCE / name).read_bytes())
    return h.hexdigest()


def _marker_text(dev: bool) -> str:
    return f"{_lock_hash()} {'dev' if dev else 'production'}"


def installed(target: Path | None = None, *, dev: bool = False) -> bool:
    """This lock file's tree is installed (with the development packages, if ``dev``)."""
    target = target or assets_dir()
    marker = target / MARKER
    if not marker.is_file() or not (target / "node_modules").is_dir():
        return False
    found = marker.read_text().strip()
    return found == _marker_text(dev) or (not dev and found == _marker_text(True))


def install(target: Path | None = None, *, dev: bool = True) -> Path:
    """``npm ci`` into ``target`` unless it already holds this lock file's tree; returns its
    ``node_modules``. ``dev`` also installs axe-core (the tests'). Safe to run concurrently."""
    target = target or assets_dir()
    target.mkdir(parents=True, exist_ok=True)
    with (target / ".install.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if installed(target, dev=dev):
            return target / "node_modules"
        npm = shutil.which("npm")
        if not npm:
            raise AssetsMissing(
                "npm not found: it installs the NHS design system's CSS (apt-get install -y nodejs npm)"
            )
        (target / MARKER).unlink(missing_ok=True)
        for name in ("package.json", "package-lock.json"):
            shutil.copyfile(NPM_SOURCE / name, target / name)
        argv = [npm, "ci", "--no-audit", "--no-fund", "--ignore-scripts", "--loglevel=error"]
        if not dev:
            argv.append("--omit=dev")
        done = subprocess.run(argv, cwd=target, capture_output=True, text=True, timeout=900, check=False)
        if done.returncode != 0:
            raise AssetsMissing(
                f"npm could not install the staff view's assets (exit code {done.returncode}); check that the npm "
                f"registry is reachable, then rerun `{' '.join(argv)}` in {target}\n{done.stdout}{done.stderr}"
            )
        (target / MARKER).write_text(_marker_text(dev) + "\n")
    return target / "node_modules"


def frontend_dist(node_modules: Path) -> Path:
    """The compiled design system inside nhsuk-frontend: the CSS and its fonts and icons."""
    return node_modules / "nhsuk-frontend" / "dist" / "nhsuk"


def main() -> int:
    try:
        modules = install(dev="--production" not in sys.argv)
    except AssetsMissing as exc:
        print(f"staff assets: {exc}", file=sys.stderr)
        return 1
    print(f"staff assets: installed in {modules}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
