"""``python -m homeward.staff``: serve the staff view (HOMEWARD_STAFF_HTTP_HOST/PORT)."""

from __future__ import annotations

import uvicorn

from .app import build_app
from .assets import AssetsMissing, install
from .settings import StaffSettings


def main() -> None:
    settings = StaffSettings()
    try:
        install(dev=False)  # the design system's CSS, from npm, once (again when the lock file changes)
    except AssetsMissing as exc:
        print(f"staff view: {exc}")
    uvicorn.run(build_app(settings), host=settings.http_host, port=settings.http_port, log_level="warning")


if __name__ == "__main__":
    main()
