"""The service end to end on the real Kafka, the real PostgreSQL and a real SMTP server
(aiosmtpd), reading the delivered messages back with Python's email parser."""

from __future__ import annotations

import datetime as dt
import json
import uuid
from collections.abc import AsyncIterator, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from email.message import EmailMessage
from typing import Any

import asyncpg
import httpx
import pytest
from homeward.contracts import parse_kafka
from homeward.contracts.vocab import Role
from homeward.kit.clock import FixedClock
from homeward.kit.http import build_app
from homeward.kit.logging import NHS_NUMBER_LIKE
from homeward.kit.service import ServiceRuntime
from homeward.kit.topics import Topics
from homeward.notifications import management
from homeward.notifications.adapters.postgres import PgDirectory, PgEmailQueue
from homeward.notifications.adapters.smtp import SmtpMailer
from homeward.notifications.domain.recipients import RecipientSpec
from homeward.notifications.entrypoints import http
from homeward.notifications.entrypoints.app import build_definition
from homeward.notifications.entrypoints.jobs import smtp_config
from homeward.notifications.ports import MailConnection, Mailer, OutgoingEmail
from homeward.notifications.settings import NotificationsSettings
from homeward.testing import KafkaProbe, eventually, ops_headers, staff_headers
from notifications_support import PERSONAL_STRINGS, SOURCES, SmtpServer, sample_data, sample_event

pytestmark = pytest.mark.integration

NOW = dt.datetime(2026, 3, 12, 12, 0, tzinfo=dt.UTC)
SENT_TYPE = "homeward.NotificationSent.v1"
FAILED_TYPE = "homeward.NotificationFailed.v1"


def _settings(database: str, kafka: KafkaProbe, smtp: SmtpServer, **overrides: Any) -> NotificationsSettings:
    values: dict[str, Any] = {
        "database_url": database,
        "http_port": 0,
        "consumer_group": f"{kafka.topics.namespace}homeward-notifications-{uuid.uuid4().hex[:8]}",
        "batch_timeout_ms": 50,
        "retry_backoff_s": 0.01,
        "outbox_poll_interval_s": 0.2,
        "scheduler_interval_s": 0.3,
        "sender_interval_s": 0.1,
        "smtp_host": "127.0.0.1",
        "smtp_port": smtp.port,
        "smtp_timeout_s": 5,
        "backoff_base_s": 0.05,
        "backoff_max_s": 0.2,
        "send_lease_s": 0.5,
        "kafka": kafka.service_settings("notifications").model_copy(update={"metadata_max_age_ms": 1000}),
    }
    return NotificationsSettings(**{**values, **overrides})


@asynccontextmanager
async def _running(
    settings: NotificationsSettings, mailer: Mailer | None = None, clock: FixedClock | None = None
) -> AsyncIterator[ServiceRuntime]:
    runtime = ServiceRuntime(build_definition(settings, mailer=mailer), clock=clock or FixedClock(NOW))
    await runtime.start()
    try:
        yield runtime
    finally:
        await runtime.stop()


async def _staff(database: str, *people: tuple[str, str, Role], digest: Sequence[str] = ()) -> None:
    conn = await asyncpg.connect(database)
    try:
        async with conn.transaction():
            d = PgDirectory(conn)
            for email, org, role in people:
                await management.add_recipient(d, RecipientSpec(email, org, role, digest=email in digest))
    finally:
        await conn.close()


async def _send(kafka: KafkaProbe, name: str, commissioner: str = "05A", *, id: str | None = None, **extra: Any) -> str:
    """Publish as the upstream service does, with personal data the contract must drop on the way in."""
    event = sample_event(name, commissioner, id=id, **extra)
    raw = {**event.to_dict(), "data": sample_data(name, commissioner, **extra)}
    await kafka.send_raw(
        kafka.topics.internal(SOURCES[name]),
        json.dumps(raw).encode(),
        key=event.key.encode(),
        headers=[("content-type", b"application/cloudevents+json")],
    )
    return event.id


async def _scalar(database: str, sql: str, *args: Any) -> Any:
    conn = await asyncpg.connect(database)
    try:
        return await conn.fetchval(sql, *args)
    finally:
        await conn.close()


