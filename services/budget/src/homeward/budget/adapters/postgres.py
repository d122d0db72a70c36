"""The ledger on PostgreSQL (asyncpg): the repository the use cases write through, the unit of
work that carries it (``PgBudgetUnitOfWork``), and the read queries behind the HTTP API and the CLI."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import asyncpg

from ..domain.calendar import parse_fy
from ..domain.ledger import AccountKey, AccountKind, Balance, LedgerName, Locality, Transfer, balance_deltas
from ..domain.locks import LockKey
from ..domain.money import Share
from ..domain.position import Figures, account_totals, transfer_figures
from ..domain.records import Allocation, Invoice, InvoiceStatus
from ..domain.schedule import RateSchedule
from ..domain.streams import OpenCommitment, Stream, StreamBook, StreamKind, normal_direction
from ..domain.thresholds import ThresholdState
from ..ports import BudgetUnitOfWork, CommissionerYearLabel, Config, LedgerRepository
from ..views import InvoiceView, StreamView, TransferView

Connection = Any  # an asyncpg connection (its stubs are not generic-friendly)

# The ledger gate: the one lock every ledger writer used to take ("Budg"). Every writer now takes
# it first, shared to lock per key or exclusive to take the whole ledger (see budget_lock() in
# migrations/0003 and docs/budget.md, Concurrency). An older replica, which takes it exclusive,
# therefore excludes the new ones during a rolling upgrade, and they it.
LEDGER_LOCK = 0x42756467

# How long a lock wanted out of order (below one this transaction already holds) may be waited
# for before the batch gives up with a retryable error (SQLSTATE 40P01) and is run again.
OUT_OF_ORDER_PATIENCE_MS = 500

# A transaction takes the whole ledger when the previous one on its connection had to be rolled
# back for lock order, or (if this is set) handled more use cases than this. Big batches (a
# backlog, a replay) touch nearly every commissioner they are given. Two replicas' batches touch
# disjoint commissioners, because each replica is given the same partitions of both topics budget
# reads and both are keyed by commissioner (homeward.contracts.topics.KEYED_BY), and one replica
# runs its batches one at a time (ServiceDefinition.one_batch_at_a_time): so they lock per key
# and run side by side, and only a collision (a pooled placement funded by commissioners of both
# replicas, a rebalance) makes the next transaction take turns on the whole ledger.
WHOLE_LEDGER_AFTER: int | None = None


@dataclass
class _Connection:
    """What the adapter remembers of one database connection between its transactions."""

    calls: int = 0  # use cases locked in its latest transaction, so far
    refused: bool = False  # its latest transaction was refused a lock out of order


_connections: dict[int, _Connection] = {}  # by server process id


def lock_id(key: LockKey) -> int:
    """A stable signed 64-bit advisory lock id for a key: BLAKE2b personalised per scope, so
    commissioner, placement and invoice keys are distinct namespaces (and, at 64 bits, apart
    from the kit's few fixed lock ids)."""
    digest = hashlib.blake2b(key.name.encode(), digest_size=8, person=f"hw-budget-{key.scope.value}".encode()[:16])
    return int.from_bytes(digest.digest(), "big", signed=True)


_KEY_COLUMNS = "ledger, commissioner, financial_year, programme, kind, counterparty, locality"
# The running totals' figures, in the order of Figures.as_tuple().
_FIGURES = "allocated, spent, committed, out_of_area_spent, local_spent, savings_to_date, savings_year"


def _key(row: Any, prefix: str = "") -> AccountKey:
    return AccountKey(
        LedgerName(row[prefix + "ledger"]),
        row[prefix + "commissioner"],
        row[prefix + "financial_year"],
        row[prefix + "programme"],
        AccountKind(row[prefix + "kind"]),
        row[prefix + "counterparty"],
        Locality(row[prefix + "locality"]),
    )


def _balance(row: Any) -> Balance:
    return Balance(
        int(row["debits_pending"]), int(row["debits_posted"]), int(row["credits_pending"]), int(row["credits_posted"])
    )


def _figures(row: Any) -> Figures:
    return Figures(*(int(row[c]) for c in _FIGURES.split(", ")))


def _stream(row: Any) -> Stream:
    return Stream(
        id=row["id"],
        kind=StreamKind(row["kind"]),
        placement_id=row["placement_id"],
        commissioner=row["commissioner"],
        programme=row["programme"],
        provider=row["provider"],
        out_of_area=row["out_of_area"],
        schedule=RateSchedule(tuple((dt.date.fromisoformat(d), int(r)) for d, r in json.loads(row["rates"]))),
        shares=tuple(Share(f, int(bp)) for f, bp in json.loads(row["shares"])),
        registered_rate=int(row["registered_rate"]),
        planned_end=row["planned_end_date"],
        end=row["end_date"],
        accrued_through=row["accrued_through"],
        committed_through=row["committed_through"],
        epoch=row["epoch"],
        last_effective=row["last_effective"],
        applied_events=tuple(json.loads(row["applied_events"])),
        details=json.loads(row["details"]),
    )


def _invoice(row: Any) -> Invoice:
    return Invoice(
        provider=row["provider"],
        invoice_id=row["invoice_id"],
        commissioner=row["commissioner"],
        placement_id=row["placement_id"],
        period_start=row["period_start"],
        period_end=row["period_end"],
        amount=int(row["amount_pence"]),
        event_id=row["event_id"],
        status=InvoiceStatus(row["status"]),
        accrued=row["accrued_pence"],
        variance=row["variance_pence"],
        tolerance=row["tolerance_pence"],
        flagged=row["flagged"],
        reason=row["reason"],
        confirmed_by=row["confirmed_by"],
    )


class PgBudgetRepository(LedgerRepository):
    def __init__(
        self,
        conn: Connection,
        *,
        single_lock: bool = False,
        patience_ms: int | None = OUT_OF_ORDER_PATIENCE_MS,
        whole_ledger_after: int | None = WHOLE_LEDGER_AFTER,
        whole_after_refusal: bool = True,
    ) -> None:
        """``single_lock`` takes the whole ledger in every transaction (the old behaviour, kept for
        the benchmark's baseline); ``whole_ledger_after`` a number of use cases after which the next
        transaction does (None: never for its size); ``whole_after_refusal`` whether a transaction
        after one refused a lock out of order does."""
        self.conn = conn
        self.single_lock = single_lock
        self.patience_ms = patience_ms
        self.whole_ledger_after = whole_ledger_after
        self.whole_after_refusal = whole_after_refusal

    async def lock(self, keys: Collection[LockKey]) -> None:
        seen = _connections.setdefault(self.conn.get_server_pid(), _Connection())
        # Used by budget_lock() only on a transaction's first call, when ``seen`` is the previous one's.
        whole = (
            self.single_lock
            or (self.whole_after_refusal and seen.refused)
            or (self.whole_ledger_after is not None and seen.calls > self.whole_ledger_after)
        )
        try:
            calls = await self.conn.fetchval(
                "SELECT budget_lock($1::bigint[], $2::int, $3::boolean)",
                [lock_id(k) for k in keys],
                self.patience_ms,
                whole,
            )
        except asyncpg.exceptions.DeadlockDetectedError:
            seen.refused = True
            raise
        if calls == 1:
            seen.refused = False
        seen.calls = calls

    # ------------------------------------------------------------------------ streams

    async def get_stream(self, stream_id: str, *, for_update: bool = True) -> Stream | None:
        sql = "SELECT * FROM streams WHERE id = $1" + (" FOR UPDATE" if for_update else "")
        row = await self.conn.fetchrow(sql, stream_id)
        return None if row is None else _stream(row)

    async def save_stream(self, s: Stream) -> None:
        await self.conn.execute(
            """INSERT INTO streams (id, kind, placement_id, commissioner, programme, provider, out_of_area,
                   start_date, planned_end_date, end_date, rates, shares, accrued_through, committed_through,
                   epoch, last_effective, applied_events, details, registered_rate)
               VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11::jsonb,$12::jsonb,$13,$14,$15,$16,$17::jsonb,$18::jsonb,$19)
               ON CONFLICT (id) DO UPDATE SET
                   planned_end_date = EXCLUDED.planned_end_date, end_date = EXCLUDED.end_date,
                   rates = EXCLUDED.rates, accrued_through = EXCLUDED.accrued_through,
                   committed_through = EXCLUDED.committed_through, epoch = EXCLUDED.epoch,
                   last_effective = EXCLUDED.last_effective, applied_events = EXCLUDED.applied_events,
                   updated_at = now()""",
            s.id,
            s.kind.value,
            s.placement_id,
            s.commissioner,
            s.programme,
            s.provider,
            s.out_of_area,
            s.start,
            s.planned_end,
            s.end,
            json.dumps([[d.isoformat(), r] for d, r in s.schedule.rates]),
            json.dumps([[x.funder, x.basis_points] for x in s.shares]),
            s.accrued_through,
            s.committed_through,
            s.epoch,
            s.last_effective,
            json.dumps(list(s.applied_events)),
            json.dumps(dict(s.details)),
            s.registered_rate,
        )

    async def stream_book(self, stream: Stream) -> StreamBook:
        """The stream's spend per funder and year (part 0) and its open commitments (part 1), in one query."""
        book = StreamBook()
        keys = _KEY_COLUMNS.split(", ")
        rows = await self.conn.fetch(
            f"""SELECT 0 AS part, NULL AS id, t.funder, t.financial_year, d.kind AS debit_kind,
                       sum(t.amount) AS amount, NULL::date AS range_start, NULL::date AS range_end, NULL::bigint AS seq,
                       {", ".join(f"NULL AS d_{c}" for c in keys)}, {", ".join(f"NULL AS c_{c}" for c in keys)}
                FROM transfers t JOIN accounts d ON d.id = t.debit_account_id
                WHERE t.stream_id = $1 AND t.kind IN ('posted', 'post_pending')
                GROUP BY t.funder, t.financial_year, d.kind
                UNION ALL
                SELECT 1, p.id::text, p.funder, p.financial_year, NULL,
                       p.amount - coalesce((SELECT sum(x.amount) FROM transfers x WHERE x.pending_id = p.id), 0),
                       p.range_start, p.range_end, p.seq,
                       {", ".join(f"d.{c}" for c in keys)}, {", ".join(f"c.{c}" for c in keys)}
                FROM transfers p
                JOIN accounts d ON d.id = p.debit_account_id
                JOIN accounts c ON c.id = p.credit_account_id
                WHERE p.stream_id = $1 AND p.kind = 'pending'
                ORDER BY part, seq""",
            stream.id,
        )
        for r in rows:
            key = (r["funder"], parse_fy(r["financial_year"]))
            amount = int(r["amount"])
            if r["part"] == 0:
                signed = amount if r["debit_kind"] in ("budget", "baseline") else -amount
                book.spend[key] = book.spend.get(key, 0) + signed
                continue
            if amount == 0:
                continue
            debit, credit = _key(r, "d_"), _key(r, "c_")
            book.open.setdefault(key, []).append(
                OpenCommitment(
                    r["id"],
                    key[0],
                    key[1],
                    r["range_start"],
                    r["range_end"],
                    amount if normal_direction(debit) else -amount,
                    debit,
                    credit,
                )
            )
        return book

    async def streams_to_accrue(self, today: dt.date, after: str, limit: int) -> list[str]:
        rows = await self.conn.fetch(
            """SELECT id FROM streams
               WHERE id > $2 AND accrued_through < CASE WHEN end_date IS NULL THEN $1
                                                       ELSE LEAST(GREATEST(end_date, start_date), $1) END
               ORDER BY id LIMIT $3""",
            today,
            after,
            limit,
        )
        return [r["id"] for r in rows]

    # ------------------------------------------------------------------------ posting

    async def _account_ids(self, keys: Sequence[AccountKey]) -> dict[AccountKey, int]:
        """Ids of these accounts, opening those that do not exist yet, in one statement."""
        columns = [
            [k.ledger.value for k in keys],
            [k.commissioner for k in keys],
            [k.financial_year for k in keys],
            [k.programme for k in keys],
            [k.kind.value for k in keys],
            [k.counterparty for k in keys],
            [k.locality.value for k in keys],
        ]
        unnest = "unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[])"
        # The SELECT does not see the rows this statement inserts (one snapshot), the RETURNING
        # does; an account is opened only under its commissioner's lock, so no other writer's
        # row can be in flight.
        rows = await self.conn.fetch(
            f"""WITH k ({_KEY_COLUMNS}) AS (SELECT * FROM {unnest}),
                     opened AS (INSERT INTO accounts ({_KEY_COLUMNS}) SELECT * FROM k ON CONFLICT DO NOTHING
                                RETURNING id, {_KEY_COLUMNS})
                SELECT * FROM opened
                UNION ALL
                SELECT a.* FROM k, LATERAL (  -- one index lookup per key (OFFSET 0 keeps it a lookup)
                    SELECT id, {_KEY_COLUMNS} FROM accounts x
                    WHERE {" AND ".join(f"x.{c} = k.{c}" for c in _KEY_COLUMNS.split(", "))} OFFSET 0) a""",
            *columns,
        )
        ids = {_key(r): r["id"] for r in rows}
        if len(ids) < len(set(keys)):  # only if someone opened one without the lock: read them again
            rows = await self.conn.fetch(
                f"SELECT id, {_KEY_COLUMNS} FROM accounts WHERE ({_KEY_COLUMNS}) IN (SELECT * FROM {unnest})",
                *columns,
            )
            ids = {_key(r): r["id"] for r in rows}
        return ids

    async def post(self, transfers: Sequence[Transfer]) -> int:
        if not transfers:
            return 0
        keys = sorted({t.debit for t in transfers} | {t.credit for t in transfers})
        ids = await self._account_ids(keys)
        inserted = await self.conn.fetch(
            """INSERT INTO transfers (id, kind, debit_account_id, credit_account_id, amount, pending_id, purpose,
                   cause, stream_id, placement_id, funder, financial_year, range_start, range_end, effective_on,
                   event_at, metadata, asserted_by, principal)
               SELECT x.id, x.kind, x.d, x.c, x.amount, x.pending_id, x.purpose, x.cause, x.stream_id,
                      x.placement_id, x.funder, x.financial_year, x.range_start, x.range_end, x.effective_on,
                      x.event_at, x.metadata, x.asserted_by, x.principal
               FROM unnest($1::uuid[], $2::text[], $3::bigint[], $4::bigint[], $5::bigint[], $6::uuid[],
                           $7::text[], $8::text[], $9::text[], $10::text[], $11::text[], $12::text[], $13::date[],
                           $14::date[], $15::date[], $16::timestamptz[], $17::jsonb[], $18::text[], $19::text[])
                    WITH ORDINALITY AS x(id, kind, d, c, amount, pending_id, purpose, cause, stream_id, placement_id,
                                         funder, financial_year, range_start, range_end, effective_on, event_at,
                                         metadata, asserted_by, principal, n)
               ORDER BY x.n
               ON CONFLICT (id) DO NOTHING
               RETURNING id::text""",
            [t.id for t in transfers],
            [t.kind.value for t in transfers],
            [ids[t.debit] for t in transfers],
            [ids[t.credit] for t in transfers],
            [t.amount for t in transfers],
            [t.pending_id for t in transfers],
            [t.purpose for t in transfers],
            [t.cause for t in transfers],
            [t.stream_id for t in transfers],
            [t.placement_id for t in transfers],
            [t.funder for t in transfers],
            [t.financial_year for t in transfers],
            [t.range_start for t in transfers],
            [t.range_end for t in transfers],
            [t.effective_on for t in transfers],
            [t.event_at for t in transfers],
            [json.dumps(dict(t.metadata)) for t in transfers],
            [t.asserted_by for t in transfers],
            [t.principal for t in transfers],
        )
        new_ids = {r["id"] for r in inserted}
        new = [t for t in transfers if t.id in new_ids]  # a transfer posted before adds nothing, twice
        if not new:
            return 0
        deltas: dict[int, Balance] = {}
        for t in new:
            debit, credit = balance_deltas(t.kind, t.amount)
            deltas.setdefault(ids[t.debit], Balance()).add(debit)
            deltas.setdefault(ids[t.credit], Balance()).add(credit)
        account_ids = sorted(deltas)
        totals = sorted(transfer_figures(new).items())
        figures = [f.as_tuple() for _, f in totals]
        # The cached balances and the running totals move together, in one statement.
        await self.conn.execute(
            f"""WITH balances AS (
                    UPDATE accounts a SET debits_pending = a.debits_pending + d.dp,
                        debits_posted = a.debits_posted + d.dd, credits_pending = a.credits_pending + d.cp,
                        credits_posted = a.credits_posted + d.cd
                    FROM unnest($1::bigint[], $2::bigint[], $3::bigint[], $4::bigint[], $5::bigint[])
                        AS d(id, dp, dd, cp, cd)
                    WHERE a.id = d.id)
                INSERT INTO position_totals AS t (commissioner, financial_year, programme, {_FIGURES})
                SELECT * FROM unnest($6::text[], $7::text[], $8::text[], $9::bigint[], $10::bigint[], $11::bigint[],
                                     $12::bigint[], $13::bigint[], $14::bigint[], $15::bigint[])
                ON CONFLICT (commissioner, financial_year, programme) DO UPDATE SET
                    {", ".join(f"{c} = t.{c} + EXCLUDED.{c}" for c in _FIGURES.split(", "))}, updated_at = now()""",
            account_ids,
            [deltas[i].debits_pending for i in account_ids],
            [deltas[i].debits_posted for i in account_ids],
            [deltas[i].credits_pending for i in account_ids],
            [deltas[i].credits_posted for i in account_ids],
            [k[0] for k, _ in totals],
            [k[1] for k, _ in totals],
            [k[2] for k, _ in totals],
            *([f[i] for f in figures] for i in range(7)),
        )
        return len(new)

    async def totals(self, keys: Collection[CommissionerYearLabel]) -> dict[CommissionerYearLabel, dict[str, Figures]]:
        rows = await self.conn.fetch(
            f"""SELECT commissioner, financial_year, programme, {_FIGURES} FROM position_totals
                WHERE (commissioner, financial_year) IN (SELECT * FROM unnest($1::text[], $2::text[]))""",
            [k[0] for k in keys],
            [k[1] for k in keys],
        )
        out: dict[CommissionerYearLabel, dict[str, Figures]] = {}
        for r in rows:
            out.setdefault((r["commissioner"], r["financial_year"]), {})[r["programme"]] = _figures(r)
        return out

    async def balances(self, commissioner: str, financial_year: str) -> dict[AccountKey, Balance]:
        rows = await self.conn.fetch(
            "SELECT * FROM accounts WHERE commissioner = $1 AND financial_year = $2", commissioner, financial_year
        )
        return {_key(r): _balance(r) for r in rows}

    # -------------------------------------------------------------------- allocations

    async def get_allocation(self, commissioner: str, allocation_id: str) -> Allocation | None:
        r = await self.conn.fetchrow(
            "SELECT * FROM allocations WHERE commissioner = $1 AND allocation_id = $2", commissioner, allocation_id
        )
        if r is None:
            return None
        return Allocation(
            r["commissioner"],
            r["allocation_id"],
            r["financial_year"],
            r["programme"],
            int(r["amount_pence"]),
            r["source"],
            r["source_organisation"],
            tuple(json.loads(r["event_ids"])),
        )

    async def save_allocation(self, a: Allocation) -> None:
        await self.conn.execute(
            """INSERT INTO allocations (commissioner, allocation_id, financial_year, programme, amount_pence, source,
                   source_organisation, event_ids) VALUES ($1,$2,$3,$4,$5,$6,$7,$8::jsonb)
               ON CONFLICT (commissioner, allocation_id) DO UPDATE SET amount_pence = EXCLUDED.amount_pence,
                   event_ids = EXCLUDED.event_ids, updated_at = now()""",
            a.commissioner,
            a.allocation_id,
            a.financial_year,
            a.programme,
            a.amount,
            a.source,
            a.source_organisation,
            json.dumps(list(a.event_ids)),
        )

    # ----------------------------------------------------------------------- invoices

    async def get_invoice(self, provider: str, invoice_id: str) -> Invoice | None:
        r = await self.conn.fetchrow(
            "SELECT * FROM invoices WHERE provider = $1 AND invoice_id = $2", provider, invoice_id
        )
        return None if r is None else _invoice(r)

    async def save_invoice(self, i: Invoice) -> None:
        await self.conn.execute(
            """INSERT INTO invoices (provider, invoice_id, commissioner, placement_id, period_start, period_end,
                   amount_pence, event_id, status, accrued_pence, variance_pence, tolerance_pence, flagged, reason,
                   confirmed_by)
               VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13,$14,$15)
               ON CONFLICT (provider, invoice_id) DO UPDATE SET status = EXCLUDED.status,
                   accrued_pence = EXCLUDED.accrued_pence, variance_pence = EXCLUDED.variance_pence,
                   tolerance_pence = EXCLUDED.tolerance_pence, flagged = EXCLUDED.flagged,
                   reason = EXCLUDED.reason, confirmed_by = EXCLUDED.confirmed_by, updated_at = now()""",
            i.provider,
            i.invoice_id,
            i.commissioner,
            i.placement_id,
            i.period_start,
            i.period_end,
            i.amount,
            i.event_id,
            i.status.value,
            i.accrued,
            i.variance,
            i.tolerance,
            i.flagged,
            i.reason,
            i.confirmed_by,
        )
        self.track(i)

    async def invoices_for_placement(self, placement_id: str) -> list[Invoice]:
        rows = await self.conn.fetch(
            "SELECT * FROM invoices WHERE placement_id = $1 ORDER BY received_at, invoice_id", placement_id
        )
        return [_invoice(r) for r in rows]

    # --------------------------------------------------------------------- thresholds

    async def threshold_states(
        self, keys: Collection[CommissionerYearLabel]
    ) -> dict[CommissionerYearLabel, dict[tuple[str, int], ThresholdState]]:
        rows = await self.conn.fetch(
            """SELECT commissioner, financial_year, programme, threshold_percent, breached, arm, last_alert_on
               FROM threshold_states
               WHERE (commissioner, financial_year) IN (SELECT * FROM unnest($1::text[], $2::text[]))""",
            [k[0] for k in keys],
            [k[1] for k in keys],
        )
        out: dict[CommissionerYearLabel, dict[tuple[str, int], ThresholdState]] = {}
        for r in rows:
            out.setdefault((r["commissioner"], r["financial_year"]), {})[(r["programme"], r["threshold_percent"])] = (
                ThresholdState(r["breached"], r["arm"], r["last_alert_on"])
            )
        return out

    async def threshold_inputs(
        self, keys: Collection[CommissionerYearLabel]
    ) -> tuple[
        dict[CommissionerYearLabel, dict[str, Figures]],
        dict[CommissionerYearLabel, dict[tuple[str, int], ThresholdState]],
    ]:
        """The running totals and the threshold states of these commissioners and years, in one query."""
        rows = await self.conn.fetch(
            f"""WITH k AS (SELECT * FROM unnest($1::text[], $2::text[]) AS k(c, fy))
                SELECT 0 AS part, t.commissioner, t.financial_year, t.programme, NULL::int AS threshold_percent,
                       NULL::boolean AS breached, NULL::int AS arm, NULL::date AS last_alert_on,
                       {", ".join(f"t.{c}" for c in _FIGURES.split(", "))}
                FROM k, LATERAL (SELECT * FROM position_totals WHERE commissioner = k.c AND financial_year = k.fy
                                 OFFSET 0) t
                UNION ALL
                SELECT 1, s.commissioner, s.financial_year, s.programme, s.threshold_percent, s.breached, s.arm,
                       s.last_alert_on, {", ".join("NULL" for _ in _FIGURES.split(", "))}
                FROM k, LATERAL (SELECT * FROM threshold_states WHERE commissioner = k.c AND financial_year = k.fy
                                 OFFSET 0) s""",
            [k[0] for k in keys],
            [k[1] for k in keys],
        )
        totals: dict[CommissionerYearLabel, dict[str, Figures]] = {}
        states: dict[CommissionerYearLabel, dict[tuple[str, int], ThresholdState]] = {}
        for r in rows:
            key = (r["commissioner"], r["financial_year"])
            if r["part"] == 0:
                totals.setdefault(key, {})[r["programme"]] = _figures(r)
            else:
                states.setdefault(key, {})[(r["programme"], r["threshold_percent"])] = ThresholdState(
                    r["breached"], r["arm"], r["last_alert_on"]
                )
        return totals, states

    async def save_threshold_state(
        self, commissioner: str, financial_year: str, programme: str, percent: int, state: ThresholdState
    ) -> None:
        await self.conn.execute(
            """INSERT INTO threshold_states
                   (commissioner, financial_year, programme, threshold_percent, breached, arm, last_alert_on)
               VALUES ($1, $2, $3, $4, $5, $6, $7)
               ON CONFLICT (commissioner, financial_year, programme, threshold_percent)
               DO UPDATE SET breached = EXCLUDED.breached, arm = EXCLUDED.arm,
                             last_alert_on = EXCLUDED.last_alert_on, updated_at = now()""",
            commissioner,
            financial_year,
            programme,
            percent,
            state.breached,
            state.arm,
            state.last_alert_on,
        )

    async def thresholds_moved(self, keys: Collection[tuple[str, str]]) -> None:
        if not keys:
            return
        commissioners, years = zip(*sorted(set(keys)), strict=True)
        await self.conn.execute(
            """INSERT INTO thresholds_moved (commissioner, financial_year)
               SELECT * FROM unnest($1::text[], $2::text[]) ON CONFLICT DO NOTHING""",
            list(commissioners),
            list(years),
        )

    async def thresholds_marked(self, limit: int) -> list[tuple[str, str]]:
        rows = await self.conn.fetch(
            "SELECT commissioner, financial_year FROM thresholds_moved ORDER BY moved_at, commissioner LIMIT $1",
            limit,
        )
        return [(r["commissioner"], r["financial_year"]) for r in rows]

    async def take_thresholds_moved(self, keys: Collection[tuple[str, str]]) -> list[tuple[str, str]]:
        if not keys:
            return []
        commissioners, years = zip(*sorted(set(keys)), strict=True)
        rows = await self.conn.fetch(
            """DELETE FROM thresholds_moved t USING unnest($1::text[], $2::text[]) AS k(commissioner, financial_year)
               WHERE t.commissioner = k.commissioner AND t.financial_year = k.financial_year
               RETURNING t.commissioner, t.financial_year""",
            list(commissioners),
            list(years),
        )
        return sorted((r["commissioner"], r["financial_year"]) for r in rows)


class PgBudgetUnitOfWork(BudgetUnitOfWork):
    """The budget's unit of work on PostgreSQL: the ledger on the transaction's connection.
    ``ledger_options`` are ``PgBudgetRepository``'s locking options (the benchmark's baselines)."""

    def __init__(
        self,
        conn: Connection,
        *args: Any,
        config: Config,
        ledger_options: Mapping[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(conn, *args, **kwargs)
        self.config = config
        self.ledger = PgBudgetRepository(conn, **(ledger_options or {}))


# ================================================================================ queries

_ENTRIES = """
    SELECT debit_account_id AS account_id,
           CASE kind WHEN 'pending' THEN amount WHEN 'posted' THEN 0 ELSE -amount END AS dp,
           CASE WHEN kind IN ('posted', 'post_pending') THEN amount ELSE 0 END AS dd,
           0::bigint AS cp, 0::bigint AS cd
    FROM transfers WHERE {where}
    UNION ALL
    SELECT credit_account_id, 0, 0,
           CASE kind WHEN 'pending' THEN amount WHEN 'posted' THEN 0 ELSE -amount END,
           CASE WHEN kind IN ('posted', 'post_pending') THEN amount ELSE 0 END
    FROM transfers WHERE {where}
"""


async def balances_as_of(
    conn: Connection, as_of: dt.date, commissioner: str | None = None
) -> dict[AccountKey, Balance]:
    """Balances summed from the entries effective on or before ``as_of``."""
    where = "effective_on <= $1"
    entries = _ENTRIES.format(where=where)
    rows = await conn.fetch(
        f"""WITH e AS ({entries})
            SELECT a.{", a.".join(_KEY_COLUMNS.split(", "))},
                   sum(e.dp) AS debits_pending, sum(e.dd) AS debits_posted,
                   sum(e.cp) AS credits_pending, sum(e.cd) AS credits_posted
            FROM e JOIN accounts a ON a.id = e.account_id
            WHERE $2::text IS NULL OR a.commissioner = $2
            GROUP BY a.id""",
        as_of,
        commissioner,
    )
    return {_key(r): _balance(r) for r in rows}


async def commissioners(conn: Connection, financial_year: str | None = None) -> list[str]:
    rows = await conn.fetch(
        "SELECT DISTINCT commissioner FROM accounts WHERE $1::text IS NULL OR financial_year = $1 ORDER BY 1",
        financial_year,
    )
    return [r["commissioner"] for r in rows]


def _transfer_json(r: Any) -> dict[str, Any]:
    accounts = {"debit": _key(r, "d_").label(), "credit": _key(r, "c_").label()}
    return TransferView.model_validate({**dict(r), **accounts}).to_json()


async def placement_history(conn: Connection, placement_id: str, as_of: dt.date | None) -> dict[str, Any] | None:
    streams = [_stream(r) for r in await conn.fetch("SELECT * FROM streams WHERE placement_id = $1", placement_id)]
    # What still waits for the placement in the kit's parking lot (handlers.awaiting_placement).
    parked = await conn.fetch(
        """SELECT event_id, event_type, reason, parked_at FROM parking_lot
           WHERE awaiting = $1 AND status = 'parked' ORDER BY id""",
        f"placement:{placement_id}",
    )
    invoices = await conn.fetch("SELECT * FROM invoices WHERE placement_id = $1 ORDER BY received_at", placement_id)
    if not streams and not parked and not invoices:
        return None
    d_cols = ", ".join(f"d.{c} AS d_{c}" for c in _KEY_COLUMNS.split(", "))
    c_cols = ", ".join(f"c.{c} AS c_{c}" for c in _KEY_COLUMNS.split(", "))
    rows = await conn.fetch(
        f"""SELECT t.id::text AS id, t.seq, t.kind, t.purpose, t.amount, t.funder, t.financial_year, t.range_start,
                   t.range_end, t.pending_id::text AS pending_id, t.effective_on, t.event_at, t.created_at, t.cause,
                   t.asserted_by, t.principal,
                   t.stream_id, {d_cols}, {c_cols}
            FROM transfers t JOIN accounts d ON d.id = t.debit_account_id JOIN accounts c ON c.id = t.credit_account_id
            WHERE t.placement_id = $1 AND ($2::date IS NULL OR t.effective_on <= $2)
            ORDER BY t.seq""",
        placement_id,
        as_of,
    )
    totals: dict[str, dict[str, int]] = {}
    for r in rows:
        debit = _key(r, "d_")
        signed = int(r["amount"]) if normal_direction(debit) else -int(r["amount"])
        bucket = totals.setdefault(r["stream_id"], {"posted_pence": 0, "pending_pence": 0})
        if r["kind"] in ("posted", "post_pending"):
            bucket["posted_pence"] += signed
        if r["kind"] == "pending":
            bucket["pending_pence"] += signed
        if r["kind"] in ("post_pending", "void_pending"):
            bucket["pending_pence"] -= signed
    return {
        "placement_id": placement_id,
        "as_of": as_of.isoformat() if as_of else None,
        "streams": [
            {
                **StreamView.of(s).to_json(),
                "spent_pence" if s.kind is StreamKind.PLACEMENT else "saving_realised_pence": totals.get(s.id, {}).get(
                    "posted_pence", 0
                ),
                "committed_pence" if s.kind is StreamKind.PLACEMENT else "saving_pending_pence": totals.get(
                    s.id, {}
                ).get("pending_pence", 0),
            }
            for s in streams
        ],
        "transfers": [_transfer_json(r) for r in rows],
        "invoices": [InvoiceView.of(_invoice(r)).to_json() for r in invoices],
        "parked_events": [
            {
                "event_id": r["event_id"],
                "type": r["event_type"],
                "reason": r["reason"],
                "parked_at": r["parked_at"].isoformat(),
            }
            for r in parked
        ],
    }


async def invoices(conn: Connection, commissioner: str, flagged: bool | None) -> list[dict[str, Any]]:
    rows = await conn.fetch(
        """SELECT * FROM invoices WHERE commissioner = $1 AND ($2::boolean IS NULL OR flagged = $2)
           ORDER BY period_start, provider, invoice_id""",
        commissioner,
        flagged,
    )
    return [InvoiceView.of(_invoice(r)).to_json() for r in rows]


# ========================================================================== invariant check


@dataclass
class CheckReport:
    accounts: int = 0
    transfers: int = 0
    streams: int = 0
    totals: dict[str, dict[str, int]] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def to_json(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "accounts": self.accounts,
            "transfers": self.transfers,
            "streams": self.streams,
            "totals": self.totals,
            "problems": self.problems,
        }


async def check(conn: Connection, *, streams: bool = True) -> CheckReport:
    """Prove the ledger: debits equal credits, every cached balance is the sum of its entries, the
    running totals are the sums of the cached balances' figures, no commitment is over-drawn, and
    (with ``streams``) each placement's spend and commitment equal its rate schedule. Runs in one
    repeatable-read snapshot, so concurrent writers cannot skew it."""
    report = CheckReport()
    async with conn.transaction(isolation="repeatable_read", readonly=True):
        report.accounts = int(await conn.fetchval("SELECT count(*) FROM accounts"))
        report.transfers = int(await conn.fetchval("SELECT count(*) FROM transfers"))
        for r in await conn.fetch(
            """SELECT ledger, sum(debits_posted) AS dd, sum(credits_posted) AS cd,
                      sum(debits_pending) AS dp, sum(credits_pending) AS cp
               FROM accounts GROUP BY ledger ORDER BY ledger"""
        ):
            report.totals[r["ledger"]] = {
                "debits_posted": int(r["dd"]),
                "credits_posted": int(r["cd"]),
                "debits_pending": int(r["dp"]),
                "credits_pending": int(r["cp"]),
            }
            if r["dd"] != r["cd"]:
                report.problems.append(f"{r['ledger']}: posted debits {r['dd']} != posted credits {r['cd']}")
            if r["dp"] != r["cp"]:
                report.problems.append(f"{r['ledger']}: pending debits {r['dp']} != pending credits {r['cp']}")
        entries = _ENTRIES.format(where="true")
        for r in await conn.fetch(
            f"""WITH e AS ({entries}),
                     s AS (SELECT account_id, sum(dp) AS dp, sum(dd) AS dd, sum(cp) AS cp, sum(cd) AS cd
                           FROM e GROUP BY account_id)
                SELECT a.*, coalesce(s.dp, 0) AS s_dp, coalesce(s.dd, 0) AS s_dd,
                       coalesce(s.cp, 0) AS s_cp, coalesce(s.cd, 0) AS s_cd
                FROM accounts a LEFT JOIN s ON s.account_id = a.id
                WHERE (a.debits_pending, a.debits_posted, a.credits_pending, a.credits_posted)
                      IS DISTINCT FROM (coalesce(s.dp, 0), coalesce(s.dd, 0), coalesce(s.cp, 0), coalesce(s.cd, 0))"""
        ):
            report.problems.append(
                f"{_key(r).label()}: cached balance {_balance(r).as_tuple()} != sum of entries "
                f"{(int(r['s_dp']), int(r['s_dd']), int(r['s_cp']), int(r['s_cd']))}"
            )
        cached = {_key(r): _balance(r) for r in await conn.fetch("SELECT * FROM accounts")}
        want = account_totals(cached)
        have = {
            (r["commissioner"], r["financial_year"], r["programme"]): _figures(r)
            for r in await conn.fetch("SELECT * FROM position_totals")
        }
        for k in sorted(set(want) | set(have)):
            if want.get(k, Figures()) != have.get(k, Figures()):
                report.problems.append(
                    f"running totals {':'.join(k)}: {have.get(k, Figures()).as_tuple()} != the accounts' "
                    f"{want.get(k, Figures()).as_tuple()}"
                )
        for r in await conn.fetch(
            """SELECT p.id::text AS id, p.amount, sum(x.amount) AS drawn
               FROM transfers p JOIN transfers x ON x.pending_id = p.id
               GROUP BY p.id, p.amount HAVING sum(x.amount) > p.amount"""
        ):
            report.problems.append(f"pending transfer {r['id']} drawn {r['drawn']} beyond its {r['amount']}")
        if streams:
            repo = PgBudgetRepository(conn)
            for row in await conn.fetch("SELECT * FROM streams ORDER BY id"):
                stream = _stream(row)
                report.streams += 1
                report.problems += stream.problems(await repo.stream_book(stream))
    return report
