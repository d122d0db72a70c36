"""Financial years and bed-days.

The NHS financial year runs from 1 April to 31 March and is written "2026-27". A bed-day is
counted per midnight: a stay from ``start`` to ``end`` (the discharge day, exclusive) costs
one night for each date ``start <= d < end``, and each night belongs to the financial year
and month of its own date. Ranges of nights are half-open ``[start, end)`` everywhere.
"""

from __future__ import annotations

import calendar
import datetime as dt

FY_FIRST_MONTH = 4


def fy_of(day: dt.date) -> int:
    """The financial year a date (or the night starting on it) falls in, named by its first calendar year."""
    return day.year if day.month >= FY_FIRST_MONTH else day.year - 1


def fy_label(year: int) -> str:
    return f"{year}-{(year + 1) % 100:02d}"


def parse_fy(label: str) -> int:
    """``"2026-27"`` -> 2026; refuses labels whose two years do not follow each other."""
    first, sep, second = label.partition("-")
    if not (sep and len(first) == 4 and len(second) == 2 and first.isdigit() and second.isdigit()):
        raise ValueError(f"a financial year is written like 2026-27, not {label!r}")
    year = int(first)
    if (year + 1) % 100 != int(second):
        raise ValueError(f"{label!r} is not a financial year: the second year must follow the first")
    return year


def fy_start(year: int) -> dt.date:
    return dt.date(year, FY_FIRST_MONTH, 1)


def fy_end(year: int) -> dt.date:
    """The first day after the financial year (exclusive end)."""
    return dt.date(year + 1, FY_FIRST_MONTH, 1)


def fy_days(year: int) -> int:
    return (fy_end(year) - fy_start(year)).days


def nights(start: dt.date, end: dt.date) -> int:
    return max(0, (end - start).days)


def split_by_fy(start: dt.date, end: dt.date) -> list[tuple[int, dt.date, dt.date]]:
    """``[start, end)`` cut at 1 April: (financial year, first night, exclusive end) per piece."""
    out: list[tuple[int, dt.date, dt.date]] = []
    a = start
    while a < end:
        year = fy_of(a)
        b = min(end, fy_end(year))
        out.append((year, a, b))
        a = b
    return out


def month_starts_between(start: dt.date, end: dt.date) -> list[dt.date]:
    """First days of months strictly after ``start`` and strictly before ``end``."""
    out: list[dt.date] = []
    d = dt.date(start.year + (start.month == 12), start.month % 12 + 1, 1)
    while d < end:
        out.append(d)
        d = dt.date(d.year + (d.month == 12), d.month % 12 + 1, 1)
    return out


def add_months(day: dt.date, months: int) -> dt.date:
    """Calendar months later, clipped to the month's last day (29 Feb 2028 + 12 months = 28 Feb 2029)."""
    index = day.year * 12 + (day.month - 1) + months
    year, month = divmod(index, 12)
    last = calendar.monthrange(year, month + 1)[1]
    return dt.date(year, month + 1, min(day.day, last))


def twelve_months_from(day: dt.date) -> dt.date:
    """Exclusive end of the 12 months that start on ``day``."""
    return add_months(day, 12)