async def _all_handled_and_settled(database: str, event_ids: Sequence[str]) -> bool:
    handled = await _scalar(database, "SELECT count(*) FROM inbox WHERE event_id = ANY($1::text[])", list(event_ids))
    pending = await _scalar(database, "SELECT count(*) FROM emails WHERE status = 'pending'")
    return bool(handled == len(set(event_ids)) and pending == 0)


async def _assert_nothing_more_is_sent(runtime: ServiceRuntime, database: str, smtp: SmtpServer) -> None:
    """Let every lease and backoff run out, run the sender again: nothing already sent goes out again."""
    before = len(smtp.messages())
    await _scalar(database, "UPDATE emails SET next_attempt_at = now() - interval '1 day'")
    await runtime.run_jobs_once()
    assert len(smtp.messages()) == before


def _to(msg: EmailMessage) -> str:
    return str(msg["To"].addresses[0].addr_spec)


def _deliveries(smtp: SmtpServer) -> list[tuple[str, str]]:
    # A subject folded right after "Subject:" reads back with the folding space; strip it.
    return sorted((_to(m), str(m["Subject"]).strip()) for m in smtp.messages())


async def test_alerts_reach_exactly_the_subscribed_people_once_each(
    database: str, kafka: KafkaProbe, smtp_server: SmtpServer
) -> None:
    async with _running(_settings(database, kafka, smtp_server)) as runtime:
        channels = json.dumps(runtime.asyncapi())
        assert "NotificationSent" in channels and "NotificationFailed" in channels
        await _staff(
            database,
            ("case@05a.nhs.uk", "05A", Role.CASE_MANAGER),
            ("lead@05a.nhs.uk", "05A", Role.CLINICAL_LEAD),
            ("finance@05a.nhs.uk", "05A", Role.FINANCE_LEAD),
            ("oap@05a.nhs.uk", "05A", Role.OAP_LEAD),
            ("optout@05a.nhs.uk", "05A", Role.CASE_MANAGER),
            ("case@05h.nhs.uk", "05H", Role.CASE_MANAGER),
        )
        conn = await asyncpg.connect(database)
        try:
            await management.opt_out(PgDirectory(conn), "optout@05a.nhs.uk", "ReviewOverdue", NOW)
        finally:
            await conn.close()
        ids = [
            await _send(kafka, "ReviewOverdue", placement_id="PLC-A-1", escalation_level=1),
            await _send(kafka, "ReviewOverdue", placement_id="PLC-B-2", escalation_level=2, days_overdue=35),
            await _send(kafka, "PlacementRegistered", placement_id="PLC-IN-3", out_of_area=False, inappropriate=False),
            await _send(kafka, "PlacementRegistered", placement_id="PLC-OUT-4"),
            await _send(kafka, "BudgetThresholdBreached"),
            await _send(kafka, "ReviewDueSoon", "05H", placement_id="PLC-H-5"),
        ]
        assert await eventually(lambda: _all_handled_and_settled(database, ids), timeout=60)
        delivered = [
            (to, next(r for r in ("PLC-A-1", "PLC-B-2", "PLC-OUT-4", "PLC-H-5", "2025-26") if r in s))
            for to, s in _deliveries(smtp_server)
        ]
        assert sorted(delivered) == sorted(
            [
                ("case@05a.nhs.uk", "PLC-A-1"),
                ("case@05a.nhs.uk", "PLC-B-2"),
                ("lead@05a.nhs.uk", "PLC-B-2"),
                ("oap@05a.nhs.uk", "PLC-OUT-4"),
                ("finance@05a.nhs.uk", "2025-26"),
                ("case@05h.nhs.uk", "PLC-H-5"),
            ]
        )
        escalated = [s for _, s in _deliveries(smtp_server) if "PLC-B-2" in s]
        assert len(escalated) == 2 and all("(escalation level 2): CTR overdue 35 days" in s for s in escalated)
        for msg in smtp_server.messages():
            assert [p.get_content_type() for p in msg.iter_parts()] == ["text/plain", "text/html"]
            assert msg["Subject"].startswith("Action needed by ")
            # Message-ID and X-Homeward-Email carry the email's own hex id, which may hold ten digits
            # in a row; the MIME boundary is random digits. What a person reads is checked.
            headers = "\n".join(f"{k}: {v}" for k, v in msg.items() if k in ("From", "To", "Subject", "Date"))
            bodies = msg.get_body(("plain",)).get_content() + msg.get_body(("html",)).get_content()  # type: ignore[union-attr]
            raw = headers + bodies
            assert NHS_NUMBER_LIKE.search(raw) is None
            assert not [p for p in PERSONAL_STRINGS if p in raw]
        records = await kafka.read(kafka.topics.internal("notifications"), until=lambda r: len(r) >= 6)
        sent = [parse_kafka(r.value, r.headers) for r in records]
        assert sorted(e.data.message_id for e in sent) == sorted(m["Message-ID"] for m in smtp_server.messages())
        assert {e.causationid for e in sent} <= set(ids)


