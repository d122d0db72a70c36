"""What ``POST /events`` answers on success, one pydantic model each (the OpenAPI document's
``Receipt`` and ``BatchReceipt``, entrypoints/openapi.py)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict


class Receipt(BaseModel):
    """One event's outcome: accepted now, or a resend of one accepted before (duplicate)."""

    model_config = ConfigDict(frozen=True)

    id: str
    source: str
    type: str
    status: Literal["accepted", "duplicate"]


class BatchReceipt(BaseModel):
    """A batch's outcome, one entry per event in the order sent."""

    model_config = ConfigDict(frozen=True)

    ids: list[str]
    accepted: int
    duplicates: int
    events: list[Receipt]

    @classmethod
    def of(cls, receipts: list[Receipt]) -> BatchReceipt:
        accepted = sum(1 for r in receipts if r.status == "accepted")
        return cls(
            ids=[r.id for r in receipts], accepted=accepted, duplicates=len(receipts) - accepted, events=receipts
        )
