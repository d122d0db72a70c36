"""How values read in an email: money from integer pence, dates as people write them."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

UK = ZoneInfo("Europe/London")


def money(pence: int) -> str:
    """£1,234.56 from 123456 pence; a negative amount reads -£12.00."""
    sign = "-" if pence < 0 else ""
    pounds, rest = divmod(abs(pence), 100)
    return f"{sign}£{pounds:,}.{rest:02d}"


def day(value: dt.date) -> str:
    """12 Mar 2026."""
    return f"{value.day} {value:%b %Y}"


def moment(value: dt.datetime) -> str:
    """12 Mar 2026 14:05 in UK time."""
    local = value.astimezone(UK)
    return f"{day(local.date())} {local:%H:%M}"


def uk_date(value: dt.datetime) -> dt.date:
    return value.astimezone(UK).date()


def plural(n: int, word: str, words: str | None = None) -> str:
    return f"{n} {word if n == 1 else (words or word + 's')}"


def percent(part: int, whole: int) -> str:
    if whole <= 0:
        return "n/a"
    return f"{part * 100 / whole:.1f}%"


_ACRONYMS = {"picu": "PICU", "camhs": "CAMHS", "ld": "LD", "mha": "MHA", "cto": "CTO", "dols": "DoLS"}


def label(value: str) -> str:
    """A vocabulary code as words: ``older_adult_acute`` -> ``older adult acute``, ``picu`` -> ``PICU``."""
    return " ".join(_ACRONYMS.get(word, word) for word in value.split("_"))


def article(word: str) -> str:
    """``an adult acute`` or ``a PICU``: the indefinite article, by the first letter's sound."""
    return f"{'an' if word[:1].lower() in 'aeio' else 'a'} {word}"
