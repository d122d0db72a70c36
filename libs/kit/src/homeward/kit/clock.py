"""An injectable clock, so schedulers and tests can run 'as of' any instant."""

from __future__ import annotations

import datetime as dt
from typing import Protocol


class Clock(Protocol):
    def now(self) -> dt.datetime: ...

    def today(self) -> dt.date: ...


class SystemClock:
    def now(self) -> dt.datetime:
        return dt.datetime.now(dt.UTC)

    def today(self) -> dt.date:
        return self.now().date()


class FixedClock:
    """A clock that stands still until moved; used for demos 'as of' a date and in tests."""

    def __init__(self, at: dt.datetime | dt.date) -> None:
        self._at = _aware(at)

    def now(self) -> dt.datetime:
        return self._at

    def today(self) -> dt.date:
        return self._at.date()

    def set(self, at: dt.datetime | dt.date) -> None:
        self._at = _aware(at)

    def advance(self, delta: dt.timedelta) -> None:
        self._at += delta


def _aware(at: dt.datetime | dt.date) -> dt.datetime:
    if not isinstance(at, dt.datetime):
        at = dt.datetime.combine(at, dt.time(12, 0))
    return at if at.tzinfo else at.replace(tzinfo=dt.UTC)


def clock_from(setting: dt.datetime | None) -> Clock:
    return FixedClock(setting) if setting is not None else SystemClock()
