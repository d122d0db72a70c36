"""python -m homeward.placements"""


def main() -> None:
    raise SystemExit("the placements service is not built yet")


if __name__ == "__main__":
    main()
