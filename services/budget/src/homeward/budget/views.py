"""The read API's payloads: one pydantic model per resource, read from the domain object or the
read query's row, so each field list is written once. Field names and JSON are the API's
(docs/budget.md, HTTP API): a view renames what the ledger calls otherwise (``amount`` is
``invoiced_pence`` to a reader) with ``validation_alias``."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, PlainSerializer, field_validator

from .domain.records import Invoice, InvoiceStatus
from .domain.schedule import RateSchedule
from .domain.streams import Stream, StreamKind

# As the API has always written times: Python's ISO format ("+00:00", not pydantic's "Z").
Instant = Annotated[dt.datetime, PlainSerializer(lambda v: v.isoformat(), return_type=str)]


class View(BaseModel):
    model_config = ConfigDict(from_attributes=True, frozen=True)

    def to_json(self) -> dict[str, Any]:
        return self.model_dump(mode="json")


class InvoiceView(View):
    """An invoice as finance see it: its claim, how it was matched against the accrual, its status."""

    provider: str
    invoice_id: str
    commissioner: str
    placement_id: str
    period_start: dt.date
    period_end: dt.date
    invoiced_pence: int = Field(validation_alias="amount")
    status: InvoiceStatus
    accrued_pence: int | None = Field(validation_alias="accrued")
    variance_pence: int | None = Field(validation_alias="variance")
    tolerance_pence: int | None = Field(validation_alias="tolerance")
    flagged: bool
    reason: str | None
    confirmed_by: str | None

    @classmethod
    def of(cls, invoice: Invoice) -> InvoiceView:
        return cls.model_validate(invoice)


class TransferView(View):
    """One transfer of a placement's ledger, in posting order, with its accounts' labels."""

    id: str
    seq: int
    kind: str
    purpose: str
    amount_pence: int = Field(validation_alias="amount")
    debit: str
    credit: str
    funder: str | None
    financial_year: str | None
    nights_from: dt.date | None = Field(validation_alias="range_start")
    nights_to: dt.date | None = Field(validation_alias="range_end")
    pending_id: str | None
    effective_on: dt.date
    event_at: Instant
    created_at: Instant
    cause: str
    asserted_by: str | None
    principal: str | None
    stream: str | None = Field(validation_alias="stream_id")


class RateView(View):
    effective_date: dt.date
    daily_rate_pence: int


class FundingView(View):
    commissioner: str = Field(validation_alias="funder")
    share_bp: int = Field(validation_alias="basis_points")


class StreamView(View):
    """A placement's stream (what it costs) or its repatriation saving: terms, rate history,
    funding, and how far it has been accrued and committed."""

    stream: str = Field(validation_alias="id")
    kind: StreamKind
    commissioner: str
    programme: str
    provider: str | None
    out_of_area: bool
    start_date: dt.date = Field(validation_alias="start")
    planned_end_date: dt.date | None = Field(validation_alias="planned_end")
    end_date: dt.date | None = Field(validation_alias="end")
    rates: list[RateView] = Field(validation_alias="schedule")
    funding: list[FundingView] = Field(validation_alias="shares")
    accrued_through: dt.date
    committed_through: dt.date
    details: dict[str, Any]

    @field_validator("provider", mode="before")
    @classmethod
    def _no_provider(cls, v: Any) -> Any:
        return v or None  # a saving has none ("")

    @field_validator("rates", mode="before")
    @classmethod
    def _rates(cls, v: Any) -> Any:
        if isinstance(v, RateSchedule):
            return [RateView(effective_date=day, daily_rate_pence=rate) for day, rate in v.rates]
        return v

    @classmethod
    def of(cls, stream: Stream) -> StreamView:
        return cls.model_validate(stream)
