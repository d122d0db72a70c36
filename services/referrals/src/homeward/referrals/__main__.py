"""python -m homeward.referrals"""


def main() -> None:
    raise SystemExit("the referrals service is not built yet")


if __name__ == "__main__":
    main()
