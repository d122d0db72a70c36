"""Whether an alert is about today: send it, gather it into the daily digest, or suppress it.

"Today" is the service clock's date in the UK (``uk_date(clock.now())``), never the event's
own time: a replay or a backfill re-publishes history with old business dates, and its
alerts are judged against the day they are read on. The main job runs the services "as of"
the scenario's today (``HOMEWARD_CLOCK``), so a replay is judged against that day; in
production the clock is the system clock.

* **current**: the action is due today or later (the date in the subject has not passed):
  an email of its own, or the recipient's digest if they read digests.
* **late**: due before today but no more than ``history_after_days`` days before it (a late
  report, or the recent end of a backfill): still worth doing, so it goes into the
  recipient's daily digest, not an email of its own.
* **history**: due more than ``history_after_days`` days before today: nobody can act on it
  by its date any more; recorded as ``suppressed`` with the reason, never emailed.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Literal

from .formatting import day, plural

DEFAULT_HISTORY_AFTER_DAYS = 14

Kind = Literal["current", "late", "history"]


@dataclass(frozen=True)
class Judgement:
    kind: Kind
    reason: str | None = None


@dataclass(frozen=True)
class Timeliness:
    history_after_days: int = DEFAULT_HISTORY_AFTER_DAYS

    def judge(self, due_by: dt.date, today: dt.date) -> Judgement:
        past = (today - due_by).days
        if past <= 0:
            return Judgement("current")
        if past <= self.history_after_days:
            return Judgement("late", f"due by {day(due_by)}, {plural(past, 'day')} before {day(today)}: in the digest")
        return Judgement(
            "history",
            f"history: the action was due by {day(due_by)}, {plural(past, 'day')} before {day(today)} "
            f"(more than {plural(self.history_after_days, 'day')})",
        )
