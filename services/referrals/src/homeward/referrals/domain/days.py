"""Days and hours, in UTC: the time arithmetic the model and the rules share.

Dates are days in UTC: a placement starting on a date started at 00:00 UTC that day. Waits are
counted in whole hours. Both ``model`` and ``rules`` import this module, and it imports neither,
so the two do not import each other in a cycle.
"""

from __future__ import annotations

import datetime as dt


def start_of_day(day: dt.date) -> dt.datetime:
    return dt.datetime.combine(day, dt.time(0, 0), tzinfo=dt.UTC)


def end_of_day(day: dt.date) -> dt.datetime:
    """The instant a date's figures are taken at: the last moment of that day (UTC), so that
    a placement starting the next day has not started yet."""
    return start_of_day(day + dt.timedelta(days=1)) - dt.timedelta(microseconds=1)


def whole_hours(start: dt.datetime, end: dt.datetime) -> int:
    """Complete hours from ``start`` to ``end``; never negative."""
    return max(0, int((end - start).total_seconds() // 3600))
