"""python -m homeward.placements: run the placements service."""

from __future__ import annotations


def main() -> None:
    from homeward.kit.service import run

    from .entrypoints.app import build_definition

    run(build_definition())


if __name__ == "__main__":
    main()
