"""asyncpg adapters for the ports: the unit of work and its repositories (the consuming
transaction's), the email queue, the digest store and the recipient directory."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import AsyncIterator, Collection, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any, TypeAlias

import asyncpg
from homeward.contracts import Payload, new_event, service_source
from homeward.contracts.vocab import Role
from homeward.kit import outbox
from homeward.kit.topics import Topics

from ..domain.digest import DigestWindow
from ..domain.model import Candidate, DefaultRoute, Recipient, Subscription
from ..domain.recipients import RecipientSpec
from ..ports import (
    AlertRepository,
    Config,
    DigestStore,
    DigestTransaction,
    Directory,
    EmailQueue,
    NotificationRecord,
    NotificationRef,
    NotificationsUnitOfWork,
    OutgoingEmail,
    QueuedEmail,
    RecipientRepository,
    Renderer,
    Settlement,
    WaitingItem,
)

SERVICE = "notifications"
Conn: TypeAlias = asyncpg.Connection  # type: ignore[type-arg]
Pool: TypeAlias = asyncpg.Pool  # type: ignore[type-arg]


def recipient_from_row(row: asyncpg.Record) -> Recipient:
    return Recipient(
        id=row["id"],
        email=row["email"],
        organisation=row["organisation"],
        role=Role(row["role"]),
        display_name=row["display_name"],
        digest=row["digest"],
        active=row["active"],
    )


def _subscription(row: asyncpg.Record) -> Subscription:
    return Subscription(
        recipient_id=row["recipient_id"],
        event_type=row["event_type"],
        min_escalation_level=row["min_escalation_level"],
        max_escalation_level=row["max_escalation_level"],
        opted_out_at=row["opted_out_at"],
    )


def _facts(raw: str | list[Any]) -> tuple[tuple[str, str], ...]:
    items = json.loads(raw) if isinstance(raw, str) else raw
    return tuple((str(k), str(v)) for k, v in items)


_INSERT_EMAIL = """
INSERT INTO emails (id, message_id, kind, recipient_id, to_address, to_name, digest_date,
                    subject, body_text, body_html, created_at)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
ON CONFLICT DO NOTHING
RETURNING id"""


async def _insert_email(conn: Conn, e: OutgoingEmail) -> bool:
    inserted = await conn.fetchval(
        _INSERT_EMAIL,
        e.id,
        e.message_id,
        e.kind,
        e.recipient_id,
        e.to_address,
        e.to_name,
        e.digest_date,
        e.subject,
        e.body_text,
        e.body_html,
        e.created_at,
    )
    return inserted is not None


class PgRecipientRepository(RecipientRepository):
    def __init__(self, conn: Conn) -> None:
        self.conn = conn

    async def candidates(self, event_type: str, organisations: Collection[str]) -> list[Candidate]:
        rows = await self.conn.fetch(
            """SELECT r.id, r.email, r.display_name, r.organisation, r.role, r.digest, r.active,
                      s.recipient_id, s.event_type, s.min_escalation_level, s.max_escalation_level, s.opted_out_at
               FROM subscriptions s JOIN recipients r ON r.id = s.recipient_id
               WHERE s.event_type = $1 AND r.organisation = ANY($2::text[])
                 AND r.active AND s.opted_out_at IS NULL
               ORDER BY r.id""",
            event_type,
            sorted(organisations),
        )
        return [Candidate(recipient_from_row(r), _subscription(r)) for r in rows]


class PgAlertRepository(AlertRepository):
    def __init__(self, conn: Conn) -> None:
        self.conn = conn

    async def record(self, n: NotificationRecord, email: OutgoingEmail | None) -> bool:
        if email is not None:
            await _insert_email(self.conn, email)
        inserted = await self.conn.fetchval(
            """INSERT INTO notifications (id, cause_event_id, cause_event_type, event_name, correlation_id,
                   occurred_at, recipient_id, email_address, organisation, role, reference, escalation_level,
                   subject, due_by, facts, digest, email_id, message_id, recorded_at, status, late, suppressed_reason)
               VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13,$14,$15::jsonb,$16,$17,$18,$19,$20,$21,$22)
               ON CONFLICT DO NOTHING
               RETURNING id""",
            n.id,
            n.cause_event_id,
            n.cause_event_type,
            n.event_name,
            n.correlation_id,
            n.occurred_at,
            n.recipient_id,
            n.email_address,
            n.organisation,
            n.role.value,
            n.reference,
            n.escalation_level,
            n.subject,
            n.due_by,
            json.dumps([list(f) for f in n.facts]),
            n.digest,
            n.email_id,
            n.message_id,
            n.recorded_at,
            n.status,
            n.late,
            n.suppressed_reason,
        )
        return inserted is not None


class PgNotificationsUnitOfWork(NotificationsUnitOfWork):
    """The unit of work over one PostgreSQL transaction; the kit builds one for each event."""

    def __init__(self, conn: Conn, *args: Any, config: Config, renderer: Renderer, **kwargs: Any) -> None:
        super().__init__(conn, *args, **kwargs)
        self.recipients = PgRecipientRepository(conn)
        self.alerts = PgAlertRepository(conn)
        self.renderer = renderer
        self.config = config


def _ref(row: asyncpg.Record) -> NotificationRef:
    return NotificationRef(
        id=row["id"],
        cause_event_id=row["cause_event_id"],
        cause_event_type=row["cause_event_type"],
        correlation_id=row["correlation_id"],
        organisation=row["organisation"],
        role=Role(row["role"]),
        message_id=row["message_id"],
    )


_SETTLE_NOTIFICATIONS = """
UPDATE notifications SET status = $2::text, sent_at = CASE WHEN $2::text = 'sent' THEN $3::timestamptz END,
       failed_at = CASE WHEN $2::text = 'failed' THEN $3::timestamptz END
