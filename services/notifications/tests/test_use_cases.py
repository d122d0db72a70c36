"""The use cases over in-memory fakes: recording alerts, sending, retrying, digests, managing recipients."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from homeward.contracts.events import NotificationFailed, NotificationSent
from homeward.contracts.vocab import Role
from homeward.kit.clock import FixedClock
from homeward.notifications import management
from homeward.notifications.adapters.templates import JinjaRenderer
from homeward.notifications.domain.recipients import InvalidInput, RecipientSpec
from homeward.notifications.handlers import HANDLERS
from homeward.notifications.sending import DigestMaker, Sender, SendPolicy
from notifications_support import FakeMailer, FakeUnitOfWork, InMemoryStore, sample_event

NOW = dt.datetime(2026, 3, 12, 12, 0, tzinfo=dt.UTC)
POLICY = SendPolicy(max_attempts=3, backoff_base_s=10, backoff_max_s=100, lease_s=60, batch_size=10)


async def _people(store: InMemoryStore, *specs: tuple[str, str, Role, bool]) -> None:
    for email, org, role, digest in specs:
        await management.add_recipient(store, RecipientSpec(email, org, role, digest=digest))


async def _handle(store: InMemoryStore, event: Any, clock: FixedClock | None = None) -> None:
    await HANDLERS[type(event.data)](event, FakeUnitOfWork(store, clock or FixedClock(NOW)))


def _sent_events(store: InMemoryStore) -> list[NotificationSent]:
    return [p for _, p in store.published if isinstance(p, NotificationSent)]


@pytest.fixture
async def staffed(store: InMemoryStore) -> InMemoryStore:
    await _people(
        store,
        ("case@05a.nhs.uk", "05A", Role.CASE_MANAGER, False),
        ("lead@05a.nhs.uk", "05A", Role.CLINICAL_LEAD, False),
        ("case@05h.nhs.uk", "05H", Role.CASE_MANAGER, False),
        ("digest@05a.nhs.uk", "05A", Role.CASE_MANAGER, True),
    )
    return store


async def test_an_alert_is_recorded_once_per_matching_recipient_and_sent_by_the_sender(
    staffed: InMemoryStore, mailer: FakeMailer
) -> None:
    await _handle(staffed, sample_event("ReviewOverdue", escalation_level=2))
    assert sorted(staffed.statuses()) == [
        "case@05a.nhs.uk/ReviewOverdue",
        "digest@05a.nhs.uk/ReviewOverdue",
        "lead@05a.nhs.uk/ReviewOverdue",
    ]
    assert mailer.delivered == []  # the handler only records

    sent = await Sender(staffed, mailer, POLICY).send_due(FixedClock(NOW))
    assert sent == 2
    assert sorted(m["To"].addresses[0].addr_spec for m in mailer.delivered) == ["case@05a.nhs.uk", "lead@05a.nhs.uk"]
    assert staffed.statuses()["digest@05a.nhs.uk/ReviewOverdue"] == "pending"
    events = _sent_events(staffed)
    assert sorted(e.role for e in events) == [Role.CASE_MANAGER, Role.CLINICAL_LEAD]
    assert {e.message_id for e in events} == {m["Message-ID"] for m in mailer.delivered}
    assert await Sender(staffed, mailer, POLICY).send_due(FixedClock(NOW)) == 0


async def test_a_duplicate_event_records_and_sends_nothing_twice(staffed: InMemoryStore, mailer: FakeMailer) -> None:
    event = sample_event("ReviewDueSoon", id="same-event")
    await _handle(staffed, event)
    await _handle(staffed, event)
    assert len(staffed.notifications) == 2  # case manager now, digest reader later
    await Sender(staffed, mailer, POLICY).send_due(FixedClock(NOW))
    assert len(mailer.delivered) == 1


async def test_a_refused_email_is_retried_with_backoff_then_failed_and_kept(
    staffed: InMemoryStore, mailer: FakeMailer
) -> None:
    mailer.refuse = lambda e: e.to_address == "lead@05a.nhs.uk"
    await _handle(staffed, sample_event("ReviewOverdue", escalation_level=2))
    sender = Sender(staffed, mailer, POLICY)
    await sender.send_due(FixedClock(NOW))
    lead = next(e for e in staffed.emails.values() if e.email.to_address == "lead@05a.nhs.uk")
    assert (lead.status, lead.attempts, lead.due) == ("pending", 1, 10)
    assert await sender.send_due(FixedClock(NOW)) == 0  # not due until the backoff has passed
    staffed.now = 10
    await sender.send_due(FixedClock(NOW))
    assert (lead.attempts, lead.due) == (2, 30)
    staffed.now = 30
    await sender.send_due(FixedClock(NOW))
    assert lead.status == "failed" and lead.attempts == 3 and "550" in (lead.last_error or "")
    failed = [p for _, p in staffed.published if isinstance(p, NotificationFailed)]
    assert [(f.role, f.attempts) for f in failed] == [(Role.CLINICAL_LEAD, 3)]
    assert len(_sent_events(staffed)) == 1  # the case manager's


async def test_while_the_server_is_down_nothing_is_lost_and_afterwards_each_goes_once(
    staffed: InMemoryStore, mailer: FakeMailer
) -> None:
    mailer.down = True
    for level in (1, 2):
        await _handle(staffed, sample_event("ReviewOverdue", escalation_level=level, days_overdue=20 + level))
    sender = Sender(staffed, mailer, SendPolicy(max_attempts=50, backoff_base_s=1, backoff_max_s=1, lease_s=60))
    for tick in range(3):
        staffed.now = tick * 5
        assert await sender.send_due(FixedClock(NOW)) == 0
    assert all(e.status == "pending" and e.attempts == 3 for e in staffed.emails.values())
    mailer.down = False
    staffed.now = 100
    assert await sender.send_due(FixedClock(NOW)) == 3
    ids = [m["Message-ID"] for m in mailer.delivered]
    assert len(ids) == len(set(ids)) == 3


async def test_a_crash_after_sending_resends_with_the_same_message_id_once_the_lease_ends(
    staffed: InMemoryStore, mailer: FakeMailer
) -> None:
    await _handle(staffed, sample_event("ReviewDueSoon"))
    mailer.crash_after_send = 1
    sender = Sender(staffed, mailer, POLICY)
    with pytest.raises(RuntimeError):
        await sender.send_due(FixedClock(NOW))
    (email,) = staffed.emails.values()
    assert (email.status, email.attempts) == ("pending", 1)
    assert await sender.send_due(FixedClock(NOW)) == 0  # still leased
    staffed.now = POLICY.lease_s
    assert await sender.send_due(FixedClock(NOW)) == 1
    first, second = mailer.delivered
    assert first["Message-ID"] == second["Message-ID"] == email.email.message_id
    assert (email.status, email.attempts) == ("sent", 2)
    assert len(_sent_events(staffed)) == 1


async def test_digest_readers_get_one_email_a_day_listing_their_alerts(
    staffed: InMemoryStore, mailer: FakeMailer
) -> None:
    yesterday = FixedClock(dt.datetime(2026, 3, 11, 15, 0, tzinfo=dt.UTC))
    await _handle(staffed, sample_event("ReviewOverdue"), yesterday)
    await _handle(staffed, sample_event("ReviewDueSoon"), yesterday)
    digests = DigestMaker(staffed, JinjaRenderer(), hour=7)
    early = FixedClock(dt.datetime(2026, 3, 12, 6, 30, tzinfo=dt.UTC))
    assert await digests.make_due(early) == 0  # before 07:00: yesterday's digest had nothing to hold
    morning = FixedClock(dt.datetime(2026, 3, 12, 7, 30, tzinfo=dt.UTC))
    assert await digests.make_due(morning) == 1
    assert await digests.make_due(morning) == 0  # one digest a day
    await Sender(staffed, mailer, POLICY).send_due(morning)
    digest = [m for m in mailer.delivered if m["To"].addresses[0].addr_spec == "digest@05a.nhs.uk"]
    assert len(digest) == 1
    assert digest[0]["Subject"].endswith("2 alerts in your Homeward digest for 12 Mar 2026")
    body = digest[0].get_body(preferencelist=("plain",)).get_content()  # type: ignore[union-attr]
    assert "PLC-05A-000123" in body and "PLC-05A-000124" in body
    digest_sent = [e for e in _sent_events(staffed) if e.message_id == digest[0]["Message-ID"]]
    assert len(digest_sent) == 2
    assert all(s == "sent" for s in staffed.statuses().values())


async def test_import_keeps_valid_rows_reports_bad_ones_by_line_and_is_repeatable(store: InMemoryStore) -> None:
    rows: list[tuple[int, Any]] = [
        (2, {"email": "case@05a.nhs.uk", "org": "05A", "role": "case_manager", "name": "Case Manager"}),
        (3, {"email": "bad address", "org": "05A", "role": "case_manager"}),
        (4, {"email": "lead@05a.nhs.uk", "org": "05A", "role": "clinical lead"}),
        (5, "not a mapping"),
        (6, {"email": "x@05a.nhs.uk", "org": "05A", "role": "chief"}),
    ]
    report = await management.import_recipients(store, rows)
    assert (report.added, report.updated) == (2, 0)
    assert [line for line, _ in report.errors] == [3, 5, 6]
    assert "role" in report.errors[2][1]
    subs = {(r.email, s.event_type, s.min_escalation_level) for r, s in await store.subscriptions()}
    assert subs == {
        ("case@05a.nhs.uk", "ReviewOverdue", 1),
        ("case@05a.nhs.uk", "ReviewDueSoon", 1),
        ("lead@05a.nhs.uk", "ReviewOverdue", 2),
    }
    again = await management.import_recipients(store, rows[:1])
    assert (again.added, again.updated, again.subscriptions) == (0, 1, 0)


async def test_opting_out_keeps_the_subscription_and_opting_in_restores_it(store: InMemoryStore) -> None:
    await _people(store, ("case@05a.nhs.uk", "05A", Role.CASE_MANAGER, False))
    await management.opt_out(store, "Case@05A.nhs.uk", "homeward.ReviewOverdue.v1", NOW)
    (sub,) = [s for _, s in await store.subscriptions() if s.event_type == "ReviewOverdue"]
    assert sub.opted_out_at == NOW
    await management.opt_in(store, "case@05a.nhs.uk", "ReviewOverdue")
    (sub,) = [s for _, s in await store.subscriptions() if s.event_type == "ReviewOverdue"]
    assert sub.opted_out_at is None
    with pytest.raises(management.UnknownRecipient):
        await management.opt_out(store, "case@05a.nhs.uk", "BudgetThresholdBreached", NOW)
    with pytest.raises(InvalidInput):
        await management.opt_out(store, "case@05a.nhs.uk", "NoSuchEvent", NOW)


# ------------------------------------------------------------------ alerts that are about today


async def test_an_alert_about_history_is_recorded_as_suppressed_with_its_reason_and_never_sent(
    staffed: InMemoryStore, mailer: FakeMailer
) -> None:
    # Replayed as of 22 November 2026: a CTR due on 1 Feb 2025, found overdue on 2 Feb 2025.
    today = FixedClock(dt.datetime(2026, 11, 22, 12, 0, tzinfo=dt.UTC))
    await _handle(staffed, sample_event("ReviewOverdue", due_date="2025-02-01", days_overdue=1), today)
    assert set(staffed.statuses().values()) == {"suppressed"}
    reasons = {n.record.suppressed_reason for n in staffed.notifications.values()}
    assert reasons == {"history: the action was due by 9 Feb 2025, 651 days before 22 Nov 2026 (more than 14 days)"}
    assert staffed.emails == {}
    assert await Sender(staffed, mailer, POLICY).send_due(today) == 0
    assert await DigestMaker(staffed, JinjaRenderer(), hour=7).make_due(today) == 0
    assert mailer.delivered == []


async def test_a_late_alert_goes_into_the_same_days_digest_for_everyone_and_a_current_one_by_email(
    staffed: InMemoryStore, mailer: FakeMailer
) -> None:
    today = FixedClock(dt.datetime(2026, 3, 20, 12, 0, tzinfo=dt.UTC))
    # Found overdue on 12 March, to be done by 19 March: one day late on the 20th.
    await _handle(staffed, sample_event("ReviewOverdue"), today)
    # Due on 26 March: current.
    await _handle(staffed, sample_event("ReviewDueSoon"), today)
    assert len(staffed.emails) == 1  # the case manager's ReviewDueSoon; the digest reader waits
    assert await DigestMaker(staffed, JinjaRenderer(), hour=7).make_due(today) == 2  # case@05a and digest@05a
    await Sender(staffed, mailer, POLICY).send_due(today)
    got = sorted((m["To"].addresses[0].addr_spec, m["Subject"]) for m in mailer.delivered)
    assert [to for to, _ in got] == ["case@05a.nhs.uk", "case@05a.nhs.uk", "digest@05a.nhs.uk"]
    digests = [s for _, s in got if "digest" in s]
    assert digests == ["Action needed by 19 Mar 2026: 1 alert in your Homeward digest for 20 Mar 2026"] * 2
    # The digest reader's current alert, recorded after 07:00, waits for the next morning's digest.
    assert staffed.statuses()["digest@05a.nhs.uk/ReviewDueSoon"] == "pending"
    tomorrow = FixedClock(dt.datetime(2026, 3, 21, 7, 0, tzinfo=dt.UTC))
    assert await DigestMaker(staffed, JinjaRenderer(), hour=7).make_due(tomorrow) == 1
    await Sender(staffed, mailer, POLICY).send_due(tomorrow)
    assert set(staffed.statuses().values()) == {"sent"}
    assert len(mailer.delivered) == 4