async def test_a_duplicate_event_sends_nothing_twice(database: str, kafka: KafkaProbe, smtp_server: SmtpServer) -> None:
    async with _running(_settings(database, kafka, smtp_server)) as runtime:
        await _staff(database, ("case@05a.nhs.uk", "05A", Role.CASE_MANAGER))
        first = await _send(kafka, "ReviewDueSoon", id="due-soon-once")
        await _send(kafka, "ReviewDueSoon", id="due-soon-once")
        # Same placement, so the same partition: when this one is handled the copy was too.
        later = await _send(kafka, "ReviewDueSoon", id="due-soon-later", due_date="2026-04-02", days_until_due=21)
        assert await eventually(lambda: _all_handled_and_settled(database, [first, later]), timeout=60)
        subjects = [s for _, s in _deliveries(smtp_server)]
        assert len(subjects) == 2
        assert len([s for s in subjects if "in 14 days" in s]) == 1
        assert await _scalar(database, "SELECT count(*) FROM notifications") == 2
        await _assert_nothing_more_is_sent(runtime, database, smtp_server)


async def test_smtp_down_then_back_delivers_every_email_and_none_twice(
    database: str, kafka: KafkaProbe, stopped_smtp_server: SmtpServer
) -> None:
    smtp = stopped_smtp_server
    async with _running(_settings(database, kafka, smtp, max_attempts=1000)) as runtime:
        await _staff(
            database, ("case@05a.nhs.uk", "05A", Role.CASE_MANAGER), ("lead@05a.nhs.uk", "05A", Role.CLINICAL_LEAD)
        )
        ids = [
            await _send(kafka, "ReviewOverdue", escalation_level=2),
            await _send(kafka, "ReviewDueSoon"),
        ]

        async def retried_while_down() -> bool:
            n = await _scalar(
                database,
                "SELECT count(*) FROM emails WHERE status = 'pending' AND attempts >= 2 AND last_error IS NOT NULL",
            )
            return bool(n == 3)

        assert await eventually(retried_while_down, timeout=60)
        assert smtp.messages() == []
        smtp.start()
        assert await eventually(lambda: _all_handled_and_settled(database, ids), timeout=60)
        ids_delivered = [m["Message-ID"] for m in smtp.messages()]
        assert len(ids_delivered) == len(set(ids_delivered)) == 3
        assert await _scalar(database, "SELECT count(*) FROM emails WHERE status = 'sent'") == 3
        assert await _scalar(database, "SELECT count(*) FROM outbox WHERE event_type = $1", SENT_TYPE) == 3
        await _assert_nothing_more_is_sent(runtime, database, smtp)


class _CrashAfterSending(Mailer):
    """Hands the message to the real server, then dies before the row can be marked sent."""

    def __init__(self, inner: Mailer, crashes: int = 1) -> None:
        self.inner = inner
        self.crashes = crashes

    def connect(self) -> AbstractAsyncContextManager[MailConnection]:
        return self._connect()

    @asynccontextmanager
    async def _connect(self) -> AsyncIterator[MailConnection]:
        async with self.inner.connect() as connection:
            yield _Crashing(connection, self)


class _Crashing(MailConnection):
    def __init__(self, connection: MailConnection, owner: _CrashAfterSending) -> None:
        self.connection = connection
        self.owner = owner

    async def send(self, email: OutgoingEmail, date: dt.datetime) -> None:
        await self.connection.send(email, date)
        if self.owner.crashes:
            self.owner.crashes -= 1
            raise RuntimeError("killed after the SMTP server accepted the message")


