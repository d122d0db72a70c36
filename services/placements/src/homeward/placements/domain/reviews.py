"""Review schedules: which reviews a placement needs, when each is due, and when to alert.

The policy is a table (``review_policy.csv``), keyed by cohort, age band, setting and
whether the placement is out of area; ``*`` matches anything and the most specific
matching row wins for each review type. docs/placements.md cites where each default
comes from.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

from homeward.contracts.vocab import AgeBand, Cohort, ReviewOutcome, ReviewType, Setting

POLICY_COLUMNS = (
    "cohort",
    "age_band",
    "setting",
    "out_of_area",
    "review_type",
    "interval_days",
    "due_soon_days",
    "escalate_after_days",
)
MAX_ESCALATION_LEVEL = 3


class PolicyError(ValueError):
    pass


@dataclass(frozen=True)
class ReviewRule:
    review_type: ReviewType
    interval_days: int
    due_soon_days: int
    escalate_after_days: int
    source: str = ""


@dataclass(frozen=True)
class PolicyRow:
    cohort: Cohort | None
    age_band: AgeBand | None
    setting: Setting | None
    out_of_area: bool | None
    rule: ReviewRule

    @property
    def specificity(self) -> int:
        return sum(v is not None for v in (self.cohort, self.age_band, self.setting, self.out_of_area))

    def matches(self, cohort: Cohort, age_band: AgeBand, setting: Setting, out_of_area: bool) -> bool:
        return (
            self.cohort in (None, cohort)
            and self.age_band in (None, age_band)
            and self.setting in (None, setting)
            and self.out_of_area in (None, out_of_area)
        )


class ReviewPolicy:
    def __init__(self, rows: Iterable[PolicyRow], origin: str = "review policy") -> None:
        self.rows = tuple(rows)
        self.origin = origin

    @classmethod
    def from_csv(cls, text: str, origin: str = "review_policy.csv") -> ReviewPolicy:
        """Parse the policy table; lines starting with ``#`` are comments (sources, notes)."""
        numbered = [(n, line) for n, line in enumerate(text.splitlines(), 1) if line.strip()]
        numbered = [(n, line) for n, line in numbered if not line.lstrip().startswith("#")]
        if not numbered:
            raise PolicyError(f"{origin}: empty review policy")
        header_line, header = numbered[0]
        columns = tuple(c.strip() for c in next(csv.reader([header])))
        if columns != POLICY_COLUMNS:
            raise PolicyError(f"{origin}:{header_line}: the header must be {','.join(POLICY_COLUMNS)}")
        rows = []
        for n, line in numbered[1:]:
            values = [v.strip() for v in next(csv.reader(io.StringIO(line)))]
            if len(values) != len(POLICY_COLUMNS):
                raise PolicyError(f"{origin}:{n}: expected {len(POLICY_COLUMNS)} columns, got {len(values)}")
            rows.append(_row(dict(zip(POLICY_COLUMNS, values, strict=True)), f"{origin}:{n}"))
        return cls(rows, origin)

    def rules_for(self, cohort: Cohort, age_band: AgeBand, setting: Setting, out_of_area: bool) -> list[ReviewRule]:
        """For each review type, the most specific matching row (the first such row on a tie).
        A row with interval 0 means "no review of this type" and can switch off a wider row."""
        best: dict[ReviewType, PolicyRow] = {}
        for row in self.rows:
            if not row.matches(cohort, age_band, setting, out_of_area):
                continue
            current = best.get(row.rule.review_type)
            if current is None or row.specificity > current.specificity:
                best[row.rule.review_type] = row
        rules = [row.rule for row in best.values() if row.rule.interval_days > 0]
        return sorted(rules, key=lambda r: r.review_type.value)


