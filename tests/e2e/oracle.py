"""Expected outcomes computed from the generated partner events alone.

This is a second, deliberately plain implementation of the rules the services apply
(out of area, review schedules, repatriation matching, bed-day accrual and pooled
splits), written from DOMAIN.md and the docs, not from the services' code. The
end-to-end test compares the services' answers with it.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

from homeward.contracts.events import (
    BedAvailabilityUpdated,
    BudgetAllocated,
    InvoiceReceived,
    PlacementAgreed,
    PlacementEnded,
    PlacementMade,
    PlacementRateChanged,
    ReferralReceived,
    ReferralWithdrawn,
    ReviewCompleted,
)
from homeward.contracts.plausibility import load_bounds

from homeward.scenario import Scenario

REPATRIATION_WINDOW_DAYS = 14
SECURE = {"low_secure", "medium_secure", "high_secure"}
COMMUNITY = {"residential_care", "nursing_home_dementia", "supported_living"}
LD = {"learning_disability", "autism", "learning_disability_and_autism"}


@dataclass
class P:
    id: str
    nhs: str
    commissioner: str
    provider: str
    site: str
    site_area: str
    out_of_area: bool
    cohort: str
    age_band: str
    bed_type: str
    programme: str
    start: dt.date
    rates: list[tuple[dt.date, int]]
    funding: list[tuple[str, int]]
    end: dt.date | None = None
    end_reason: str | None = None
    transfer_to: str | None = None
    reviews: dict[str, list[dt.date]] = field(default_factory=dict)
    # Charged only once its commissioner agreed it: by sending the PlacementMade itself, or a
    # PlacementAgreed for a provider's report (docs/authority.md).
    agreed: bool = False
    reported_by: str = ""

    def rate_on(self, night: dt.date) -> int:
        return [r for eff, r in sorted(self.rates) if eff <= night][-1]

    def active_on(self, day: dt.date) -> bool:
        return self.start <= day and (self.end is None or self.end > day)


@dataclass
class World:
    placements: dict[str, P]
    allocations: dict[tuple[str, str], int]
    invoices: list[InvoiceReceived] = field(default_factory=list)


def replay(sc: Scenario) -> World:
    areas = {c["code"]: c["area"] for c in sc.reference["commissioners"]}
    site_areas = {s["code"]: s["area"] for s in sc.reference["sites"]}
    placements: dict[str, P] = {}
    allocations: dict[tuple[str, str], int] = {}
    invoices: list[InvoiceReceived] = []
    for sender, e in sc.events:
        d: Any = e.data
        if isinstance(d, PlacementMade):
            site_area = d.provider_site_area or site_areas[d.provider_site]
            funding = [(f.commissioner, f.share_bp) for f in d.funding] or [(d.commissioner, 10_000)]
            placements[d.placement_id] = P(
                d.placement_id,
                d.nhs_number,
                d.commissioner,
                d.provider,
                d.provider_site,
                site_area,
                site_area != areas.get(d.commissioner, d.commissioner),
                d.cohort.value,
                d.age_band.value,
                d.bed_type.value,
                d.programme.value,
                d.start_date,
                [(d.start_date, d.daily_rate_pence)],
                funding,
                agreed=sender == d.commissioner,
                reported_by=sender,
            )
        elif isinstance(d, PlacementAgreed):
            if sender == d.commissioner and d.daily_rate_pence == placements[d.placement_id].rates[0][1]:
                placements[d.placement_id].agreed = True
        elif isinstance(d, PlacementRateChanged):
            placements[d.placement_id].rates.append((d.effective_date, d.daily_rate_pence))
        elif isinstance(d, ReviewCompleted):
            placements[d.placement_id].reviews.setdefault(d.review_type.value, []).append(d.review_date)
        elif isinstance(d, PlacementEnded):
            p = placements[d.placement_id]
            p.end, p.end_reason, p.transfer_to = d.end_date, d.end_reason.value, d.transfer_to_placement_id
        elif isinstance(d, BudgetAllocated):
            key = (d.commissioner, d.financial_year)
            allocations[key] = allocations.get(key, 0) + d.amount_pence
        elif isinstance(d, InvoiceReceived):
            invoices.append(d)
    return World(placements, allocations, invoices)


def active(world: World, as_of: dt.date) -> dict[str, bool]:
    """Active placement id -> out of area."""
    return {p.id: p.out_of_area for p in world.placements.values() if p.active_on(as_of)}


def agreed(world: World) -> set[str]:
    """Placements their commissioners agreed: the only ones the budget is told of."""
    return {p.id for p in world.placements.values() if p.agreed}


def repatriations(world: World) -> set[tuple[str, str]]:
    """Moves home between agreed placements (a move involving an unagreed one waits for it)."""
    return {(a, b) for a, b in _moves(world) if world.placements[a].agreed and world.placements[b].agreed}


def _moves(world: World) -> set[tuple[str, str]]:
    out = set()
    for p in world.placements.values():
        if not p.out_of_area or p.end is None:
            continue
        if p.end_reason == "repatriated" and p.transfer_to:
            out.add((p.id, p.transfer_to))
        elif p.end_reason == "transfer":
            for q in world.placements.values():
                if (
                    q.nhs == p.nhs
                    and not q.out_of_area
                    and q.id != p.id
                    and abs((q.start - p.end).days) <= REPATRIATION_WINDOW_DAYS
                ):
                    out.add((p.id, q.id))
    return out


def review_rules(p: P) -> dict[str, tuple[int, int]]:
    """review type -> (interval days, escalate after days): DOMAIN.md frequencies."""
    setting = "secure" if p.bed_type in SECURE else "community" if p.bed_type in COMMUNITY else "inpatient"
    rules: dict[str, tuple[int, int]] = {}
    if p.out_of_area:
        rules["oversight_visit"] = (42 if p.age_band == "child" else 56, 14)
    if p.cohort in LD:
        if p.age_band == "child":
            rules["cetr"] = (91, 14)
        elif setting in ("inpatient", "secure"):
            rules["ctr"] = (365 if setting == "secure" else 182, 28)
    return rules


def overdue(world: World, as_of: dt.date) -> dict[tuple[str, str], tuple[dt.date, int, int]]:
    """(placement, review type) -> (due date, days overdue, escalation level), one per missed due date."""
    out = {}
    for p in world.placements.values():
        for rtype, (interval, escalate) in review_rules(p).items():
            held = p.reviews.get(rtype, [])
            due = (max(held) if held else p.start) + dt.timedelta(days=interval)
            if p.end is not None and due >= p.end:
                continue
            today = min(as_of, p.end) if p.end else as_of
            if today > due:
                days = (today - due).days
                out[(p.id, rtype)] = (due, days, min(3, 1 + (days - 1) // escalate))
    return out


def split(amount: int, shares: list[tuple[str, int]]) -> dict[str, int]:
    """Largest remainder on basis points: leftover pence to the largest fractions, then the
    larger share, then ODS code order."""
    parts = {c: amount * bp // 10_000 for c, bp in shares}
    left = amount - sum(parts.values())
    order = sorted(shares, key=lambda s: (-(amount * s[1] % 10_000), -s[1], s[0]))
    for c, _ in order[:left]:
        parts[c] += 1
    return parts


def spent(world: World, fy_start: dt.date, as_of: dt.date) -> dict[str, int]:
    """Accrued spend per commissioner: every night before as_of in the financial year, of the
    placements the commissioner agreed."""
    out: dict[str, int] = {}
    for p in world.placements.values():
        if not p.agreed:
            continue
        night = max(p.start, fy_start)
        last = min(p.end or as_of, as_of)
        while night < last:
            for c, pence in split(p.rate_on(night), p.funding).items():
                out[c] = out.get(c, 0) + pence
            night += dt.timedelta(days=1)
    return out


def held_invoices(world: World) -> set[str]:
    """Invoices of agreed placements whose amount per night of the stay they cover is above the
    plausible daily rates of the bed type (the contracts' default table)."""
    bounds = load_bounds()
    out = set()
    for inv in world.invoices:
        p = world.placements[inv.placement_id]
        if not p.agreed:
            continue  # the budget does not know the placement: the invoice waits, unjudged
        first = max(inv.period_start, p.start)
        after = inv.period_end + dt.timedelta(days=1)
        if p.end is not None:
            after = min(after, p.end)
        nightly = inv.amount_pence // max((after - first).days, 1)
        b = {k.value: v for k, v in bounds.items()}[p.bed_type]
        if nightly > b.upper_pence:
            out.add(inv.invoice_id)
    return out


def chased(world: World, as_of: dt.date) -> dict[tuple[str, str], tuple[dt.date, int, int]]:
    """The overdue reviews the scheduler chases as of ``as_of``: those of placements still open
    that day. A discharged person is not chased (docs/placements.md), however late the
    scheduler first sees the miss."""
    return {k: v for k, v in overdue(world, as_of).items() if world.placements[k[0]].active_on(as_of)}


# ------------------------------------------------------------------ emails (docs/notifications.md)

# "By when" in each subject: days after the alert's date (Homeward's defaults).
RESPOND_WITHIN_DAYS = {"ReviewOverdue": 7, "PatientRepatriated": 14, "PlacementAwaitingAgreement": 2, "AmountHeld": 5}
# An action due more than this many days before today is history: suppressed, never emailed.
HISTORY_AFTER_DAYS = 14


def timeliness(due_by: dt.date, today: dt.date) -> str:
    """``current`` (due today or later: an email of its own), ``late`` (due in the last
    HISTORY_AFTER_DAYS days: in the recipient's daily digest) or ``history`` (suppressed)."""
    past = (today - due_by).days
    return "current" if past <= 0 else "late" if past <= HISTORY_AFTER_DAYS else "history"


@dataclass(frozen=True)
class Alert:
    """One alert to one member of staff: (role, organisation), what it is about (the word the
    subject carries), the placement or invoice it names, and the date in its subject."""

    role: str
    org: str
    keyword: str
    reference: str  # the placement the subject names
    due_by: dt.date
    logged_as: str = ""  # the reference in the notifications log, when not the placement (an invoice)


def alerts(world: World, as_of: dt.date, awaiting_on: dict[str, dt.date], held_on: dict[str, dt.date]) -> list[Alert]:
    """The alerts staff are owed for the scenario, one per (event, recipient), with the date in
    each subject. ``awaiting_on`` and ``held_on`` give the date of each placement's
    PlacementAwaitingAgreement and each held invoice's AmountHeld as published (the date the
    report or the invoice was judged); the rest comes from the partners' events alone.
    The staff are one per role per commissioner, subscribed to their role's defaults."""
    out: list[Alert] = []
    for (pid, _), (_, _, level) in chased(world, as_of).items():
        c = world.placements[pid].commissioner
        due = as_of + dt.timedelta(days=RESPOND_WITHIN_DAYS["ReviewOverdue"])  # found overdue today
        out.append(Alert("case_manager", c, "overdue", pid, due))
        if level >= 2:
            out.append(Alert("clinical_lead", c, "overdue", pid, due))
    for p in world.placements.values():
        if p.out_of_area and p.agreed:  # the first oversight visit: 6 weeks for children, 8 for adults
            due = p.start + dt.timedelta(weeks=6 if p.age_band == "child" else 8)
            out += [Alert("oap_lead", org, "new out-of-area placement", p.id, due) for org, _ in p.funding]
        if p.reported_by != p.commissioner:
            due = awaiting_on[p.id] + dt.timedelta(days=RESPOND_WITHIN_DAYS["PlacementAwaitingAgreement"])
            for org, _ in p.funding:
                out += [
                    Alert(role, org, "agree or query placement", p.id, due) for role in ("oap_lead", "finance_lead")
                ]
    held = held_invoices(world)
    for invoice in world.invoices:
        if invoice.invoice_id in held:
            due = held_on[invoice.invoice_id] + dt.timedelta(days=RESPOND_WITHIN_DAYS["AmountHeld"])
            out.append(
                Alert(
                    "finance_lead",
                    invoice.commissioner,
                    "confirm or query invoice",
                    invoice.placement_id,
                    due,
                    invoice.invoice_id,
                )
            )
    for src, dst in repatriations(world):
        # repatriated_on is the in-area placement's start date.
        due = world.placements[dst].start + dt.timedelta(days=RESPOND_WITHIN_DAYS["PatientRepatriated"])
        for org, _ in world.placements[src].funding:
            out += [Alert(role, org, "moved home to", src, due) for role in ("case_manager", "finance_lead")]
    return out


# ------------------------------------------------------------------------------------ triage


def triage(sc: Scenario) -> dict[str, list[tuple[str, int]]]:
    """Referral id -> the local options it was triaged with: the sites of the person's home area
    (the commissioner's area) whose latest count of the bed type, taken at or before the
    referral's event time, had a free bed; most free beds first, then the freshest count, then
    the site code. Of two counts of a site taken at the same instant, the one with fewer free
    beds (docs/referrals.md). The order the events were sent in plays no part."""
    areas = {c["code"]: c["area"] for c in sc.reference["commissioners"]}
    counts = [e.data for _, e in sc.events if isinstance(e.data, BedAvailabilityUpdated)]
    out: dict[str, list[tuple[str, int]]] = {}
    for _, e in sc.events:
        r = e.data
        if not isinstance(r, ReferralReceived):
            continue
        home = r.home_area or areas.get(r.commissioner, r.commissioner)
        latest: dict[str, BedAvailabilityUpdated] = {}
        for c in counts:
            if c.bed_type != r.bed_type or c.as_of > e.time:
                continue
            held = latest.get(c.site)
            if (
                held is None
                or c.as_of > held.as_of
                or (c.as_of == held.as_of and c.available_beds < held.available_beds)
            ):
                latest[c.site] = c
        fitting = [c for c in latest.values() if c.site_area == home and c.available_beds >= 1]
        fitting.sort(key=lambda c: (-c.available_beds, -c.as_of.timestamp(), c.site))
        out[r.referral_id] = [(c.site, c.available_beds) for c in fitting]
    return out


def withdrawals(sc: Scenario) -> dict[str, dt.datetime]:
    """Referral id -> when it was withdrawn: the earliest withdrawal its referrer sent."""
    out: dict[str, dt.datetime] = {}
    for _, e in sc.events:
        if isinstance(e.data, ReferralWithdrawn):
            w = e.data
            out[w.referral_id] = min(out.get(w.referral_id, w.withdrawn_at), w.withdrawn_at)
    return out