async def test_a_crash_between_send_and_mark_sent_is_recognisable_by_message_id(
    database: str, kafka: KafkaProbe, smtp_server: SmtpServer
) -> None:
    settings = _settings(database, kafka, smtp_server)
    crashing = _CrashAfterSending(SmtpMailer(smtp_config(settings)))
    async with _running(settings, mailer=crashing) as runtime:
        await _staff(database, ("case@05a.nhs.uk", "05A", Role.CASE_MANAGER))
        event_id = await _send(kafka, "ReviewDueSoon")
        assert await eventually(lambda: _all_handled_and_settled(database, [event_id]), timeout=60)
        first, second = smtp_server.messages()
        assert first["Message-ID"] == second["Message-ID"]
        assert first["Subject"] == second["Subject"]
        conn = await asyncpg.connect(database)
        try:
            row = await conn.fetchrow("SELECT status, attempts, message_id FROM emails")
            assert row is not None
            assert (row["status"], row["attempts"], row["message_id"]) == ("sent", 2, first["Message-ID"])
            assert await conn.fetchval("SELECT count(*) FROM outbox WHERE event_type = $1", SENT_TYPE) == 1
        finally:
            await conn.close()
        await _assert_nothing_more_is_sent(runtime, database, smtp_server)


async def test_failed_emails_are_kept_reported_and_can_be_queued_again(
    database: str, kafka: KafkaProbe, stopped_smtp_server: SmtpServer
) -> None:
    smtp = stopped_smtp_server
    settings = _settings(database, kafka, smtp, max_attempts=2)
    async with _running(settings) as runtime:
        await _staff(
            database,
            (
                "finance@05a.nhs.uk",
                "05A",
                Role.FINANCE_LEAD,
            ),
            ("case@05h.nhs.uk", "05H", Role.CASE_MANAGER),
        )
        event_id = await _send(kafka, "InvoiceVarianceFound")
        records = await kafka.read(kafka.topics.internal("notifications"), until=lambda r: len(r) >= 1)
        failed = parse_kafka(records[0].value, records[0].headers)
        assert failed.type == FAILED_TYPE
        assert (failed.data.attempts, failed.data.role, failed.causationid) == (2, Role.FINANCE_LEAD, event_id)

        assert runtime.pool is not None
        app = build_app("notifications", {}, routes=list(http.routes(runtime.pool, runtime.clock)))
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app),
            base_url="http://notifications",
            headers=staff_headers("05A", "case-manager"),
        ) as api:
            listed = (await api.get("/notifications/failed", params={"org": "05a"})).json()["notifications"]
            assert [(n["recipient"], n["event_type"], n["status"], n["attempts"]) for n in listed] == [
                ("finance@05a.nhs.uk", "InvoiceVarianceFound", "failed", 2)
            ]
            assert "cannot reach the SMTP server" in listed[0]["last_error"]
            theirs = await api.get("/notifications/failed", headers=staff_headers("05H", "case-manager"))
            assert theirs.json()["notifications"] == []
            assert (await api.get("/notifications/failed", params={"org": "05H"})).status_code == 403
            summary = (await api.get("/summary", headers=ops_headers())).json()
            assert (summary["sent"], summary["pending"], summary["failed"]) == (0, 0, 1)
            yesterday = (await api.get("/summary", params={"as_of": "2026-03-11"}, headers=ops_headers())).json()
            assert (yesterday["sent"], yesterday["pending"], yesterday["failed"]) == (0, 0, 0)
            people = (await api.get("/subscriptions", params={"org": "05A"})).json()["recipients"]
            assert [p["email"] for p in people] == ["finance@05a.nhs.uk"]
            assert {s["event_type"] for s in people[0]["subscriptions"]} == {
                "AmountHeld",
                "BudgetThresholdBreached",
                "InvoiceVarianceFound",
                "PatientRepatriated",
                "PlacementAwaitingAgreement",
            }
            assert (await api.get("/notifications", params={"status": "lost"})).status_code == 400

            smtp.start()
            assert await PgEmailQueue(runtime.pool, Topics(settings.kafka.topic_namespace)).requeue_failed() == 1
            assert await eventually(lambda: _all_handled_and_settled(database, [event_id]), timeout=60)
            (msg,) = smtp.messages()
            assert "INV-8Z104-5531" in msg["Subject"]
            log = (await api.get("/notifications", params={"event_type": "InvoiceVarianceFound"})).json()
            assert [n["status"] for n in log["notifications"]] == ["sent"]
            assert log["notifications"][0]["message_id"] == msg["Message-ID"]


