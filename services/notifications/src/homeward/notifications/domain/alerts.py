"""Alert-worthy events, turned into what a member of staff must do and by when.

An :class:`Alert` holds only what an email may say: references, sites, dates, days and
money, already formatted. It never carries a patient reference, an NHS number or a name,
and every text value passes through the NHS-number redaction as a last guard (a partner
could put anything in a free-form reference). Templates see an Alert, never a payload.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, TypeVar

from homeward.contracts import Event, Payload
from homeward.contracts.events import (
    AmountHeld,
    BudgetThresholdBreached,
    FundingShare,
    InvoiceVarianceFound,
    LocalCapacityUnavailable,
    PatientRepatriated,
    PlacementAwaitingAgreement,
    PlacementRegistered,
    ReferralWaitBreached,
    ReviewDueSoon,
    ReviewOverdue,
)
from homeward.contracts.vocab import AgeBand, OutOfAreaReason, ReviewType
from homeward.kit.redaction import redact_text

from .formatting import article, day, label, moment, money, percent, plural, uk_date

# Days from the alert to the date in its subject. ReviewDueSoon is due by its due date and a
# breached referral wait needs a bed today, so both are 0. The others are Homeward's defaults,
# not national rules; HOMEWARD_NOTIFICATIONS_RESPOND_WITHIN_DAYS overrides them.
DEFAULT_RESPOND_WITHIN_DAYS: Mapping[str, int] = MappingProxyType(
    {
        "ReviewOverdue": 7,
        "ReviewDueSoon": 0,
        "PatientRepatriated": 14,
        "LocalCapacityUnavailable": 7,
        "ReferralWaitBreached": 0,
        "BudgetThresholdBreached": 14,
        "InvoiceVarianceFound": 14,
        "PlacementAwaitingAgreement": 2,
        "AmountHeld": 5,
    }
)
# Commissioner oversight visits to people placed out of area: every 8 weeks for adults and
# every 6 weeks for children (DOMAIN.md, "Commissioner oversight visits").
DEFAULT_OVERSIGHT_VISIT_WEEKS: Mapping[str, int] = MappingProxyType(
    {AgeBand.CHILD.value: 6, AgeBand.ADULT.value: 8, AgeBand.OLDER_ADULT.value: 8}
)

REVIEW_SHORT = {
    ReviewType.OVERSIGHT_VISIT: "Oversight visit",
    ReviewType.CTR: "CTR",
    ReviewType.CETR: "CETR",
    ReviewType.CPA_REVIEW: "CPA review",
}
REVIEW_LONG = {
    ReviewType.OVERSIGHT_VISIT: "commissioner oversight visit",
    ReviewType.CTR: "Care and Treatment Review (CTR)",
    ReviewType.CETR: "Care, Education and Treatment Review (CETR)",
    ReviewType.CPA_REVIEW: "Care Programme Approach review",
}
OUT_OF_AREA_REASONS = {
    OutOfAreaReason.NO_LOCAL_BED: "10: no bed at the referring organisation",
    OutOfAreaReason.SAFEGUARDING: "11: safeguarding",
    OutOfAreaReason.OFFENDING_RESTRICTIONS: "12: offending restrictions",
    OutOfAreaReason.STAFF_OR_FAMILY_LINK: "13: staff member or family/friend within the referring organisation",
    OutOfAreaReason.PATIENT_CHOICE: "14: patient choice",
    OutOfAreaReason.NOT_KNOWN: "99: not known",
}


@dataclass(frozen=True)
class AlertPolicy:
    respond_within_days: Mapping[str, int] = field(default_factory=lambda: dict(DEFAULT_RESPOND_WITHIN_DAYS))
    oversight_visit_weeks: Mapping[str, int] = field(default_factory=lambda: dict(DEFAULT_OVERSIGHT_VISIT_WEEKS))

    def respond_by(self, name: str, start: dt.date) -> dt.date:
        days = self.respond_within_days.get(name, DEFAULT_RESPOND_WITHIN_DAYS.get(name, 7))
        return start + dt.timedelta(days=days)


@dataclass(frozen=True)
class Alert:
    """One alert-worthy event as staff read it."""

    event_id: str
    event_type: str
    name: str
    occurred_at: dt.datetime
    correlation_id: str | None
    commissioner: str
    organisations: frozenset[str]
    reference: str
    escalation_level: int
    due_by: dt.date
    subject: str
    action: str
    headline: str
    facts: tuple[tuple[str, str], ...]
    values: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class _Draft:
    reference: str
    due_by: dt.date
    what: str
    action: str
    headline: str
    facts: list[tuple[str, str | None]]
    values: dict[str, str]
    organisations: set[str]
    escalation_level: int = 1


P = TypeVar("P", bound=Payload)
Builder = Callable[[Any, Event[Any], AlertPolicy], _Draft | None]
_BUILDERS: dict[type[Payload], Builder] = {}


def _builds(cls: type[P]) -> Callable[[Callable[[P, Event[Any], AlertPolicy], _Draft | None]], Builder]:
    def register(fn: Callable[[P, Event[Any], AlertPolicy], _Draft | None]) -> Builder:
        _BUILDERS[cls] = fn
        return fn

    return register


def _funders(funding: list[FundingShare]) -> set[str]:
    return {f.commissioner for f in funding}


def _funding_text(funding: list[FundingShare]) -> str | None:
    if len(funding) < 2:
        return None
    return ", ".join(f"{f.commissioner} {f.share_bp / 100:g}%" for f in funding)


@_builds(ReviewOverdue)
def _review_overdue(p: ReviewOverdue, _: Event[Any], policy: AlertPolicy) -> _Draft:
    found_on = p.due_date + dt.timedelta(days=p.days_overdue)
    short, long = REVIEW_SHORT[p.review_type], REVIEW_LONG[p.review_type]
    overdue = plural(p.days_overdue, "day")
    action = f"Arrange the overdue {long} for placement {p.placement_id}"
    return _Draft(
        reference=p.placement_id,
        due_by=policy.respond_by("ReviewOverdue", found_on),
        what=f"{short} overdue {overdue} — placement {p.placement_id} at {p.provider_site}",
        action=action,
        headline=(
            f"The {long} for placement {p.placement_id} at {p.provider_site} was due on {day(p.due_date)} "
            f"and is {overdue} overdue."
        ),
        facts=[
            ("Placement", p.placement_id),
            ("Provider site", f"{p.provider_site} ({p.provider})"),
            ("Commissioner", p.commissioner),
            ("Review", long),
            ("Due date", day(p.due_date)),
            ("Days overdue", str(p.days_overdue)),
            ("Escalation level", str(p.escalation_level)),
            ("Last review", day(p.last_review_date) if p.last_review_date else "none recorded"),
            ("Bed type", label(p.bed_type.value)),
            ("Out of area", "yes" if p.out_of_area else "no"),
        ],
        values={"review": long, "review_short": short, "days_overdue": str(p.days_overdue)},
        organisations={p.commissioner, p.provider},
        escalation_level=p.escalation_level,
    )


@_builds(ReviewDueSoon)
def _review_due_soon(p: ReviewDueSoon, _: Event[Any], policy: AlertPolicy) -> _Draft:
    short, long = REVIEW_SHORT[p.review_type], REVIEW_LONG[p.review_type]
    when = "today" if p.days_until_due == 0 else f"in {plural(p.days_until_due, 'day')}"
    return _Draft(
        reference=p.placement_id,
        due_by=policy.respond_by("ReviewDueSoon", p.due_date),
        what=f"{short} due {when} — placement {p.placement_id} at {p.provider_site}",
        action=f"Book the {long} for placement {p.placement_id}",
        headline=(
            f"The {long} for placement {p.placement_id} at {p.provider_site} is due on {day(p.due_date)} ({when})."
        ),
        facts=[
            ("Placement", p.placement_id),
            ("Provider site", f"{p.provider_site} ({p.provider})"),
            ("Commissioner", p.commissioner),
            ("Review", long),
            ("Due date", day(p.due_date)),
            ("Days until due", str(p.days_until_due)),
            ("Bed type", label(p.bed_type.value)),
            ("Out of area", "yes" if p.out_of_area else "no"),
        ],
        values={"review": long, "review_short": short},
        organisations={p.commissioner, p.provider},
    )


@_builds(PlacementRegistered)
def _placement_registered(p: PlacementRegistered, _: Event[Any], policy: AlertPolicy) -> _Draft | None:
    if not p.out_of_area:
        return None
    weeks = policy.oversight_visit_weeks.get(p.age_band.value, 8)
    reason = OUT_OF_AREA_REASONS[p.out_of_area_reason] if p.out_of_area_reason else "not given"
    headline = (
        f"Placement {p.placement_id} started on {day(p.start_date)} at {p.provider_site} ({p.provider}), "
        f"which lies in {p.provider_site_area}, outside the commissioner's area {p.commissioner_area}."
    )
    if p.inappropriate:
        headline += " It is an inappropriate out-of-area placement: there was no local bed."
    return _Draft(
        reference=p.placement_id,
        due_by=p.start_date + dt.timedelta(weeks=weeks),
        what=f"first oversight visit — new out-of-area placement {p.placement_id} at {p.provider_site}",
        action=f"Plan the first commissioner oversight visit to placement {p.placement_id} and its route home",
        headline=headline,
        facts=[
            ("Placement", p.placement_id),
            ("Referral", p.referral_id),
            ("Commissioner", f"{p.commissioner} (area {p.commissioner_area})"),
            ("Provider site", f"{p.provider_site} ({p.provider}), area {p.provider_site_area}"),
            ("Start date", day(p.start_date)),
            ("Planned end", day(p.planned_end_date) if p.planned_end_date else None),
            ("Daily rate", money(p.daily_rate_pence)),
            ("Out-of-area reason", reason),
            ("Inappropriate", "yes" if p.inappropriate else "no"),
            ("Distance from home", f"{p.distance_from_home_km} km" if p.distance_from_home_km is not None else None),
            ("Bed type", label(p.bed_type.value)),
            ("Independent provider", "yes" if p.independent_provider else "no"),
            ("Funding", _funding_text(p.funding)),
        ],
        values={"visit_weeks": str(weeks)},
        organisations={p.commissioner, p.provider, *_funders(p.funding)},
    )


@_builds(PatientRepatriated)
def _patient_repatriated(p: PatientRepatriated, _: Event[Any], policy: AlertPolicy) -> _Draft:
    difference = p.from_daily_rate_pence - p.to_daily_rate_pence
    return _Draft(
        reference=p.from_placement_id,
        due_by=policy.respond_by("PatientRepatriated", p.repatriated_on),
        what=f"close out-of-area placement {p.from_placement_id} — moved home to {p.to_site}",
        action=(
            f"Close the out-of-area placement {p.from_placement_id} and its commitment, "
            f"and confirm the care plan at {p.to_site}"
        ),
        headline=(
            f"The person in placement {p.from_placement_id} at {p.from_site} moved home on "
            f"{day(p.repatriated_on)} to placement {p.to_placement_id} at {p.to_site}."
        ),
        facts=[
            ("From placement", f"{p.from_placement_id} at {p.from_site}"),
            ("To placement", f"{p.to_placement_id} at {p.to_site}"),
            ("Commissioner", p.commissioner),
            ("Moved on", day(p.repatriated_on)),
            ("Previous daily rate", money(p.from_daily_rate_pence)),
            ("New daily rate", money(p.to_daily_rate_pence)),
            ("Daily difference", money(difference)),
            ("Difference over 12 months", money(difference * 365)),
            ("Recorded", "stated by a partner" if p.explicit else "matched by Homeward"),
            ("Funding", _funding_text(p.funding)),
        ],
        values={"daily_difference": money(difference), "year_difference": money(difference * 365)},
        organisations={p.commissioner, *_funders(p.funding)},
    )


@_builds(LocalCapacityUnavailable)
def _local_capacity_unavailable(p: LocalCapacityUnavailable, _: Event[Any], policy: AlertPolicy) -> _Draft:
    bed = label(p.bed_type.value)
    reason = OUT_OF_AREA_REASONS[p.out_of_area_reason] if p.out_of_area_reason else "not given"
    return _Draft(
        reference=p.referral_id,
        due_by=policy.respond_by("LocalCapacityUnavailable", p.placed_on),
        what=f"plan a return for placement {p.placement_id} at {p.placed_site} — no local {bed} bed",
        action=(
            f"Find {article('local ' + bed)} bed in {p.home_area} for placement {p.placement_id} and plan the move home"
        ),
        headline=(
            f"Referral {p.referral_id} was placed out of area at {p.placed_site} on {day(p.placed_on)} "
            f"after {plural(p.waited_hours, 'hour')}: no {bed} bed was free in {p.home_area}."
        ),
        facts=[
            ("Referral", p.referral_id),
            ("Placement", p.placement_id),
            ("Commissioner", p.commissioner),
            ("Home area", p.home_area),
            ("Placed at", p.placed_site),
            ("Placed on", day(p.placed_on)),
            ("Bed type", bed),
            ("Hours waited", str(p.waited_hours)),
            ("Out-of-area reason", reason),
        ],
        values={"bed_type": bed},
        organisations={p.commissioner},
    )


@_builds(ReferralWaitBreached)
def _referral_wait_breached(p: ReferralWaitBreached, _: Event[Any], policy: AlertPolicy) -> _Draft:
    bed = label(p.bed_type.value)
    breached_at = p.waiting_since + dt.timedelta(hours=p.waited_hours)
    return _Draft(
        reference=p.referral_id,
        due_by=policy.respond_by("ReferralWaitBreached", uk_date(breached_at)),
        what=(
            f"find {article(bed)} bed — referral {p.referral_id} waiting {plural(p.waited_hours, 'hour')} "
            f"(target {p.threshold_hours})"
        ),
        action=f"Find {article(bed)} bed for referral {p.referral_id}",
        headline=(
            f"Referral {p.referral_id} ({p.urgency.value}) has waited {plural(p.waited_hours, 'hour')} "
            f"for {article(bed)} bed since {moment(p.waiting_since)}, past the {p.threshold_hours}-hour target."
        ),
        facts=[
            ("Referral", p.referral_id),
            ("Commissioner", p.commissioner),
            ("Bed type", bed),
            ("Urgency", p.urgency.value),
            ("Waiting since", moment(p.waiting_since)),
            ("Hours waited", str(p.waited_hours)),
            ("Target (hours)", str(p.threshold_hours)),
        ],
        values={"bed_type": bed},
        organisations={p.commissioner},
    )


@_builds(BudgetThresholdBreached)
def _budget_threshold_breached(p: BudgetThresholdBreached, _: Event[Any], policy: AlertPolicy) -> _Draft:
    scope = label(p.programme.value) if p.programme else "all programmes"
    share = percent(p.forecast_outturn_pence, p.allocated_pence)
    over = p.forecast_outturn_pence - p.allocated_pence
    return _Draft(
        reference=f"{p.commissioner}/{p.financial_year}",
        due_by=policy.respond_by("BudgetThresholdBreached", p.as_of),
        what=(
            f"review the {p.financial_year} forecast — {money(p.forecast_outturn_pence)} is {share} "
            f"of the {money(p.allocated_pence)} allocation ({p.commissioner}, {scope})"
        ),
        action=f"Review the {p.financial_year} forecast outturn for {p.commissioner} ({scope})",
        headline=(
            f"As of {day(p.as_of)}, the forecast outturn for {p.commissioner} ({scope}, {p.financial_year}) is "
            f"{money(p.forecast_outturn_pence)}, {share} of the {money(p.allocated_pence)} allocated, past the "
            f"{p.threshold_percent}% threshold."
        ),
        facts=[
            ("Commissioner", p.commissioner),
            ("Financial year", p.financial_year),
            ("Programme", scope),
            ("Allocated", money(p.allocated_pence)),
            ("Forecast outturn", money(p.forecast_outturn_pence)),
            ("Forecast as share of allocation", share),
            ("Threshold", f"{p.threshold_percent}%"),
            ("Forecast overspend", money(over) if over > 0 else None),
            ("As of", day(p.as_of)),
        ],
        values={"share": share},
        organisations={p.commissioner},
    )


@_builds(InvoiceVarianceFound)
def _invoice_variance_found(p: InvoiceVarianceFound, event: Event[Any], policy: AlertPolicy) -> _Draft:
    direction = "above" if p.variance_pence > 0 else "below"
    gap = money(abs(p.variance_pence))
    return _Draft(
        reference=p.invoice_id,
        due_by=policy.respond_by("InvoiceVarianceFound", uk_date(event.time)),
        what=f"check invoice {p.invoice_id} — {gap} {direction} accrual for placement {p.placement_id}",
        action=f"Check invoice {p.invoice_id} from {p.provider} against the placement's rate and dates",
        headline=(
            f"Invoice {p.invoice_id} from {p.provider} for placement {p.placement_id} "
            f"({day(p.period_start)} to {day(p.period_end)}) is {gap} {direction} what Homeward accrued, "
            f"beyond the {money(p.tolerance_pence)} tolerance."
        ),
        facts=[
            ("Invoice", p.invoice_id),
            ("Placement", p.placement_id),
            ("Provider", p.provider),
            ("Commissioner", p.commissioner),
            ("Period", f"{day(p.period_start)} to {day(p.period_end)}"),
            ("Invoiced", money(p.invoiced_pence)),
            ("Accrued", money(p.accrued_pence)),
            ("Variance", money(p.variance_pence)),
            ("Tolerance", money(p.tolerance_pence)),
        ],
        values={"direction": direction, "gap": gap},
        organisations={p.commissioner, p.provider},
    )


@_builds(PlacementAwaitingAgreement)
def _placement_awaiting_agreement(p: PlacementAwaitingAgreement, event: Event[Any], policy: AlertPolicy) -> _Draft:
    where = "out of area" if p.out_of_area else "in area"
    return _Draft(
        reference=p.placement_id,
        due_by=policy.respond_by("PlacementAwaitingAgreement", uk_date(event.time)),
        what=f"agree or query placement {p.placement_id} at {p.provider_site} — reported by {p.reported_by}",
        action=(
            f"Agree placement {p.placement_id} (send PlacementAgreed, or the PlacementMade yourself) "
            f"or query it with {p.provider}"
        ),
        headline=(
            f"{p.reported_by} reports that placement {p.placement_id} started on {day(p.start_date)} at "
            f"{p.provider_site} ({p.provider}, {where}) at {money(p.daily_rate_pence)} a day, "
            f"funded by {p.commissioner}. "
            "Nothing is charged to the budget until the commissioner agrees it."
        ),
        facts=[
            ("Placement", p.placement_id),
            ("Reported by", p.reported_by),
            ("Commissioner", p.commissioner),
            ("Provider site", f"{p.provider_site} ({p.provider})"),
            ("Start date", day(p.start_date)),
            ("Daily rate", money(p.daily_rate_pence)),
            ("Bed type", label(p.bed_type.value)),
            ("Out of area", "yes" if p.out_of_area else "no"),
            ("Funding", _funding_text(p.funding)),
        ],
        values={"reported_by": p.reported_by},
        organisations={p.commissioner, *_funders(p.funding)},
    )


@_builds(AmountHeld)
def _amount_held(p: AmountHeld, event: Event[Any], policy: AlertPolicy) -> _Draft:
    bounds = f"{money(p.lower_pence)} to {money(p.upper_pence)} a day"
    bed = label(p.bed_type.value)
    if p.kind == "invoice":
        reference = p.invoice_id or p.placement_id
        what = (
            f"confirm or query invoice {reference} — {money(p.daily_rate_pence)} a night for placement {p.placement_id}"
        )
        action = f"Check invoice {reference} from {p.provider}; confirm it (InvoiceConfirmed) only if it is right"
        headline = (
            f"Invoice {reference} from {p.provider} for placement {p.placement_id} comes to "
            f"{money(p.daily_rate_pence)} a night, outside the plausible {bounds} for {article(bed)} bed. "
            "It is held, not matched or paid, until the commissioner confirms it."
        )
    else:
        reference = p.placement_id
        when = day(p.effective_date) if p.effective_date else "the start"
        what = f"confirm or query the daily rate of placement {p.placement_id} — {money(p.daily_rate_pence)}"
        action = f"Check the rate of placement {p.placement_id}; confirm it (RateConfirmed) only if it is right"
        headline = (
            f"{p.asserted_by} stated a daily rate of {money(p.daily_rate_pence)} from {when} for placement "
            f"{p.placement_id}, outside the plausible {bounds} for {article(bed)} bed. It is held, not charged, "
            "until the commissioner confirms it."
        )
    return _Draft(
        reference=reference,
        due_by=policy.respond_by("AmountHeld", uk_date(event.time)),
        what=what,
        action=action,
        headline=headline,
        facts=[
            ("Placement", p.placement_id),
            ("Invoice", p.invoice_id),
            ("Stated by", p.asserted_by),
            ("Commissioner", p.commissioner),
            ("Provider", p.provider),
            ("Bed type", bed),
            ("Daily rate" if p.kind == "daily_rate" else "Amount per night", money(p.daily_rate_pence)),
            ("Invoiced", money(p.invoice_amount_pence) if p.invoice_amount_pence is not None else None),
            (
                "Period",
                f"{day(p.period_start)} to {day(p.period_end)}" if p.period_start and p.period_end else None,
            ),
            ("Effective from", day(p.effective_date) if p.effective_date else None),
            ("Plausible range", bounds),
        ],
        values={"bounds": bounds},
        organisations={p.commissioner},
    )


HANDLED: tuple[type[Payload], ...] = tuple(_BUILDERS)
EVENT_NAMES: tuple[str, ...] = tuple(cls.name for cls in HANDLED)


def subject_line(due_by: dt.date, what: str, escalation_level: int = 1) -> str:
    """What is needed and by when, in one line."""
    escalated = f" (escalation level {escalation_level})" if escalation_level >= 2 else ""
    return f"Action needed by {day(due_by)}{escalated}: {what}"


def alert_from(event: Event[Any], policy: AlertPolicy | None = None) -> Alert | None:
    """The alert an event raises, or None when it raises none (an in-area placement)."""
    builder = _BUILDERS.get(type(event.data))
    if builder is None:
        return None
    draft = builder(event.data, event, policy or AlertPolicy())
    if draft is None:
        return None
    payload: Payload = event.data
    return Alert(
        event_id=event.id,
        event_type=event.type,
        name=type(payload).name,
        occurred_at=event.time,
        correlation_id=event.correlationid or event.id,
        commissioner=str(getattr(payload, "commissioner")),  # noqa: B009 - every handled payload names one
        organisations=frozenset(draft.organisations),
        reference=redact_text(draft.reference),
        escalation_level=draft.escalation_level,
        due_by=draft.due_by,
        subject=redact_text(subject_line(draft.due_by, draft.what, draft.escalation_level)),
        action=redact_text(draft.action),
        headline=redact_text(draft.headline),
        facts=tuple((name, redact_text(value)) for name, value in draft.facts if value is not None),
        values={k: redact_text(v) for k, v in {**draft.values, "due_by": day(draft.due_by)}.items()},
    )
