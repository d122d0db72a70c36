"""Email content: every alert renders from its templates into a plain-text and an HTML part,
says what is needed and by when, carries the facts that matter, and never a person's identity."""

from __future__ import annotations

import datetime as dt
import email
import email.policy
from email.message import EmailMessage

import pytest
from homeward.kit.logging import NHS_NUMBER_LIKE
from homeward.notifications.adapters.templates import JinjaRenderer, build_message, environment
from homeward.notifications.domain.alerts import EVENT_NAMES, Alert, alert_from
from homeward.notifications.domain.digest import DigestItem
from homeward.notifications.domain.model import message_id
from homeward.notifications.ports import OutgoingEmail, RenderedEmail
from notifications_support import PERSONAL_STRINGS, sample_event

RENDERER = JinjaRenderer()

# What each email must mention: the reference, the site, the dates, the days and the money.
EXPECTED: dict[str, tuple[str, ...]] = {
    "ReviewOverdue": ("PLC-05A-000123", "8HA0301", "19 Feb 2026", "21 days overdue", "19 Aug 2025"),
    "ReviewDueSoon": ("PLC-05A-000124", "8HA0301", "26 Mar 2026", "in 14 days", "oversight visit"),
    "PlacementRegistered": ("PLC-05A-000125", "8Z10401", "2 Mar 2026", "£545.00", "143 km", "no local bed"),
    "PatientRepatriated": ("PLC-05A-000125", "PLC-05A-000190", "RYG01", "9 Mar 2026", "£620.00", "£480.50", "£139.50"),
    "LocalCapacityUnavailable": ("REF-05A-000078", "PLC-05A-000126", "8Z10401", "10 Mar 2026", "30 hours"),
    "ReferralWaitBreached": ("REF-05A-000079", "30 hours", "10 Mar 2026 08:30", "24"),
    "BudgetThresholdBreached": ("2025-26", "£12,345,678.91", "£12,000,000.00", "102.9%", "95%"),
    "InvoiceVarianceFound": ("INV-8Z104-5531", "PLC-05A-000125", "£17,360.00", "£15,260.00", "£2,100.00"),
    "PlacementAwaitingAgreement": ("PLC-8Z104-000777", "8Z10401", "2 Mar 2026", "£545.00", "awaiting commissioner"),
    "AmountHeld": ("INV-8Z104-5532", "PLC-05A-000125", "£54,500.00", "£100.00 to £3,000.00", "£1,526,000.00"),
}
SUBJECT_BY: dict[str, str] = {
    "ReviewOverdue": "Action needed by 19 Mar 2026: CTR overdue 21 days — placement PLC-05A-000123 at 8HA0301",
    "ReviewDueSoon": "Action needed by 26 Mar 2026: Oversight visit due in 14 days",
    "PlacementRegistered": "Action needed by 27 Apr 2026: first oversight visit",
    "PatientRepatriated": "Action needed by 23 Mar 2026: close out-of-area placement PLC-05A-000125",
    "LocalCapacityUnavailable": "Action needed by 17 Mar 2026: plan a return for placement PLC-05A-000126",
    "ReferralWaitBreached": "Action needed by 11 Mar 2026: find an adult acute bed",
    "BudgetThresholdBreached": "Action needed by 26 Mar 2026: review the 2025-26 forecast",
    "InvoiceVarianceFound": "Action needed by 26 Mar 2026: check invoice INV-8Z104-5531",
    "PlacementAwaitingAgreement": "Action needed by 14 Mar 2026: agree or query placement PLC-8Z104-000777",
    "AmountHeld": "Action needed by 17 Mar 2026: confirm or query invoice INV-8Z104-5532",
}


def _mime(alert: Alert, rendered: RenderedEmail) -> EmailMessage:
    outgoing = OutgoingEmail(
        id="e1",
        message_id=message_id("e1"),
        kind="alert",
        recipient_id=1,
        to_address="case.manager@05a.nhs.invalid",
        to_name="Case Manager",
        subject=rendered.subject,
        body_text=rendered.text,
        body_html=rendered.html,
        created_at=dt.datetime(2026, 3, 12, tzinfo=dt.UTC),
    )
    wire = build_message(outgoing, mail_from="Homeward <alerts@homeward.invalid>", date=outgoing.created_at)
    return email.message_from_bytes(wire.as_bytes(), policy=email.policy.default)  # type: ignore[return-value]