def _row(raw: dict[str, str], where: str) -> PolicyRow:
    def enum(kind: type[Cohort] | type[AgeBand] | type[Setting], value: str) -> object:
        if value == "*":
            return None
        try:
            return kind(value)
        except ValueError:
            allowed = ", ".join(m.value for m in kind)
            raise PolicyError(f"{where}: {value!r} is not one of {allowed} or *") from None

    def days(name: str, minimum: int) -> int:
        try:
            value = int(raw[name])
        except ValueError:
            raise PolicyError(f"{where}: {name} must be a whole number of days") from None
        if value < minimum:
            raise PolicyError(f"{where}: {name} must be at least {minimum}")
        return value

    ooa = raw["out_of_area"].lower()
    if ooa not in ("*", "true", "false"):
        raise PolicyError(f"{where}: out_of_area must be true, false or *")
    try:
        review_type = ReviewType(raw["review_type"])
    except ValueError:
        allowed = ", ".join(m.value for m in ReviewType)
        raise PolicyError(f"{where}: review_type must be one of {allowed}") from None
    return PolicyRow(
        cohort=enum(Cohort, raw["cohort"]),  # type: ignore[arg-type]
        age_band=enum(AgeBand, raw["age_band"]),  # type: ignore[arg-type]
        setting=enum(Setting, raw["setting"]),  # type: ignore[arg-type]
        out_of_area=None if ooa == "*" else ooa == "true",
        rule=ReviewRule(
            review_type=review_type,
            interval_days=days("interval_days", 0),
            due_soon_days=days("due_soon_days", 0),
            escalate_after_days=days("escalate_after_days", 1),
            source=where,
        ),
    )


@dataclass(frozen=True)
class Review:
    review_type: ReviewType
    review_date: dt.date
    outcome: ReviewOutcome
    next_review_due: dt.date | None
    event_id: str

    def same_as(self, other: Review) -> bool:
        return (self.review_type, self.review_date, self.outcome, self.next_review_due) == (
            other.review_type,
            other.review_date,
            other.outcome,
            other.next_review_due,
        )


@dataclass(frozen=True)
class ReviewSchedule:
    rule: ReviewRule
    due_date: dt.date
    last_review_date: dt.date | None = None

    @property
    def review_type(self) -> ReviewType:
        return self.rule.review_type


def next_due(start_date: dt.date, rule: ReviewRule, reviews: Iterable[Review]) -> ReviewSchedule:
    """The first review is due one interval after the start; each completed review moves the
    next due date to one interval after the latest review of that type, or to an earlier date
    agreed at that review. A review reported late (older than the latest) moves nothing."""
    relevant = [r for r in reviews if r.review_type is rule.review_type]
    if not relevant:
        return ReviewSchedule(rule, start_date + dt.timedelta(days=rule.interval_days), None)
    latest = max(relevant, key=lambda r: r.review_date)
    due = latest.review_date + dt.timedelta(days=rule.interval_days)
    if latest.next_review_due is not None and latest.next_review_due < due:
        due = latest.next_review_due
    return ReviewSchedule(rule, due, latest.review_date)


AlertKind = Literal["due_soon", "overdue"]


@dataclass(frozen=True)
class Alert:
    kind: AlertKind
    review_type: ReviewType
    due_date: dt.date
    days: int  # days until due (due soon) or days overdue
    level: int  # 0 for due soon; escalation level 1..3 when overdue


def overdue_level(days_overdue: int, escalate_after_days: int) -> int:
    """1 once overdue, 2 after a further ``escalate_after_days``, 3 after twice that."""
    return min(MAX_ESCALATION_LEVEL, 1 + (days_overdue - 1) // escalate_after_days)


def alert_for(schedule: ReviewSchedule, *, today: dt.date, end_date: dt.date | None = None) -> Alert | None:
    """What, if anything, to say about one scheduled review as of ``today``.

    Nobody is chased about a discharged person: a placement that has ended (its end date is
    ``today`` or earlier) gets nothing, whenever the scheduler first sees it, so a review missed
    before the end is never escalated or first announced after it. Due dates on or after a
    known end date get nothing either. The miss itself stays on record in the placement's
    schedule (``/placements/{id}?as_of=`` a day before the end).
    """
    due = schedule.due_date
    rule = schedule.rule
    if end_date is not None and (due >= end_date or today >= end_date):
        return None
    if today <= due:
        until = (due - today).days
        if until <= rule.due_soon_days:
            return Alert("due_soon", rule.review_type, due, until, 0)
        return None
    days_overdue = (today - due).days
    return Alert("overdue", rule.review_type, due, days_overdue, overdue_level(days_overdue, rule.escalate_after_days))
