"""The read API's payloads keep their field names and JSON (docs/budget.md, HTTP API) now that
each is one pydantic model read from the domain object."""

from __future__ import annotations

import datetime as dt

from homeward.budget.domain.money import Share
from homeward.budget.domain.records import Invoice, InvoiceStatus
from homeward.budget.domain.schedule import RateSchedule
from homeward.budget.domain.streams import Stream, StreamKind
from homeward.budget.views import InvoiceView, StreamView, TransferView

D = dt.date


def test_a_saving_stream_reads_as_the_ledger_history_has_always_shown_it() -> None:
    saving = Stream(
        id="saving:P0",
        kind=StreamKind.SAVING,
        placement_id="P0",
        commissioner="05A",
        programme="mental_health",
        provider="",
        out_of_area=False,
        schedule=RateSchedule(((D(2026, 4, 1), 27_000), (D(2026, 6, 1), 25_000))),
        shares=(Share("05A", 6_000), Share("05H", 4_000)),
        end=D(2027, 4, 1),
        details={"to_site": "RYG01"},
    )
    assert StreamView.of(saving).to_json() == {
        "stream": "saving:P0",
        "kind": "saving",
        "commissioner": "05A",
        "programme": "mental_health",
        "provider": None,
        "out_of_area": False,
        "start_date": "2026-04-01",
        "planned_end_date": None,
        "end_date": "2027-04-01",
        "rates": [
            {"effective_date": "2026-04-01", "daily_rate_pence": 27_000},
            {"effective_date": "2026-06-01", "daily_rate_pence": 25_000},
        ],
        "funding": [{"commissioner": "05A", "share_bp": 6_000}, {"commissioner": "05H", "share_bp": 4_000}],
        "accrued_through": "2026-04-01",
        "committed_through": "2026-04-01",
        "details": {"to_site": "RYG01"},
    }


def test_an_invoice_and_a_transfer_keep_the_apis_names_for_the_ledgers_fields() -> None:
    held = Invoice("8Z001", "INV-1", "05A", "P1", D(2026, 4, 1), D(2026, 4, 30), 99_000, "evt-1")
    view = InvoiceView.of(held).to_json()
    assert (view["invoiced_pence"], view["status"], view["accrued_pence"]) == (99_000, InvoiceStatus.PARKED.value, None)
    assert list(view) == [
        "provider",
        "invoice_id",
        "commissioner",
        "placement_id",
        "period_start",
        "period_end",
        "invoiced_pence",
        "status",
        "accrued_pence",
        "variance_pence",
        "tolerance_pence",
        "flagged",
        "reason",
        "confirmed_by",
    ]
    at = dt.datetime(2026, 4, 2, 9, tzinfo=dt.UTC)
    row = {
        "id": "7",
        "seq": 3,
        "kind": "posted",
        "purpose": "accrual",
        "amount": 500,
        "debit": "budget:05A:2026-27:mental_health:budget",
        "credit": "budget:05A:2026-27:mental_health:source",
        "funder": "05A",
        "financial_year": "2026-27",
        "range_start": D(2026, 4, 1),
        "range_end": D(2026, 4, 1),
        "pending_id": None,
        "effective_on": D(2026, 4, 2),
        "event_at": at,
        "created_at": at,
        "cause": "evt-1",
        "asserted_by": "05A",
        "principal": "User:05A",
        "stream_id": "placement:P1",
    }
    transfer = TransferView.model_validate(row).to_json()
    assert (transfer["amount_pence"], transfer["nights_from"]) == (500, "2026-04-01")
    assert transfer["stream"] == "placement:P1"
    assert transfer["event_at"] == "2026-04-02T09:00:00+00:00"  # as the API has always written times
