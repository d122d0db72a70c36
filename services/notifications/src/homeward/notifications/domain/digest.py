"""The daily digest: which day's digest is due, and what its subject says."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass

from .formatting import UK, day, plural


@dataclass(frozen=True)
class DigestWindow:
    """The digest for ``date`` goes out at ``cutoff`` and holds the alerts recorded before it,
    plus, on its own day, late alerts (``Timeliness``: due in the recent past) recorded up to
    ``late_until`` (the moment the digest is made), so that a late report or a backfill read
    after the digest hour is in that day's digest, not the next day's."""

    date: dt.date
    cutoff: dt.datetime
    late_until: dt.datetime | None = None


def current_window(now: dt.datetime, hour: int) -> DigestWindow:
    """The latest digest whose time has come: today's once it is ``hour`` o'clock (UK time), else yesterday's."""
    local = now.astimezone(UK)
    today = local.hour >= hour
    date = local.date() if today else local.date() - dt.timedelta(days=1)
    cutoff = dt.datetime.combine(date, dt.time(hour), tzinfo=UK)
    return DigestWindow(date, cutoff, now if today else None)


@dataclass(frozen=True)
class DigestItem:
    subject: str
    due_by: dt.date
    facts: Sequence[tuple[str, str]]


def digest_subject(date: dt.date, items: Sequence[DigestItem]) -> str:
    earliest = min(i.due_by for i in items)
    return f"Action needed by {day(earliest)}: {plural(len(items), 'alert')} in your Homeward digest for {day(date)}"
