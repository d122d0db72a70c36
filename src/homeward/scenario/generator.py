"""A seeded generator of partner events modelled on Coventry & Warwickshire's "Coming Home".

Three commissioners (the former Coventry & Rugby, South Warwickshire and Warwickshire North
CCGs) pool a programme for mental health, dementia, and learning disability and autism.
Local and distant providers report capacity; referrals arrive; people are placed locally
when a local bed of the right type is free and out of area (reason 10) when none is; reviews
are held or missed; over the simulated years out-of-area patients come home.

The generator simulates the world and writes down only what partners would send: every
event is an inbound contract event from the organisation that would send it, on its own
topic. Independent providers report some of their admissions themselves; the commissioner
then agrees each report (``PlacementAgreed``), a few days later, except the last
``unagreed_reports`` of them, which stay in the register, awaiting agreement and uncharged
(docs/authority.md). Sizes come from flags, up to a national scale (42 commissioners, hundreds of
providers, tens of thousands of placements). The same seed gives the same events, ids and
all. Nothing here reads what the services compute: tests derive expected figures from
these events alone.
"""

from __future__ import annotations

import datetime as dt
import random
import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from homeward.contracts import Event, new_event, partner_source
from homeward.contracts.events import (
    BedAvailabilityUpdated,
    BudgetAllocated,
    FundingShare,
    InvoiceReceived,
    Payload,
    PlacementAgreed,
    PlacementEnded,
    PlacementMade,
    PlacementRateChanged,
    ReferralReceived,
    ReferralWithdrawn,
    ReviewCompleted,
)
from homeward.contracts.identifiers import nhs_number_check_digit, nhs_numbers_in_test_range
from homeward.contracts.vocab import (
    AgeBand,
    BedType,
    Cohort,
    EndReason,
    FundingSource,
    LegalStatus,
    OutOfAreaReason,
    Programme,
    RateChangeReason,
    ReviewType,
    Urgency,
    WithdrawalReason,
)

COMING_HOME = [
    ("05A", "NHS Coventry and Rugby (former CCG)"),
    ("05R", "NHS South Warwickshire (former CCG)"),
    ("05H", "NHS Warwickshire North (former CCG)"),
]
LOCAL_PROVIDER = ("RYG", "Coventry and Warwickshire Partnership NHS Trust")
NAMESPACE = uuid.UUID("3b2f9a1c-6d4e-4f5a-8b7c-9d0e1f2a3b4c")

# (cohort, age band, bed type, programme, share of referrals, typical daily rate in pence)
CASE_MIX: list[tuple[Cohort, AgeBand, BedType, Programme, float, int]] = [
    (Cohort.MENTAL_HEALTH, AgeBand.ADULT, BedType.ADULT_ACUTE, Programme.MENTAL_HEALTH, 0.30, 54500),
    (Cohort.MENTAL_HEALTH, AgeBand.ADULT, BedType.PICU, Programme.MENTAL_HEALTH, 0.12, 82000),
    (Cohort.MENTAL_HEALTH, AgeBand.ADULT, BedType.LOCKED_REHABILITATION, Programme.MENTAL_HEALTH, 0.12, 62000),
    (Cohort.DEMENTIA, AgeBand.OLDER_ADULT, BedType.OLDER_ADULT_DEMENTIA, Programme.MENTAL_HEALTH, 0.14, 48000),
    (
        Cohort.LEARNING_DISABILITY_AND_AUTISM,
        AgeBand.ADULT,
        BedType.LD_AUTISM_INPATIENT,
        Programme.LEARNING_DISABILITY_AND_AUTISM,
        0.14,
        75000,
    ),
    (
        Cohort.AUTISM,
        AgeBand.CHILD,
        BedType.CAMHS_GENERAL_ADOLESCENT,
        Programme.LEARNING_DISABILITY_AND_AUTISM,
        0.06,
        95000,
    ),
    (Cohort.MENTAL_HEALTH, AgeBand.ADULT, BedType.LOW_SECURE, Programme.SECURE_AND_FORENSIC, 0.08, 58000),
    (Cohort.LEARNING_DISABILITY, AgeBand.ADULT, BedType.MEDIUM_SECURE, Programme.SECURE_AND_FORENSIC, 0.04, 72000),
]
LD_COHORTS = {Cohort.LEARNING_DISABILITY, Cohort.AUTISM, Cohort.LEARNING_DISABILITY_AND_AUTISM}
SECURE = {BedType.LOW_SECURE, BedType.MEDIUM_SECURE, BedType.HIGH_SECURE}