async def test_digest_readers_get_one_email_listing_their_alerts_the_next_morning(
    database: str, kafka: KafkaProbe, smtp_server: SmtpServer
) -> None:
    clock = FixedClock(NOW)
    async with _running(_settings(database, kafka, smtp_server, digest_hour=7), clock=clock):
        await _staff(
            database,
            ("case@05a.nhs.uk", "05A", Role.CASE_MANAGER),
            ("daily@05a.nhs.uk", "05A", Role.CASE_MANAGER),
            digest=["daily@05a.nhs.uk"],
        )
        ids = [
            await _send(kafka, "ReviewDueSoon"),
            await _send(kafka, "ReviewOverdue", placement_id="PLC-D-9"),
        ]
        assert await eventually(lambda: _all_handled_and_settled(database, ids), timeout=60)
        assert sorted(to for to, _ in _deliveries(smtp_server)) == ["case@05a.nhs.uk", "case@05a.nhs.uk"]
        assert await _scalar(database, "SELECT count(*) FROM notifications WHERE digest AND status = 'pending'") == 2

        clock.set(dt.datetime(2026, 3, 13, 7, 5, tzinfo=dt.UTC))

        async def digest_delivered() -> list[EmailMessage]:
            return [m for m in smtp_server.messages() if _to(m) == "daily@05a.nhs.uk"]

        (digest,) = await eventually(digest_delivered, timeout=30)
        assert digest["Subject"] == ("Action needed by 19 Mar 2026: 2 alerts in your Homeward digest for 13 Mar 2026")
        body = digest.get_body(("plain",)).get_content()  # type: ignore[union-attr]
        assert "PLC-D-9" in body and "PLC-05A-000124" in body
        assert await eventually(
            lambda: _scalar(database, "SELECT count(*) = 2 FROM notifications WHERE digest AND status = 'sent'")
        )
        assert await _scalar(database, "SELECT count(*) FROM emails WHERE kind = 'digest'") == 1


# ------------------------------------------------------------------ alerts that are about today

REPLAY_DAY = dt.datetime(2026, 11, 22, 12, 0, tzinfo=dt.UTC)


