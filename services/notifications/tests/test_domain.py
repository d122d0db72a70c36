"""Pure rules: routing, validation of recipients, digest timing, money, backoff."""

from __future__ import annotations

import datetime as dt

import pytest
from homeward.contracts.vocab import Role
from homeward.notifications.domain.alerts import alert_from
from homeward.notifications.domain.digest import current_window
from homeward.notifications.domain.formatting import UK, money
from homeward.notifications.domain.model import (
    Candidate,
    Recipient,
    Subscription,
    message_id,
    notification_id,
    retry_delay_s,
    route,
)
from homeward.notifications.domain.recipients import InvalidInput, normalise_email, parse_event_type, recipient_from
from notifications_support import sample_event

CASE = Recipient(1, "case@05a.nhs.uk", "05A", Role.CASE_MANAGER)
LEAD = Recipient(2, "lead@05a.nhs.uk", "05A", Role.CLINICAL_LEAD)
OTHER = Recipient(3, "case@05h.nhs.uk", "05H", Role.CASE_MANAGER)
PROVIDER = Recipient(4, "ward@8ha03.nhs.uk", "8HA03", Role.CASE_MANAGER)


def _candidates(*pairs: tuple[Recipient, Subscription]) -> list[Candidate]:
    return [Candidate(r, s) for r, s in pairs]


def _overdue(level: int) -> object:
    alert = alert_from(sample_event("ReviewOverdue", escalation_level=level))
    assert alert is not None
    return alert


@pytest.mark.parametrize(("level", "expected"), [(1, [CASE]), (2, [CASE, LEAD]), (5, [CASE, LEAD])])
def test_overdue_review_escalates_to_clinical_leads_from_level_two(level: int, expected: list[Recipient]) -> None:
    candidates = _candidates(
        (CASE, Subscription(1, "ReviewOverdue", 1, None)),
        (LEAD, Subscription(2, "ReviewOverdue", 2, None)),
    )
    assert route(_overdue(level), candidates) == expected  # type: ignore[arg-type]


def test_a_level_range_with_an_upper_bound_stops_at_it() -> None:
    candidates = _candidates((CASE, Subscription(1, "ReviewOverdue", 1, 2)))
    assert route(_overdue(2), candidates) == [CASE]  # type: ignore[arg-type]
    assert route(_overdue(3), candidates) == []  # type: ignore[arg-type]


def test_opted_out_inactive_and_other_organisations_hear_nothing() -> None:
    opted_out = Subscription(1, "ReviewOverdue", opted_out_at=dt.datetime(2026, 3, 1, tzinfo=dt.UTC))
    inactive = Recipient(5, "gone@05a.nhs.uk", "05A", Role.CASE_MANAGER, active=False)
    candidates = _candidates(
        (CASE, opted_out),
        (inactive, Subscription(5, "ReviewOverdue")),
        (OTHER, Subscription(3, "ReviewOverdue")),
        (LEAD, Subscription(2, "ReviewDueSoon")),
    )
    assert route(_overdue(1), candidates) == []  # type: ignore[arg-type]


def test_the_provider_named_in_an_alert_is_one_of_its_organisations() -> None:
    candidates = _candidates((PROVIDER, Subscription(4, "ReviewOverdue")))
    assert route(_overdue(1), candidates) == [PROVIDER]  # type: ignore[arg-type]


def test_a_recipient_matched_twice_is_chosen_once() -> None:
    sub = Subscription(1, "ReviewOverdue")
    assert route(_overdue(1), _candidates((CASE, sub), (CASE, sub))) == [CASE]  # type: ignore[arg-type]


def test_co_funding_commissioners_hear_about_a_pooled_placement() -> None:
    pooled = [{"commissioner": "05A", "share_bp": 6000}, {"commissioner": "05H", "share_bp": 4000}]
    alert = alert_from(sample_event("PlacementRegistered", funding=pooled))
    assert alert is not None
    oap = Recipient(6, "oap@05h.nhs.uk", "05H", Role.OAP_LEAD)
    assert route(alert, _candidates((oap, Subscription(6, "PlacementRegistered")))) == [oap]
    assert "05A 60%, 05H 40%" in dict(alert.facts)["Funding"]


def test_message_id_is_stable_per_event_and_recipient() -> None:
    first = message_id(notification_id("event-1", 7))
    assert first == message_id(notification_id("event-1", 7))
    assert first != message_id(notification_id("event-1", 8))
    assert first != message_id(notification_id("event-2", 7))
    assert first.startswith("<") and first.endswith("@homeward>")