@dataclass(frozen=True)
class ScenarioConfig:
    seed: int = 42
    commissioners: int = 3
    distant_providers: int = 6
    placements: int = 120
    start: dt.date = dt.date(2023, 4, 1)
    as_of: dt.date = dt.date(2026, 11, 20)
    local_beds_per_type: int = 1
    review_attendance: float = 0.8
    review_never_held: float = 0.3  # of the missed reviews
    repatriation_rate: float = 0.7
    pooled_share: float = 0.2
    invoice_variance_rate: float = 0.08
    provider_reports: float = 0.5  # of placements with independent providers, reported by the provider
    unagreed_reports: int = 1  # provider reports the commissioner never agrees (the latest to start)
    invoice_slips: int = 1  # invoices typed in pounds as pence (x100), held; the provider sends a corrected one
    withdrawn_referrals: int = 0  # extra referrals the referrer withdraws before any bed is found (never placed)


@dataclass
class Site:
    code: str
    provider: str
    area: str
    name: str
    bed_types: tuple[BedType, ...]
    beds: int
    independent: bool
    distance_km: int


@dataclass
class Episode:
    """One placement as the generator simulated it (ground truth kept for reports)."""

    placement_id: str
    person: int
    commissioner: str
    site: Site
    bed_type: BedType
    cohort: Cohort
    age_band: AgeBand
    programme: Programme
    start: dt.date
    end: dt.date | None
    rate: int
    out_of_area: bool
    reason: OutOfAreaReason | None
    funding: list[tuple[str, int]]
    end_reason: EndReason | None = None
    transfer_to: str | None = None
    reported_by: str | None = None  # who sent the PlacementMade: the commissioner unless the provider did
    agreed: bool = True  # the commissioner agreed it (its own report, or PlacementAgreed)


@dataclass
class Scenario:
    config: ScenarioConfig
    reference: dict[str, Any]
    events: list[tuple[str, Event[Payload]]] = field(default_factory=list)
    episodes: list[Episode] = field(default_factory=list)

    @property
    def partners(self) -> list[str]:
        return sorted({p for p, _ in self.events})

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = defaultdict(int)
        for _, e in self.events:
            out[type(e.data).name] += 1
        return dict(out)


def _nhs_numbers(rng: random.Random) -> Any:
    used: set[str] = set()
    while True:
        nine = f"999{rng.randrange(10**6):06d}"
        check = nhs_number_check_digit(nine)
        if check is None or nine in used:
            continue
        used.add(nine)
        yield nine + str(check)


