"""python -m homeward.ingress"""

from homeward.kit.service import run

from .entrypoints.app import build_definition


def main() -> None:
    run(build_definition())


if __name__ == "__main__":
    main()