@pytest.mark.parametrize(
    ("pence", "text"),
    [(0, "£0.00"), (5, "£0.05"), (54500, "£545.00"), (123456, "£1,234.56"), (-210000, "-£2,100.00")],
)
def test_money_reads_in_pounds_from_integer_pence(pence: int, text: str) -> None:
    assert money(pence) == text


def test_backoff_doubles_up_to_its_ceiling() -> None:
    assert [retry_delay_s(n, 60, 600) for n in range(1, 6)] == [60, 120, 240, 480, 600]


def test_todays_digest_is_due_from_the_digest_hour_uk_time() -> None:
    before = dt.datetime(2026, 7, 1, 5, 59, tzinfo=dt.UTC)  # 06:59 BST
    after = dt.datetime(2026, 7, 1, 6, 0, tzinfo=dt.UTC)  # 07:00 BST
    assert current_window(before, 7).date == dt.date(2026, 6, 30)
    window = current_window(after, 7)
    assert window.date == dt.date(2026, 7, 1)
    assert window.cutoff == dt.datetime(2026, 7, 1, 7, 0, tzinfo=UK)


def test_recipient_rows_are_validated_field_by_field() -> None:
    spec = recipient_from({"email": " Case.Manager@05A.NHS.uk ", "org": "05a", "role": "Case Manager", "digest": "yes"})
    assert (spec.email, spec.organisation, spec.role, spec.digest) == (
        "case.manager@05a.nhs.uk",
        "05A",
        Role.CASE_MANAGER,
        True,
    )
    with pytest.raises(InvalidInput) as caught:
        recipient_from({"email": "not-an-address", "org": "toolongcode", "role": "boss", "digest": "perhaps"})
    fields = [p.split(":")[0] for p in caught.value.problems]
    assert fields == ["email", "org", "role", "digest"]


def test_reserved_demo_domains_are_accepted_only_when_allowed() -> None:
    assert normalise_email("a.b@05a.nhs.invalid", ["invalid"]) == "a.b@05a.nhs.invalid"
    with pytest.raises(InvalidInput):
        normalise_email("a.b@05a.nhs.invalid", [])
    with pytest.raises(InvalidInput):
        normalise_email("a b@05a.nhs.invalid", ["invalid"])


def test_event_types_are_named_or_given_as_cloudevents_types() -> None:
    assert parse_event_type("homeward.ReviewOverdue.v1") == "ReviewOverdue"
    assert parse_event_type("ReviewDueSoon") == "ReviewDueSoon"
    with pytest.raises(InvalidInput):
        parse_event_type("PlacementMade")


# ------------------------------------------------------------------ timeliness: alerts about today


def test_an_action_due_today_or_later_is_current_recently_past_is_late_and_long_past_is_history() -> None:
    from homeward.notifications.domain.timeliness import Timeliness

    today = dt.date(2026, 11, 22)
    rule = Timeliness(history_after_days=14)
    assert rule.judge(dt.date(2026, 11, 29), today).kind == "current"
    assert rule.judge(today, today).kind == "current"
    assert rule.judge(dt.date(2026, 11, 21), today).kind == "late"
    assert rule.judge(dt.date(2026, 11, 8), today).kind == "late"  # 14 days: not yet history
    old = rule.judge(dt.date(2026, 11, 7), today)
    assert old.kind == "history"
    assert old.reason == "history: the action was due by 7 Nov 2026, 15 days before 22 Nov 2026 (more than 14 days)"
    assert rule.judge(dt.date(2023, 11, 10), today).kind == "history"
    # The threshold is a setting: 0 makes everything before today history.
    assert Timeliness(history_after_days=0).judge(dt.date(2026, 11, 21), today).kind == "history"
    assert Timeliness(history_after_days=0).judge(today, today).kind == "current"


def test_todays_digest_also_takes_late_alerts_recorded_until_it_is_made_and_a_past_days_does_not() -> None:
    noon = dt.datetime(2026, 11, 22, 12, 0, tzinfo=dt.UTC)
    assert current_window(noon, 7).late_until == noon
    early = dt.datetime(2026, 11, 22, 6, 0, tzinfo=dt.UTC)
    assert current_window(early, 7).date == dt.date(2026, 11, 21)
    assert current_window(early, 7).late_until is None