async def test_a_replay_emails_what_is_due_digests_what_is_late_and_suppresses_history_visibly(
    database: str, kafka: KafkaProbe, smtp_server: SmtpServer
) -> None:
    """The service runs "as of" 22 November 2026 (its clock) and reads a history: an
    out-of-area placement of 2023 (first visit due by 10 Nov 2023), an overdue review found
    today, a review found overdue on 12 November (to do by 19 November) and a move home of
    1 November (to close by 15 November)."""
    clock = FixedClock(REPLAY_DAY)
    # Jobs run when the test says, so the digest is made once everything is recorded.
    settings = _settings(database, kafka, smtp_server, scheduler_interval_s=3600)
    async with _running(settings, clock=clock) as runtime:
        await _staff(
            database,
            ("case@05a.nhs.uk", "05A", Role.CASE_MANAGER),
            ("lead@05a.nhs.uk", "05A", Role.CLINICAL_LEAD),
            ("oap@05a.nhs.uk", "05A", Role.OAP_LEAD),
        )
        ids = [
            await _send(kafka, "PlacementRegistered", start_date="2023-09-15"),
            await _send(
                kafka,
                "ReviewOverdue",
                placement_id="PLC-NOW",
                due_date="2026-11-01",
                days_overdue=21,
                escalation_level=2,
            ),
            await _send(kafka, "ReviewOverdue", placement_id="PLC-LATE", due_date="2026-11-05", days_overdue=7),
            await _send(
                kafka,
                "ReviewOverdue",
                placement_id="PLC-LATE-2",
                due_date="2026-10-10",
                days_overdue=30,
                escalation_level=2,
            ),
            await _send(kafka, "PatientRepatriated", repatriated_on="2026-11-01"),
        ]
        assert await eventually(lambda: _all_handled_and_settled(database, ids), timeout=60)
        await runtime.run_jobs_once()  # the digest job, then the sender
        assert await eventually(lambda: _all_handled_and_settled(database, ids), timeout=60)
        await runtime.run_jobs_once()

        delivered = _deliveries(smtp_server)
        assert delivered == [
            ("case@05a.nhs.uk", "Action needed by 15 Nov 2026: 3 alerts in your Homeward digest for 22 Nov 2026"),
            (
                "case@05a.nhs.uk",
                "Action needed by 29 Nov 2026 (escalation level 2): CTR overdue 21 days — placement PLC-NOW at 8HA0301",
            ),
            ("lead@05a.nhs.uk", "Action needed by 16 Nov 2026: 1 alert in your Homeward digest for 22 Nov 2026"),
            (
                "lead@05a.nhs.uk",
                "Action needed by 29 Nov 2026 (escalation level 2): CTR overdue 21 days — placement PLC-NOW at 8HA0301",
            ),
        ]
        bodies = {
            _to(m): m.get_body(("plain",)).get_content()  # type: ignore[union-attr]
            for m in smtp_server.messages()
            if "digest" in str(m["Subject"])
        }
        assert all(f"placement {p} " in bodies["case@05a.nhs.uk"] for p in ("PLC-LATE", "PLC-LATE-2"))
        assert "PLC-05A-000125" in bodies["case@05a.nhs.uk"] and "PLC-NOW" not in bodies["case@05a.nhs.uk"]
        assert "PLC-LATE-2" in bodies["lead@05a.nhs.uk"] and "PLC-LATE " not in bodies["lead@05a.nhs.uk"]

        assert runtime.pool is not None
        app = build_app("notifications", {}, routes=list(http.routes(runtime.pool, runtime.clock)))
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app),
            base_url="http://notifications",
            headers=staff_headers("05A", "case-manager"),
        ) as api:
            listed = (await api.get("/notifications/suppressed", params={"org": "05A"})).json()["notifications"]
            assert [(n["recipient"], n["event_type"], n["status"], n["suppressed_reason"]) for n in listed] == [
                (
                    "oap@05a.nhs.uk",
                    "PlacementRegistered",
                    "suppressed",
                    "history: the action was due by 10 Nov 2023, 1108 days before 22 Nov 2026 (more than 14 days)",
                )
            ]
            assert (await api.get("/notifications", params={"status": "suppressed"})).json()["notifications"] == listed
            assert (await api.get("/notifications/suppressed", params={"org": "05H"})).status_code == 403
            summary = (await api.get("/summary", headers=ops_headers())).json()
            assert (summary["sent"], summary["pending"], summary["failed"], summary["suppressed"]) == (6, 0, 0, 1)
            assert summary["emails"]["sent"] == len(delivered) == 4
            assert summary["emails"]["by_kind"] == {
                "alert": {"sent": 2, "pending": 0, "failed": 0},
                "digest": {"sent": 2, "pending": 0, "failed": 0},
            }
        await _assert_nothing_more_is_sent(runtime, database, smtp_server)


# ------------------------------------------------------------------ never sent twice (as far as SMTP allows)


async def _record_one_email(database: str, kafka: KafkaProbe) -> None:
    """One pending email to case@05a, recorded as the consuming transaction records it."""
    from homeward.kit.db import migrate
    from homeward.notifications.adapters.postgres import PgNotificationsUnitOfWork
    from homeward.notifications.adapters.templates import JinjaRenderer
    from homeward.notifications.entrypoints.app import MIGRATIONS
    from homeward.notifications.handlers import record_alert
    from homeward.notifications.ports import Config
    from notifications_support import sample_event as event_of

    await migrate(database, "notifications", MIGRATIONS)
    await _staff(database, ("case@05a.nhs.uk", "05A", Role.CASE_MANAGER))
    conn = await asyncpg.connect(database)
    try:
        async with conn.transaction():
            uow = PgNotificationsUnitOfWork(
                conn, "notifications", FixedClock(NOW), topics=kafka.topics, config=Config(), renderer=JinjaRenderer()
            )
            await record_alert(event_of("ReviewDueSoon"), uow)
    finally:
        await conn.close()


class _CommitFailsOnce(PgEmailQueue):
    """The first settlement loses its database connection (the backend is terminated) after the
    SMTP server accepted the message: a real failed "sent" commit."""

    failures = 1

    @asynccontextmanager
    async def _settlement(self) -> AsyncIterator[Any]:
        if self.failures:
            self.failures -= 1
            async with self.pool.acquire() as conn, conn.transaction():
                await conn.execute("SELECT pg_terminate_backend(pg_backend_pid())")
        async with super()._settlement() as s:
            yield s