def _parts(msg: EmailMessage) -> tuple[str, str]:
    text = msg.get_body(preferencelist=("plain",))
    html = msg.get_body(preferencelist=("html",))
    assert text is not None and html is not None
    return _flat(text.get_content()), _flat(html.get_content())


def _flat(text: str) -> str:
    """Text with line wrapping undone, so a phrase split over two lines still matches."""
    return " ".join(text.split())


def test_every_handled_event_type_has_both_templates() -> None:
    names = set(environment().list_templates())
    for name in EVENT_NAMES:
        assert {f"{name}.txt.j2", f"{name}.html.j2"} <= names
    assert set(EXPECTED) == set(EVENT_NAMES)


@pytest.mark.parametrize("name", EVENT_NAMES)
def test_alert_email_has_both_parts_says_what_and_by_when_and_carries_the_facts(name: str) -> None:
    alert = alert_from(sample_event(name))
    assert alert is not None
    msg = _mime(alert, RENDERER.alert(alert))
    assert msg.get_content_type() == "multipart/alternative"
    assert [p.get_content_type() for p in msg.iter_parts()] == ["text/plain", "text/html"]
    assert msg["Subject"].startswith(SUBJECT_BY[name])
    text, html = _parts(msg)
    for expected in EXPECTED[name]:
        assert expected in text, expected
        assert expected in html.replace("&amp;", "&"), expected
    assert alert.values["due_by"] in text


@pytest.mark.parametrize("name", EVENT_NAMES)
def test_no_template_reveals_who_the_person_is_even_when_upstream_data_did(name: str) -> None:
    alert = alert_from(sample_event(name))
    assert alert is not None
    msg = _mime(alert, RENDERER.alert(alert))
    text, html = _parts(msg)
    for part in (msg["Subject"], text, html, msg.as_string()):
        for personal in PERSONAL_STRINGS:
            assert personal not in part
        assert NHS_NUMBER_LIKE.search(part) is None


@pytest.mark.parametrize("name", ["ReviewOverdue", "LocalCapacityUnavailable", "InvoiceVarianceFound"])
def test_an_nhs_number_hidden_in_a_reference_is_redacted(name: str) -> None:
    field = {"ReviewOverdue": "placement_id", "LocalCapacityUnavailable": "referral_id"}.get(name, "invoice_id")
    alert = alert_from(sample_event(name, **{field: "PLC-9434765919"}))
    assert alert is not None
    rendered = RENDERER.alert(alert)
    for part in (rendered.subject, rendered.text, rendered.html):
        assert "9434765919" not in part
        assert NHS_NUMBER_LIKE.search(part) is None


def test_escalated_overdue_review_says_so_in_subject_and_body() -> None:
    alert = alert_from(sample_event("ReviewOverdue", escalation_level=3, days_overdue=42))
    assert alert is not None
    rendered = RENDERER.alert(alert)
    assert rendered.subject.startswith("Action needed by 9 Apr 2026 (escalation level 3): CTR overdue 42 days")
    assert "escalated (level 3)" in _flat(rendered.text)
    assert "escalation level 3" in rendered.html


def test_in_area_placement_raises_no_alert() -> None:
    assert alert_from(sample_event("PlacementRegistered", out_of_area=False, inappropriate=False)) is None


def test_html_part_escapes_markup_and_text_part_keeps_it_verbatim() -> None:
    alert = alert_from(sample_event("ReviewDueSoon"))
    assert alert is not None
    tricky = Alert(**{**vars(alert), "headline": "<script>alert(1)</script> & more"})
    rendered = RENDERER.alert(tricky)
    assert "<script>" not in rendered.html
    assert "&lt;script&gt;" in rendered.html
    assert "<script>alert(1)</script> & more" in rendered.text


def test_digest_lists_every_alert_with_its_facts_in_both_parts() -> None:
    alerts = [alert_from(sample_event(n)) for n in ("ReviewOverdue", "BudgetThresholdBreached")]
    items = [DigestItem(a.subject, a.due_by, a.facts) for a in alerts if a is not None]
    rendered = RENDERER.digest(dt.date(2026, 3, 13), items)
    assert rendered.subject == "Action needed by 19 Mar 2026: 2 alerts in your Homeward digest for 13 Mar 2026"
    for a in alerts:
        assert a is not None
        assert a.subject in rendered.text
        assert a.subject in rendered.html
    assert "£12,345,678.91" in rendered.text and "PLC-05A-000123" in rendered.html
    for personal in PERSONAL_STRINGS:
        assert personal not in rendered.text + rendered.html
