"""``python -m homeward.notifications`` runs the service; with arguments it is the admin CLI
(``homeward-notifications recipients add ...``)."""

from __future__ import annotations

import sys


def main() -> None:
    if len(sys.argv) > 1:
        from .entrypoints.cli import app

        app()
        return
    from homeward.kit.service import run

    from .entrypoints.app import build_definition

    run(build_definition())


if __name__ == "__main__":
    main()