async def test_an_email_whose_sent_commit_failed_is_recorded_on_retry_and_not_sent_again(
    database: str, kafka: KafkaProbe, smtp_server: SmtpServer
) -> None:
    from homeward.kit.db import create_pool
    from homeward.notifications.sending import Sender, SendPolicy

    await _record_one_email(database, kafka)
    pool = await create_pool(database, 1, 4)
    try:
        queue = _CommitFailsOnce(pool, kafka.topics)
        mailer = SmtpMailer(smtp_config(_settings(database, kafka, smtp_server)))
        policy = SendPolicy(lease_s=60, settle_retry_s=20)
        assert await Sender(queue, mailer, policy).send_due(FixedClock(NOW)) == 1
        assert queue.failures == 0  # the failure did happen
        # Every lease over, the sender again: nothing more goes out.
        await _scalar(database, "UPDATE emails SET next_attempt_at = now() - interval '1 day'")
        assert await Sender(PgEmailQueue(pool, kafka.topics), mailer, policy).send_due(FixedClock(NOW)) == 0
    finally:
        await pool.close()
    (msg,) = smtp_server.messages()
    assert await _scalar(database, "SELECT status || '/' || attempts FROM emails") == "sent/1"
    assert await _scalar(database, "SELECT count(*) FROM outbox WHERE event_type = $1", SENT_TYPE) == 1
    assert await _scalar(database, "SELECT message_id FROM emails") == msg["Message-ID"]


class _LeaseRunsOutFirst(Mailer):
    """While this sender connects, its lease runs out and another sender claims and sends the
    email (a slow server, a paused process)."""

    def __init__(self, inner: Mailer, other: Any, database: str) -> None:
        self.inner, self.other, self.database = inner, other, database

    def connect(self) -> AbstractAsyncContextManager[MailConnection]:
        return self._connect()

    @asynccontextmanager
    async def _connect(self) -> AsyncIterator[MailConnection]:
        await _scalar(self.database, "UPDATE emails SET next_attempt_at = now() - interval '1 second'")
        assert await self.other.send_due(FixedClock(NOW)) == 1
        async with self.inner.connect() as connection:
            yield connection


async def test_an_email_claimed_by_another_sender_after_the_lease_ran_out_is_not_sent_by_both(
    database: str, kafka: KafkaProbe, smtp_server: SmtpServer
) -> None:
    from homeward.kit.db import create_pool
    from homeward.notifications.sending import Sender, SendPolicy

    await _record_one_email(database, kafka)
    pool = await create_pool(database, 1, 4)
    try:
        mailer = SmtpMailer(smtp_config(_settings(database, kafka, smtp_server)))
        policy = SendPolicy(lease_s=60)
        other = Sender(PgEmailQueue(pool, kafka.topics), mailer, policy)
        slow = Sender(PgEmailQueue(pool, kafka.topics), _LeaseRunsOutFirst(mailer, other, database), policy)
        assert await slow.send_due(FixedClock(NOW)) == 0
    finally:
        await pool.close()
    (msg,) = smtp_server.messages()
    assert await _scalar(database, "SELECT status || '/' || attempts FROM emails") == "sent/2"
    assert await _scalar(database, "SELECT count(*) FROM outbox WHERE event_type = $1", SENT_TYPE) == 1
    assert msg["Message-ID"] == await _scalar(database, "SELECT message_id FROM emails")


async def test_a_sender_that_lost_its_claim_cannot_fail_or_postpone_the_email_another_sender_holds(
    database: str, kafka: KafkaProbe
) -> None:
    from homeward.kit.db import create_pool

    await _record_one_email(database, kafka)
    pool = await create_pool(database, 1, 2)
    try:
        queue = PgEmailQueue(pool, kafka.topics)
        (old,) = await queue.claim_due(10, 60)
        await _scalar(database, "UPDATE emails SET next_attempt_at = now() - interval '1 second'")
        (new,) = await queue.claim_due(10, 60)
        assert old.claim != new.claim
        assert not await queue.renew(old.id, old.claim, 60)
        async with queue.settlement() as s:
            await s.retry_later(old.id, "late news from the first sender", 3600, old.claim)
            assert await s.mark_failed(old.id, NOW, "late news from the first sender", old.claim) == []
        assert await _scalar(database, "SELECT status || '/' || coalesce(last_error, '-') FROM emails") == "pending/-"
        assert await queue.renew(new.id, new.claim, 60)
        async with queue.settlement() as s:
            assert len(await s.mark_failed(new.id, NOW, "refused", new.claim)) == 1
        assert await _scalar(database, "SELECT status FROM emails") == "failed"
    finally:
        await pool.close()