WHERE email_id = $1
RETURNING id, cause_event_id, cause_event_type, correlation_id, organisation, role, message_id"""


class PgSettlement(Settlement):
    def __init__(self, conn: Conn, topics: Topics) -> None:
        self.conn = conn
        self.topics = topics

    async def mark_sent(self, email_id: str, at: dt.datetime) -> list[NotificationRef]:
        done = await self.conn.fetchval(
            """UPDATE emails SET status = 'sent', sent_at = $2, last_error = NULL
               WHERE id = $1 AND status = 'pending' RETURNING id""",
            email_id,
            at,
        )
        if done is None:
            return []
        return [_ref(r) for r in await self.conn.fetch(_SETTLE_NOTIFICATIONS, email_id, "sent", at)]

    async def mark_failed(
        self, email_id: str, at: dt.datetime, error: str, claim: str | None = None
    ) -> list[NotificationRef]:
        done = await self.conn.fetchval(
            """UPDATE emails SET status = 'failed', failed_at = $2, last_error = $3
               WHERE id = $1 AND status = 'pending' AND ($4::text IS NULL OR claim_token = $4) RETURNING id""",
            email_id,
            at,
            error,
            claim,
        )
        if done is None:
            return []
        return [_ref(r) for r in await self.conn.fetch(_SETTLE_NOTIFICATIONS, email_id, "failed", at)]

    async def retry_later(self, email_id: str, error: str, delay_s: float, claim: str | None = None) -> None:
        await self.conn.execute(
            """UPDATE emails SET last_error = $2, next_attempt_at = now() + make_interval(secs => $3)
               WHERE id = $1 AND status = 'pending' AND ($4::text IS NULL OR claim_token = $4)""",
            email_id,
            error,
            float(delay_s),
            claim,
        )

    async def publish(self, payload: Payload, *, id: str, cause: NotificationRef, at: dt.datetime) -> None:
        event = new_event(
            payload,
            source=service_source(SERVICE),
            id=id,
            time=at,
            correlationid=cause.correlation_id or cause.cause_event_id,
            causationid=cause.cause_event_id,
        )
        await outbox.add(self.conn, self.topics.internal(SERVICE), event)


def _queued(row: asyncpg.Record) -> QueuedEmail:
    return QueuedEmail(
        id=row["id"],
        message_id=row["message_id"],
        kind=row["kind"],
        recipient_id=row["recipient_id"],
        to_address=row["to_address"],
        to_name=row["to_name"],
        subject=row["subject"],
        body_text=row["body_text"],
        body_html=row["body_html"],
        created_at=row["created_at"],
        digest_date=row["digest_date"],
        attempts=row["attempts"],
        requeued=row["requeued"],
        claim=row["claim_token"] or "",
    )


class PgEmailQueue(EmailQueue):
    def __init__(self, pool: Pool, topics: Topics) -> None:
        self.pool = pool
        self.topics = topics

    async def claim_due(self, limit: int, lease_s: float) -> list[QueuedEmail]:
        async with self.pool.acquire() as conn:
            rows = await conn.fetch(
                """WITH due AS (
                       SELECT id FROM emails
                       WHERE status = 'pending' AND next_attempt_at <= now()
                       ORDER BY next_attempt_at, id
                       LIMIT $1
                       FOR UPDATE SKIP LOCKED)
                   UPDATE emails e
                   SET attempts = e.attempts + 1, last_attempt_at = now(),
                       next_attempt_at = now() + make_interval(secs => $2),
                       claim_token = gen_random_uuid()::text
                   FROM due WHERE e.id = due.id
                   RETURNING e.*""",
                limit,
                float(lease_s),
            )
        return [_queued(r) for r in rows]

    async def renew(self, email_id: str, claim: str, lease_s: float) -> bool:
        async with self.pool.acquire() as conn:
            renewed = await conn.fetchval(
                """UPDATE emails SET next_attempt_at = now() + make_interval(secs => $3)
                   WHERE id = $1 AND claim_token = $2 AND status = 'pending' RETURNING id""",
                email_id,
                claim,
                float(lease_s),
            )
        return renewed is not None

    def settlement(self) -> AbstractAsyncContextManager[Settlement]:
        return self._settlement()

    @asynccontextmanager
    async def _settlement(self) -> AsyncIterator[Settlement]:
        async with self.pool.acquire() as conn, conn.transaction():
            yield PgSettlement(conn, self.topics)

    async def requeue_failed(self, email_id: str | None = None) -> int:
        """Put failed emails back in the queue with fresh attempts (after a long outage, say)."""
        async with self.pool.acquire() as conn, conn.transaction():
            ids = [
                r["id"]
                for r in await conn.fetch(
                    """UPDATE emails SET status = 'pending', attempts = 0, next_attempt_at = now(),
                              requeued = requeued + 1, failed_at = NULL
                       WHERE status = 'failed' AND ($1::text IS NULL OR id = $1) RETURNING id""",
                    email_id,
                )
            ]
            await conn.execute(
                "UPDATE notifications SET status = 'pending', failed_at = NULL WHERE email_id = ANY($1::text[])", ids
            )
        return len(ids)


# A digest holds what was recorded before its hour, and late alerts recorded up to the moment
# it is made ($2 the cutoff, $3 late_until: NULL for a past day's digest).
_IN_WINDOW = "(recorded_at < $2 OR (late AND recorded_at <= $3::timestamptz))"


class PgDigestTransaction(DigestTransaction):
    def __init__(self, conn: Conn) -> None:
        self.conn = conn

    async def waiting(self, recipient_id: int, window: DigestWindow) -> list[WaitingItem]:
        rows = await self.conn.fetch(
            f"""SELECT id, subject, due_by, facts FROM notifications
               WHERE recipient_id = $1 AND digest AND email_id IS NULL AND status = 'pending'
                 AND {_IN_WINDOW}
               ORDER BY due_by, recorded_at, id
               FOR UPDATE""",
            recipient_id,
            window.cutoff,
            window.late_until,
        )
        return [WaitingItem(r["id"], r["subject"], r["due_by"], _facts(r["facts"])) for r in rows]

    async def add_digest(self, email: OutgoingEmail, notification_ids: Sequence[str]) -> bool:
        if not await _insert_email(self.conn, email):
            return False
        await self.conn.execute(
            "UPDATE notifications SET email_id = $1, message_id = $2 WHERE id = ANY($3::text[])",
            email.id,
            email.message_id,
            list(notification_ids),
        )
        return True


class PgDigestStore(DigestStore):
    def __init__(self, pool: Pool) -> None:
        self.pool = pool

    async def recipients_waiting(self, window: DigestWindow) -> list[Recipient]:
        async with self.pool.acquire() as conn:
            rows = await conn.fetch(
                """SELECT r.* FROM recipients r
                   WHERE r.active AND EXISTS (
                       SELECT 1 FROM notifications n
                       WHERE n.recipient_id = r.id AND n.digest AND n.email_id IS NULL
                         AND n.status = 'pending'
                         AND (n.recorded_at < $1 OR (n.late AND n.recorded_at <= $2::timestamptz)))
                   ORDER BY r.id""",
                window.cutoff,
                window.late_until,
            )
        return [recipient_from_row(r) for r in rows]

    def transaction(self) -> AbstractAsyncContextManager[DigestTransaction]:
        return self._transaction()

    @asynccontextmanager
    async def _transaction(self) -> AsyncIterator[DigestTransaction]:
        async with self.pool.acquire() as conn, conn.transaction():
            yield PgDigestTransaction(conn)


class PgDirectory(Directory):
    def __init__(self, conn: Conn) -> None:
        self.conn = conn

    async def upsert_recipient(self, spec: RecipientSpec) -> tuple[Recipient, bool]:
        row = await self.conn.fetchrow(
            """INSERT INTO recipients (email, display_name, organisation, role, digest)
               VALUES ($1, $2, $3, $4, $5)
               ON CONFLICT (email) DO UPDATE SET
                   display_name = COALESCE(EXCLUDED.display_name, recipients.display_name),
                   organisation = EXCLUDED.organisation, role = EXCLUDED.role, digest = EXCLUDED.digest,
                   active = true, updated_at = now()
               RETURNING *, (xmax = 0) AS inserted""",
            spec.email,
            spec.display_name,
            spec.organisation,
            spec.role.value,
            spec.digest,
        )
        assert row is not None
        return recipient_from_row(row), bool(row["inserted"])

    async def find(self, email: str) -> Recipient | None:
        row = await self.conn.fetchrow("SELECT * FROM recipients WHERE email = $1", email)
        return recipient_from_row(row) if row else None

    async def recipients(self, organisation: str | None = None) -> list[Recipient]:
        rows = await self.conn.fetch(
            "SELECT * FROM recipients WHERE ($1::text IS NULL OR organisation = $1) ORDER BY organisation, role, email",
            organisation,
        )
        return [recipient_from_row(r) for r in rows]

    async def set_active(self, recipient_id: int, active: bool) -> None:
        await self.conn.execute(
            "UPDATE recipients SET active = $2, updated_at = now() WHERE id = $1", recipient_id, active
        )

    async def default_routes(self) -> list[DefaultRoute]:
        rows = await self.conn.fetch("SELECT * FROM default_routes ORDER BY event_type, role")
        return [
            DefaultRoute(r["event_type"], Role(r["role"]), r["min_escalation_level"], r["max_escalation_level"])
            for r in rows
        ]

    async def subscribe(
        self, recipient_id: int, event_type: str, min_level: int, max_level: int | None, *, replace: bool
    ) -> bool:
        conflict = (
            "DO UPDATE SET min_escalation_level = EXCLUDED.min_escalation_level, "
            "max_escalation_level = EXCLUDED.max_escalation_level"
            if replace
            else "DO NOTHING"
        )
        done = await self.conn.fetchval(
            f"""INSERT INTO subscriptions (recipient_id, event_type, min_escalation_level, max_escalation_level)
                VALUES ($1, $2, $3, $4) ON CONFLICT (recipient_id, event_type) {conflict} RETURNING id""",
            recipient_id,
            event_type,
            min_level,
            max_level,
        )
        return done is not None

    async def subscriptions(self, recipient_id: int | None = None) -> list[tuple[Recipient, Subscription]]:
        rows = await self.conn.fetch(
            """SELECT r.*, s.recipient_id, s.event_type, s.min_escalation_level, s.max_escalation_level,
                      s.opted_out_at
               FROM subscriptions s JOIN recipients r ON r.id = s.recipient_id
               WHERE ($1::bigint IS NULL OR r.id = $1)
               ORDER BY r.organisation, r.role, r.email, s.event_type""",
            recipient_id,
        )
        return [(recipient_from_row(r), _subscription(r)) for r in rows]

    async def set_opted_out(self, recipient_id: int, event_type: str, at: dt.datetime | None) -> bool:
        done = await self.conn.fetchval(
            """UPDATE subscriptions SET opted_out_at = $3 WHERE recipient_id = $1 AND event_type = $2
               RETURNING id""",
            recipient_id,
            event_type,
            at,
        )
        return done is not None