def _area_code(i: int) -> str:
    letters = "ABCDEFGHJKLMNPRSTUVWXY"
    return "Q" + letters[i // len(letters) % len(letters)] + letters[i % len(letters)]


class _Builder:
    def __init__(self, config: ScenarioConfig) -> None:
        self.c = config
        self.rng = random.Random(config.seed)
        self.seq = 0
        self.events: list[tuple[dt.datetime, int, str, Event[Payload]]] = []
        self.nhs = _nhs_numbers(self.rng)

    def emit(self, sender: str, data: Payload, at: dt.datetime) -> None:
        self.seq += 1
        eid = str(uuid.uuid5(NAMESPACE, f"{self.c.seed}:{self.seq}"))
        event = new_event(data, source=partner_source(sender), id=eid, time=at)
        self.events.append((at, self.seq, sender, event))

    def at(self, day: dt.date, hour: int = 9) -> dt.datetime:
        return dt.datetime.combine(day, dt.time(hour, self.rng.randrange(60)), dt.UTC)


def _financial_years(start: dt.date, end: dt.date) -> list[tuple[str, dt.date, dt.date]]:
    out = []
    year = start.year if start.month >= 4 else start.year - 1
    while dt.date(year, 4, 1) <= end:
        out.append((f"{year}-{(year + 1) % 100:02d}", dt.date(year, 4, 1), dt.date(year + 1, 3, 31)))
        year += 1
    return out


def review_intervals(cohort: Cohort, age: AgeBand, bed: BedType, out_of_area: bool) -> dict[ReviewType, int]:
    """The review frequencies the generator's partners try to keep (DOMAIN.md defaults)."""
    out: dict[ReviewType, int] = {}
    if out_of_area:
        out[ReviewType.OVERSIGHT_VISIT] = 42 if age is AgeBand.CHILD else 56
    if age is AgeBand.CHILD and cohort in LD_COHORTS:
        out[ReviewType.CETR] = 91
    elif cohort in LD_COHORTS:
        out[ReviewType.CTR] = 365 if bed in SECURE else 182
    return out


def generate(config: ScenarioConfig | None = None) -> Scenario:
    """The scenario ``config`` describes; the same config gives the same events."""
    c = config or ScenarioConfig()
    b = _Builder(c)
    commissioners = _commissioners(c)
    codes = [code for code, _ in commissioners]
    sites = _sites(b, commissioners)
    reference = {
        "commissioners": [{"code": code, "area": code, "name": name} for code, name in commissioners],
        "sites": [{"code": s.code, "provider": s.provider, "area": s.area, "name": s.name} for s in sites],
    }
    beds = _Beds(b)
    # Every provider reports its starting capacity.
    for s in sites:
        if not s.independent:
            for bt in s.bed_types:
                beds.report(s, bt, c.start)

    episodes: list[Episode] = []
    people = _People(b, codes, sites, beds)
    span = (c.as_of - c.start).days
    referral_days = sorted(b.rng.randrange(span - 14) for _ in range(c.placements))  # placed before as_of
    for n, offset in enumerate(referral_days):
        episodes += people.referred_and_placed(n, c.start + dt.timedelta(days=offset))

    _agreements(b, episodes, c)
    for ep in episodes:
        _reviews(b, ep, c)
        _rate_changes(b, ep, c)
        _end(b, ep)
    _budgets_and_invoices(b, episodes, codes, c)
    _withdrawn_referrals(b, codes, c)

    b.events.sort(key=lambda t: (t[0], t[1]))
    return Scenario(c, reference, [(sender, e) for _, _, sender, e in b.events], episodes)


def _commissioners(c: ScenarioConfig) -> list[tuple[str, str]]:
    """Coventry & Warwickshire's three first, then made-up ones: (code, name)."""
    commissioners = list(COMING_HOME[: min(3, c.commissioners)])
    for i in range(len(commissioners), c.commissioners):
        commissioners.append((f"{10 + i // 26:02d}{chr(65 + i % 26)}", f"Commissioner {i + 1}"))
    return commissioners


def _sites(b: _Builder, commissioners: list[tuple[str, str]]) -> list[Site]:
    """A local unit in each commissioner's area (secure beds only in the first), then distant
    independent hospitals with every bed type and room to spare."""
    rng = b.rng
    bed_types = sorted({m[2] for m in CASE_MIX}, key=lambda x: x.value)
    sites: list[Site] = []
    for i, (code, _) in enumerate(commissioners):
        provider = LOCAL_PROVIDER[0] if i < 3 else f"R{i:02d}"
        local_types = tuple(bt for bt in bed_types if bt not in SECURE or i == 0)
        sites.append(
            Site(
                f"{provider}{i + 1:02d}",
                provider,
                code,
                f"Local unit {i + 1}",
                local_types,
                b.c.local_beds_per_type,
                False,
                rng.randint(3, 20),
            )
        )
    for j in range(b.c.distant_providers):
        provider = f"8Z{j:03d}"
        sites.append(
            Site(
                f"{provider}01",
                provider,
                _area_code(j),
                f"Independent hospital {j + 1}",
                tuple(bed_types),
                10_000,
                True,
                rng.choice([85, 140, 190, 240, 320]),
            )
        )
    return sites


class _Beds:
    """Who occupies which beds when, and the providers' capacity reports that follow."""

    def __init__(self, b: _Builder) -> None:
        self.b = b
        self.occupancy: dict[tuple[str, BedType], list[tuple[dt.date, dt.date]]] = defaultdict(list)

    def free(self, site: Site, bed: BedType, day: dt.date) -> int:
        busy = sum(1 for s, e in self.occupancy[(site.code, bed)] if s <= day < e)
        return site.beds - busy

    def free_throughout(self, site: Site, bed: BedType, start: dt.date, end: dt.date) -> bool:
        """A bed free on every seventh day from ``start`` until ``end``."""
        return all(self.free(site, bed, start + dt.timedelta(days=d)) > 0 for d in range(0, (end - start).days, 7))

    def occupy(self, ep: Episode) -> None:
        self.occupancy[(ep.site.code, ep.bed_type)].append((ep.start, ep.end or dt.date.max))

    def report(self, site: Site, bed: BedType, day: dt.date) -> None:
        self.b.emit(
            site.provider,
            BedAvailabilityUpdated(
                provider=site.provider,
                site=site.code,
                site_area=site.area,
                bed_type=bed,
                available_beds=max(0, self.free(site, bed, day)),
                total_beds=site.beds,
                as_of=self.b.at(day, 7),
            ),
            self.b.at(day, 7),
        )


class _People:
    """Each person's referral, placement (local when a bed is free, else distant) and, for some
    who were placed far away, the move home."""

    def __init__(self, b: _Builder, codes: list[str], sites: list[Site], beds: _Beds) -> None:
        self.b, self.c, self.rng, self.codes, self.beds = b, b.c, b.rng, codes, beds
        self.local_site = {s.area: s for s in sites if not s.independent}
        self.distant = [s for s in sites if s.independent]
        self.weights = [m[4] for m in CASE_MIX]

    def referred_and_placed(self, n: int, need: dt.date) -> list[Episode]:
        b, c, rng = self.b, self.c, self.rng
        commissioner = rng.choice(self.codes)
        cohort, age, bed, programme, _, base_rate = rng.choices(CASE_MIX, self.weights)[0]
        nhs = next(b.nhs)
        urgency = rng.choice([Urgency.EMERGENCY, Urgency.URGENT, Urgency.URGENT, Urgency.ROUTINE])
        referral_id = f"REF-{commissioner}-{n + 1:06d}"
        b.emit(
            commissioner,
            ReferralReceived(
                referral_id=referral_id,
                nhs_number=nhs,
                commissioner=commissioner,
                bed_type=bed,
                cohort=cohort,
                age_band=age,
                urgency=urgency,
                need_arose_at=b.at(need, 8),
            ),
            b.at(need, 8),
        )
        wait_days = {Urgency.EMERGENCY: 0, Urgency.URGENT: rng.randint(0, 2), Urgency.ROUTINE: rng.randint(2, 10)}[
            urgency
        ]
        start = need + dt.timedelta(days=wait_days)
        stay = int(rng.lognormvariate(4.6, 0.7))  # median ~100 nights
        end: dt.date | None = start + dt.timedelta(days=max(3, stay))
        if end is not None and end >= c.as_of:
            end = None
        home = self.local_site.get(commissioner)
        if home is not None and bed in home.bed_types and self.beds.free_throughout(home, bed, start, end or c.as_of):
            site, ooa, reason = home, False, None
        else:
            site = rng.choice(self.distant)
            ooa = True
            reason = rng.choices(
                [OutOfAreaReason.NO_LOCAL_BED, OutOfAreaReason.PATIENT_CHOICE, OutOfAreaReason.SAFEGUARDING],
                [0.85, 0.1, 0.05],
            )[0]
        rate = base_rate + (rng.randrange(0, 12000, 500) if site.independent else 0)
        funding = [(commissioner, 10_000)]
        if rng.random() < c.pooled_share and len(self.codes) >= 3 and commissioner in self.codes[:3]:
            # The pooled programme: the placing commissioner takes the odd basis point.
            others = [x for x in self.codes[:3] if x != commissioner]
            funding = [(commissioner, 3334), (others[0], 3333), (others[1], 3333)]
        ep = Episode(
            f"PLC-{commissioner}-{n + 1:06d}",
            n,
            commissioner,
            site,
            bed,
            cohort,
            age,
            programme,
            start,
            end,
            rate,
            ooa,
            reason,
            funding,
        )
        _place(b, ep, nhs, referral_id, self.beds)
        # Repatriation: an out-of-area stay that ends while a local bed is free comes home.
        if (
            ooa
            and end is not None
            and home is not None
            and bed in home.bed_types
            and rng.random() < c.repatriation_rate
        ):
            back = self.home_from(ep, home, base_rate, n)
            if back is not None:
                _place(b, back, nhs, None, self.beds)
                return [ep, back]
        return [ep]

    def home_from(self, ep: Episode, home: Site, base_rate: int, n: int) -> Episode | None:
        """The move home after ``ep`` (which it ends), or None when no local bed is free."""
        assert ep.end is not None
        rng, c = self.rng, self.c
        back_start = ep.end + dt.timedelta(days=rng.choice([0, 0, 1, 2]))
        back_end = back_start + dt.timedelta(days=rng.randint(40, 200))
        back_end_opt: dt.date | None = None if back_end >= c.as_of else back_end
        if back_start >= c.as_of or not self.beds.free_throughout(
            home, ep.bed_type, back_start, back_end_opt or c.as_of
        ):
            return None
        back = Episode(
            f"PLC-{ep.commissioner}-{n + 1:06d}H",
            ep.person,
            ep.commissioner,
            home,
            ep.bed_type,
            ep.cohort,
            ep.age_band,
            ep.programme,
            back_start,
            back_end_opt,
            base_rate,
            False,
            None,
            ep.funding,
        )
        explicit = rng.random() < 0.3
        ep.end_reason = EndReason.REPATRIATED if explicit else EndReason.TRANSFER
        ep.transfer_to = back.placement_id
        return back


def _place(
    b: _Builder,
    ep: Episode,
    nhs: str,
    referral_id: str | None,
    beds: _Beds,
) -> None:
    beds.occupy(ep)
    # A separate stream of chances, so the rest of the scenario is the same with or without reports.
    reporter = random.Random(f"{b.c.seed}:report:{ep.placement_id}")
    if ep.site.independent and reporter.random() < b.c.provider_reports:
        ep.reported_by = ep.site.provider
    legal = LegalStatus.MHA_SECTION_3 if ep.bed_type not in SECURE else LegalStatus.MHA_SECTION_37_41
    if ep.cohort is Cohort.DEMENTIA:
        legal = LegalStatus.DEPRIVATION_OF_LIBERTY
    b.emit(
        ep.reported_by or ep.commissioner,
        PlacementMade(
            placement_id=ep.placement_id,
            referral_id=referral_id,
            nhs_number=nhs,
            commissioner=ep.commissioner,
            provider=ep.site.provider,
            provider_site=ep.site.code,
            provider_site_area=ep.site.area,
            independent_provider=ep.site.independent,
            bed_type=ep.bed_type,
            cohort=ep.cohort,
            age_band=ep.age_band,
            legal_status=legal,
            programme=ep.programme,
            start_date=ep.start,
            daily_rate_pence=ep.rate,
            out_of_area_reason=ep.reason,
            distance_from_home_km=ep.site.distance_km,
            funding=[FundingShare(commissioner=f, share_bp=s) for f, s in ep.funding] if len(ep.funding) > 1 else [],
        ),
        b.at(ep.start, 10),
    )
    if not ep.site.independent:
        beds.report(ep.site, ep.bed_type, ep.start)
        if ep.end is not None:
            beds.report(ep.site, ep.bed_type, ep.end)


def _withdrawn_referrals(b: _Builder, codes: list[str], c: ScenarioConfig) -> None:
    """Referrals withdrawn some hours after they were made (the crisis passed, or another route met
    the need): never placed. Drawn from their own random stream and NHS numbers (from 999 900 000x),
    after everything else, so the rest of the scenario is the same with or without them."""
    numbers = nhs_numbers_in_test_range(c.withdrawn_referrals, start=900_000)
    for k, nhs in enumerate(numbers):
        rng = random.Random(f"{c.seed}:withdrawn:{k}")
        commissioner = rng.choice(codes)
        cohort, age, bed, _, _, _ = rng.choices(CASE_MIX, [m[4] for m in CASE_MIX])[0]
        need = dt.datetime.combine(
            c.start + dt.timedelta(days=rng.randrange((c.as_of - c.start).days - 2)),
            dt.time(8, rng.randrange(60)),
            dt.UTC,
        )
        referral_id = f"REF-{commissioner}-W{k + 1:05d}"
        b.emit(
            commissioner,
            ReferralReceived(
                referral_id=referral_id,
                nhs_number=nhs,
                commissioner=commissioner,
                bed_type=bed,
                cohort=cohort,
                age_band=age,
                urgency=rng.choice([Urgency.URGENT, Urgency.ROUTINE]),
                need_arose_at=need,
            ),
            need,
        )
        withdrawn_at = need + dt.timedelta(hours=rng.randint(2, 20))
        b.emit(
            commissioner,
            ReferralWithdrawn(
                referral_id=referral_id,
                commissioner=commissioner,
                withdrawn_at=withdrawn_at,
                reason=rng.choice([WithdrawalReason.NO_LONGER_NEEDED, WithdrawalReason.MET_ELSEWHERE]),
            ),
            withdrawn_at,
        )


def _agreements(b: _Builder, episodes: list[Episode], c: ScenarioConfig) -> None:
    """The commissioner agrees each provider's report a few days after it, at the reported rate;
    the latest ``unagreed_reports`` reports of stays that do not end with a move home are never agreed."""
    reports = [ep for ep in episodes if ep.reported_by is not None]
    never = sorted((ep for ep in reports if ep.transfer_to is None), key=lambda ep: (ep.start, ep.placement_id))
    left_unagreed = (
        {ep.placement_id for ep in never[len(never) - c.unagreed_reports :]} if c.unagreed_reports else set()
    )
    for ep in reports:
        if ep.placement_id in left_unagreed:
            ep.agreed = False
            continue
        delay = random.Random(f"{c.seed}:agree:{ep.placement_id}").randint(0, 3)
        day = min(ep.start + dt.timedelta(days=delay), c.as_of - dt.timedelta(days=1))
        b.emit(
            ep.commissioner,
            PlacementAgreed(placement_id=ep.placement_id, commissioner=ep.commissioner, daily_rate_pence=ep.rate),
            dt.datetime.combine(day, dt.time(11, 30), dt.UTC),  # no draw from b.rng: the rest stays as it was
        )


def _reviews(b: _Builder, ep: Episode, c: ScenarioConfig) -> None:
    last_day = min(ep.end or c.as_of, c.as_of)
    for review_type, interval in review_intervals(ep.cohort, ep.age_band, ep.bed_type, ep.out_of_area).items():
        due = ep.start + dt.timedelta(days=interval)
        while due < last_day:
            if b.rng.random() < c.review_attendance:
                held = due - dt.timedelta(days=b.rng.randint(0, 6))
            elif b.rng.random() < c.review_never_held:
                break  # missed and never held: overdue from here on
            else:
                held = due + dt.timedelta(days=b.rng.randint(20, 60))  # missed, held late
            if held >= last_day or held <= ep.start:
                break
            b.emit(
                ep.commissioner,
                ReviewCompleted(placement_id=ep.placement_id, review_type=review_type, review_date=held),
                b.at(held, 15),
            )
            due = held + dt.timedelta(days=interval)


def _rate_changes(b: _Builder, ep: Episode, c: ScenarioConfig) -> None:
    rate = ep.rate
    for year in range(ep.start.year, c.as_of.year + 1):
        day = dt.date(year, 4, 1)
        if ep.start < day < min(ep.end or c.as_of, c.as_of) and b.rng.random() < 0.5:
            rate = rate * 103 // 100
            b.emit(
                ep.commissioner,
                PlacementRateChanged(
                    placement_id=ep.placement_id,
                    daily_rate_pence=rate,
                    effective_date=day,
                    reason=RateChangeReason.ANNUAL_UPLIFT,
                ),
                # Stated within three weeks of taking effect, and before the placement ends.
                b.at(
                    min(day + dt.timedelta(days=b.rng.randint(0, 20)), (ep.end or c.as_of) - dt.timedelta(days=1)), 11
                ),
            )


def _end(b: _Builder, ep: Episode) -> None:
    if ep.end is None:
        return
    reason = ep.end_reason or b.rng.choice(
        [EndReason.DISCHARGED_HOME, EndReason.DISCHARGED_TO_COMMUNITY, EndReason.STEP_DOWN]
    )
    ep.end_reason = reason
    b.emit(
        ep.commissioner,
        PlacementEnded(
            placement_id=ep.placement_id,
            end_date=ep.end,
            end_reason=reason,
            transfer_to_placement_id=ep.transfer_to,
        ),
        b.at(ep.end, 16),
    )


def _nights_in(ep: Episode, start: dt.date, end: dt.date) -> int:
    """Nights of the stay falling in [start, end] (both inclusive days)."""
    first = max(ep.start, start)
    last_night = min((ep.end or dt.date.max) - dt.timedelta(days=1), end)
    return max(0, (last_night - first).days + 1)


def _budgets_and_invoices(b: _Builder, episodes: list[Episode], codes: list[str], c: ScenarioConfig) -> None:
    for fy, fy_start, fy_end in _financial_years(c.start, c.as_of):
        for code in codes:
            for programme in Programme:
                rough = sum(
                    ep.rate * _nights_in(ep, fy_start, fy_end)
                    for ep in episodes
                    if ep.commissioner == code and ep.programme is programme
                )
                factor = b.rng.choice([0.95, 1.05, 1.1, 1.2])
                amount = max(100_000_00, int(rough * factor) // 100_000 * 100_000)
                b.emit(
                    code,
                    BudgetAllocated(
                        allocation_id=f"ALLOC-{code}-{fy}-{programme.value}",
                        commissioner=code,
                        financial_year=fy,
                        programme=programme,
                        amount_pence=amount,
                        source=FundingSource.POOLED_FUND,
                    ),
                    b.at(fy_start - dt.timedelta(days=20), 9),
                )
    # Monthly invoices for the financial year that contains as_of, for months already over.
    fy_start = dt.date(c.as_of.year if c.as_of.month >= 4 else c.as_of.year - 1, 4, 1)
    month = fy_start
    slips = 0
    while True:
        nxt = dt.date(month.year + (month.month == 12), month.month % 12 + 1, 1)
        if nxt > c.as_of:
            break
        for ep in episodes:
            nights = _nights_in(ep, month, nxt - dt.timedelta(days=1))
            if nights <= 0 or not ep.site.independent:
                continue
            amount = ep.rate * nights  # the rate at the start; uplifts make some invoices differ
            if b.rng.random() < c.invoice_variance_rate:
                amount = amount * 112 // 100
            invoice_id = f"INV-{ep.placement_id}-{month:%Y%m}"
            sent = b.at(nxt + dt.timedelta(days=3), 12)
            if slips < c.invoice_slips and ep.agreed:
                # A slip: pounds typed as pence. Held as implausible (docs/authority.md); nobody
                # confirms it, and the provider sends the right figure under a new id.
                slips += 1
                b.emit(ep.site.provider, _invoice(ep, f"{invoice_id}-X", month, nxt, amount * 100), sent)
                sent += dt.timedelta(days=1)
            b.emit(ep.site.provider, _invoice(ep, invoice_id, month, nxt, amount), sent)
        month = nxt


def _invoice(ep: Episode, invoice_id: str, month: dt.date, nxt: dt.date, amount: int) -> InvoiceReceived:
    return InvoiceReceived(
        invoice_id=invoice_id,
        provider=ep.site.provider,
        commissioner=ep.commissioner,
        placement_id=ep.placement_id,
        period_start=month,
        period_end=nxt - dt.timedelta(days=1),
        amount_pence=amount,
        invoice_date=nxt,
    )
