"""python -m homeward.notifications"""


def main() -> None:
    raise SystemExit("the notifications service is not built yet")


if __name__ == "__main__":
    main()
