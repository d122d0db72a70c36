"""The register's PostgreSQL adapter: the repository port (``placements.ports``) over asyncpg,
and the service's unit of work, which builds it on the transaction's connection.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Sequence
from typing import Any, TypeAlias

import asyncpg
from homeward.contracts.events import FundingShare
from homeward.contracts.vocab import (
    AgeBand,
    BedType,
    Cohort,
    EndReason,
    LegalStatus,
    OutOfAreaReason,
    Programme,
    ReviewOutcome,
    ReviewType,
)
from homeward.kit.uow import Repository

from ..domain import Ending, Placement, RateEntry, Repatriation, Review, ReviewRule, ReviewSchedule, SiteFact
from ..ports import Config, PlacementsUnitOfWork
from .patients import PatientKeys, add_patient

Conn: TypeAlias = asyncpg.Connection  # type: ignore[type-arg]


class LockContention(ConnectionError):
    """Two batches each hold a lock the other needs (a deadlock, across replicas).

    Retrying the one event cannot help, because its batch still holds its earlier locks. The
    kit sees the deadlock (SQLSTATE 40P01) in this error's cause and treats it as transient: it
    rolls the whole batch back, releasing every lock so the other batch can finish, waits with no
    transaction open, and consumes the batch again (docs in ``homeward.kit.consumer``).
    """


# ------------------------------------------------------------------------------ asyncpg


class PgPlacementRepository(Repository):
    def __init__(self, conn: Conn, *, keys: PatientKeys | None = None) -> None:
        self.conn = conn
        self.keys = keys  # seal NHS numbers and re-key people (adapters.patients); needed by add()

    async def lock(self, key: str) -> None:
        try:
            await self.conn.execute("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))", key)
        except asyncpg.exceptions.DeadlockDetectedError as exc:
            raise LockContention(f"deadlock waiting for {key}; the batch will be retried") from exc

    async def get(self, placement_id: str) -> Placement | None:
        found = await load_placements(self.conn, "p.placement_id = $1", [placement_id])
        return self.track(found[0]) if found else None

    async def add(self, placement: Placement, nhs_number: str) -> None:
        p = self.track(placement)
        # The only copy of the NHS number, encrypted: kept so patient references can be made
        # again if the pseudonymisation key is rotated. Nothing reads it into an event, a log or the API.
        if self.keys is None:
            raise RuntimeError("PgPlacementRepository needs the patient keys to record a person")
        await add_patient(self.conn, self.keys, p.patient_ref, nhs_number)
        await self.conn.execute(
            """INSERT INTO placements (
                   placement_id, referral_id, patient_ref, commissioner, commissioner_area, provider,
                   provider_site, provider_site_area, independent_provider, bed_type, setting, cohort,
                   age_band, legal_status, programme, start_date, planned_end_date,
                   initial_daily_rate_pence, out_of_area, out_of_area_reason, inappropriate,
                   distance_from_home_km, funding, prior_approval_reference, registered_event_id,
                   registered_at, reported_by, agreed_by, agreed_event_id, released)
               VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13,$14,$15,$16,$17,$18,$19,$20,$21,$22,
                       $23::jsonb,$24,$25,$26,$27,$28,$29,$30)""",
            p.placement_id,
            p.referral_id,
            p.patient_ref,
            p.commissioner,
            p.commissioner_area,
            p.provider,
            p.provider_site,
            p.provider_site_area,
            p.independent_provider,
            p.bed_type.value,
            p.setting.value,
            p.cohort.value,
            p.age_band.value,
            p.legal_status.value,
            p.programme.value,
            p.start_date,
            p.planned_end_date,
            p.initial_daily_rate_pence,
            p.out_of_area,
            p.out_of_area_reason.value if p.out_of_area_reason else None,
            p.inappropriate,
            p.distance_from_home_km,
            json.dumps([{"commissioner": f.commissioner, "share_bp": f.share_bp} for f in p.funding]),
            p.prior_approval_reference,
            p.registered_event_id,
            p.registered_at,
            p.reported_by,
            p.agreed_by,
            p.agreed_event_id,
            p.released,
        )
        for entry in p.rates:
            await self.add_rate(p.placement_id, entry)
        for schedule in p.schedules.values():
            await self._save_schedule(p.placement_id, schedule)

    async def add_rate(self, placement_id: str, entry: RateEntry) -> None:
        await self.conn.execute(
            """INSERT INTO placement_rates (placement_id, effective_date, daily_rate_pence, reason, event_id,
                   event_time, held, asserted_by, confirmed_by)
               VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT (placement_id, event_id) DO NOTHING""",
            placement_id,
            entry.effective_date,
            entry.daily_rate_pence,
            entry.reason,
            entry.event_id,
            entry.event_time,
            entry.held,
            entry.asserted_by,
            entry.confirmed_by,
        )

    async def save_agreement(self, placement: Placement) -> None:
        await self.conn.execute(
            "UPDATE placements SET agreed_by = $2, agreed_event_id = $3 WHERE placement_id = $1",
            placement.placement_id,
            placement.agreed_by,
            placement.agreed_event_id,
        )

    async def mark_released(self, placement_id: str) -> None:
        await self.conn.execute("UPDATE placements SET released = true WHERE placement_id = $1", placement_id)

    async def confirm_rate(self, placement_id: str, entry: RateEntry) -> None:
        await self.conn.execute(
            """UPDATE placement_rates SET held = false, confirmed_by = $3
               WHERE placement_id = $1 AND event_id = $2""",
            placement_id,
            entry.event_id,
            entry.confirmed_by,
        )

    async def unpublished_repatriations(self, placement_id: str) -> list[tuple[Repatriation, str]]:
        rows = await self.conn.fetch(
            """SELECT * FROM repatriations WHERE NOT published AND (from_placement_id = $1 OR to_placement_id = $1)
               ORDER BY from_placement_id""",
            placement_id,
        )
        return [(_repatriation(r), r["event_id"]) for r in rows]

    async def mark_repatriation_published(self, from_placement_id: str) -> None:
        await self.conn.execute(
            "UPDATE repatriations SET published = true WHERE from_placement_id = $1", from_placement_id
        )

    async def repatriations_of(self, placement_id: str) -> list[tuple[Repatriation, str, bool]]:
        rows = await self.conn.fetch(
            """SELECT * FROM repatriations WHERE from_placement_id = $1 OR to_placement_id = $1
               ORDER BY from_placement_id FOR UPDATE""",
            placement_id,
        )
        return [(_repatriation(r), r["event_id"], r["published"]) for r in rows]

    async def correct_repatriation(self, move: Repatriation) -> None:
        await self.conn.execute(
            """UPDATE repatriations SET from_daily_rate_pence = $2, to_daily_rate_pence = $3,
                      corrections = corrections + 1
               WHERE from_placement_id = $1""",
            move.from_placement_id,
            move.from_daily_rate_pence,
            move.to_daily_rate_pence,
        )

    async def _save_schedule(self, placement_id: str, s: ReviewSchedule) -> None:
        await self.conn.execute(
            """INSERT INTO review_schedules (placement_id, review_type, interval_days, due_soon_days,
                   escalate_after_days, policy_source, due_date, last_review_date)
               VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
               ON CONFLICT (placement_id, review_type) DO UPDATE
               SET due_date = EXCLUDED.due_date, last_review_date = EXCLUDED.last_review_date""",
            placement_id,
            s.rule.review_type.value,
            s.rule.interval_days,
            s.rule.due_soon_days,
            s.rule.escalate_after_days,
            s.rule.source,
            s.due_date,
            s.last_review_date,
        )

    async def add_review(self, placement_id: str, review: Review, schedule: ReviewSchedule | None) -> None:
        await self.conn.execute(
            """INSERT INTO reviews (placement_id, review_type, review_date, outcome, next_review_due, event_id)
               VALUES ($1, $2, $3, $4, $5, $6)""",
            placement_id,
            review.review_type.value,
            review.review_date,
            review.outcome.value,
            review.next_review_due,
            review.event_id,
        )
        if schedule is not None:
            await self._save_schedule(placement_id, schedule)

    async def save_ending(self, placement_id: str, ending: Ending) -> None:
        await self.conn.execute(
            """UPDATE placements SET end_date = $2, end_reason = $3, transfer_to_placement_id = $4,
                   ended_event_id = $5 WHERE placement_id = $1""",
            placement_id,
            ending.end_date,
            ending.end_reason.value,
            ending.transfer_to_placement_id,
            ending.event_id,
        )

    async def learned_site(self, site: str) -> SiteFact | None:
        row = await self.conn.fetchrow("SELECT * FROM sites WHERE site = $1", site)
        if row is None:
            return None
        return SiteFact(row["site"], row["provider"], row["area"], row["stated_at"], row["stated_by"], row["event_id"])

    async def learn_site(self, fact: SiteFact) -> None:
        await self.conn.execute(
            """INSERT INTO sites (site, provider, area, stated_at, stated_by, event_id)
               VALUES ($1, $2, $3, $4, $5, $6)
               ON CONFLICT (site) DO UPDATE SET provider = EXCLUDED.provider, area = EXCLUDED.area,
                   stated_at = EXCLUDED.stated_at, stated_by = EXCLUDED.stated_by, event_id = EXCLUDED.event_id
               WHERE (sites.stated_at, sites.event_id) < (EXCLUDED.stated_at, EXCLUDED.event_id)""",
            fact.site,
            fact.provider,
            fact.area,
            fact.stated_at,
            fact.stated_by,
            fact.event_id,
        )

    async def stated_repatriations_to(self, target_id: str) -> list[Placement]:
        return await load_placements(
            self.conn,
            """p.transfer_to_placement_id = $1 AND p.end_reason = 'repatriated'
               AND NOT EXISTS (SELECT 1 FROM repatriations r WHERE r.from_placement_id = p.placement_id)""",
            [target_id],
        )

    async def transfer_sources(self, patient_ref: str) -> list[Placement]:
        return await load_placements(
            self.conn,
            """p.patient_ref = $1 AND p.end_reason = 'transfer' AND p.out_of_area
               AND NOT EXISTS (SELECT 1 FROM repatriations r WHERE r.from_placement_id = p.placement_id)""",
            [patient_ref],
        )

    async def arrival_candidates(self, patient_ref: str) -> list[Placement]:
        return await load_placements(
            self.conn,
            """p.patient_ref = $1
               AND NOT EXISTS (SELECT 1 FROM repatriations r WHERE r.to_placement_id = p.placement_id)""",
            [patient_ref],
        )

    async def add_repatriation(self, repatriation: Repatriation, event_id: str, at: dt.datetime) -> bool:
        r = repatriation
        inserted = await self.conn.fetchval(
            """INSERT INTO repatriations (from_placement_id, to_placement_id, patient_ref, commissioner, programme,
                   from_site, to_site, from_daily_rate_pence, to_daily_rate_pence, repatriated_on, explicit,
                   funding, event_id, recorded_at)
               VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12::jsonb,$13,$14)
               ON CONFLICT DO NOTHING RETURNING 1""",
            r.from_placement_id,
            r.to_placement_id,
            r.patient_ref,
            r.commissioner,
            r.programme.value,
            r.from_site,
            r.to_site,
            r.from_daily_rate_pence,
            r.to_daily_rate_pence,
            r.repatriated_on,
            r.explicit,
            json.dumps([{"commissioner": f.commissioner, "share_bp": f.share_bp} for f in r.funding]),
            event_id,
            at,
        )
        return inserted is not None

    async def record_capacity(
        self, area: str, bed_type: BedType, available_beds: int, as_of: dt.datetime, event_id: str
    ) -> None:
        await self.conn.execute(
            """INSERT INTO local_capacity (area, bed_type, available_beds, as_of, event_id)
               VALUES ($1, $2, $3, $4, $5) ON CONFLICT (area, bed_type, as_of) DO NOTHING""",
            area,
            bed_type.value,
            available_beds,
            as_of,
            event_id,
        )


def _repatriation(r: asyncpg.Record) -> Repatriation:
    return Repatriation(
        patient_ref=r["patient_ref"],
        commissioner=r["commissioner"],
        programme=Programme(r["programme"]),
        from_placement_id=r["from_placement_id"],
        to_placement_id=r["to_placement_id"],
        from_site=r["from_site"],
        to_site=r["to_site"],
        from_daily_rate_pence=r["from_daily_rate_pence"],
        to_daily_rate_pence=r["to_daily_rate_pence"],
        repatriated_on=r["repatriated_on"],
        explicit=r["explicit"],
        funding=_funding(r["funding"]),
    )


def _funding(raw: Any) -> tuple[FundingShare, ...]:
    items = json.loads(raw) if isinstance(raw, str) else raw
    return tuple(FundingShare(commissioner=f["commissioner"], share_bp=f["share_bp"]) for f in items)


async def load_placements(
    conn: Conn, where: str, args: Sequence[Any], order: str = "p.placement_id"
) -> list[Placement]:
    """Placements matching ``where`` (over alias ``p``), each with its rates, reviews and schedules."""
    rows = await conn.fetch(f"SELECT p.* FROM placements p WHERE {where} ORDER BY {order}", *args)
    if not rows:
        return []
    ids = [r["placement_id"] for r in rows]
    rates: dict[str, list[RateEntry]] = {i: [] for i in ids}
    for r in await conn.fetch("SELECT * FROM placement_rates WHERE placement_id = ANY($1::text[]) ORDER BY id", ids):
        rates[r["placement_id"]].append(
            RateEntry(
                r["effective_date"],
                r["daily_rate_pence"],
                r["reason"],
                r["event_id"],
                r["event_time"],
                held=r["held"],
                asserted_by=r["asserted_by"],
                confirmed_by=r["confirmed_by"],
            )
        )
    reviews: dict[str, list[Review]] = {i: [] for i in ids}
    for r in await conn.fetch(
        "SELECT * FROM reviews WHERE placement_id = ANY($1::text[]) ORDER BY review_date, review_type", ids
    ):
        reviews[r["placement_id"]].append(
            Review(
                ReviewType(r["review_type"]),
                r["review_date"],
                ReviewOutcome(r["outcome"]),
                r["next_review_due"],
                r["event_id"],
            )
        )
    schedules: dict[str, dict[ReviewType, ReviewSchedule]] = {i: {} for i in ids}
    for r in await conn.fetch("SELECT * FROM review_schedules WHERE placement_id = ANY($1::text[])", ids):
        rule = ReviewRule(
            ReviewType(r["review_type"]),
            r["interval_days"],
            r["due_soon_days"],
            r["escalate_after_days"],
            r["policy_source"],
        )
        schedules[r["placement_id"]][rule.review_type] = ReviewSchedule(rule, r["due_date"], r["last_review_date"])
    return [
        _placement(r, rates[r["placement_id"]], reviews[r["placement_id"]], schedules[r["placement_id"]]) for r in rows
    ]


def _placement(
    r: asyncpg.Record,
    rates: list[RateEntry],
    reviews: list[Review],
    schedules: dict[ReviewType, ReviewSchedule],
) -> Placement:
    ending = None
    if r["end_date"] is not None:
        ending = Ending(r["end_date"], EndReason(r["end_reason"]), r["transfer_to_placement_id"], r["ended_event_id"])
    return Placement(
        placement_id=r["placement_id"],
        referral_id=r["referral_id"],
        patient_ref=r["patient_ref"],
        commissioner=r["commissioner"],
        commissioner_area=r["commissioner_area"],
        provider=r["provider"],
        provider_site=r["provider_site"],
        provider_site_area=r["provider_site_area"],
        independent_provider=r["independent_provider"],
        bed_type=BedType(r["bed_type"]),
        cohort=Cohort(r["cohort"]),
        age_band=AgeBand(r["age_band"]),
        legal_status=LegalStatus(r["legal_status"]),
        programme=Programme(r["programme"]),
        start_date=r["start_date"],
        planned_end_date=r["planned_end_date"],
        initial_daily_rate_pence=r["initial_daily_rate_pence"],
        out_of_area_reason=OutOfAreaReason(r["out_of_area_reason"]) if r["out_of_area_reason"] else None,
        distance_from_home_km=r["distance_from_home_km"],
        funding=_funding(r["funding"]),
        prior_approval_reference=r["prior_approval_reference"],
        registered_event_id=r["registered_event_id"],
        registered_at=r["registered_at"],
        rates=rates,
        reviews=reviews,
        schedules=schedules,
        ending=ending,
        reported_by=r["reported_by"],
        agreed_by=r["agreed_by"],
        agreed_event_id=r["agreed_event_id"],
        released=r["released"],
    )


class PgPlacementsUnitOfWork(PlacementsUnitOfWork):
    """The unit of work the kit builds for each event: the register on its connection."""

    def __init__(
        self,
        conn: Conn,
        *args: Any,
        config: Config,
        keys: PatientKeys | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(conn, *args, **kwargs)
        self.config = config
        self.placements = PgPlacementRepository(conn, keys=keys)
