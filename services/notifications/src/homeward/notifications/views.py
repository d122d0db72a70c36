"""The read API's resources, one pydantic model each: the field list the queries fill and the
JSON the staff view reads (entrypoints/http.py). Times are ISO 8601 with their offset
(``+00:00``), dates ``YYYY-MM-DD``."""

from __future__ import annotations

import datetime as dt
from typing import Annotated

from pydantic import BaseModel, ConfigDict, PlainSerializer

Instant = Annotated[dt.datetime, PlainSerializer(lambda v: v.isoformat(), return_type=str)]


class View(BaseModel):
    model_config = ConfigDict(from_attributes=True, frozen=True)


class NotificationView(View):
    """One line of the sent-mail log: one notification (event, recipient) and its email."""

    id: str
    cause_event_id: str
    event_type: str
    cause_event_type: str
    organisation: str
    role: str
    recipient: str
    reference: str
    escalation_level: int
    subject: str
    due_by: dt.date
    digest: bool
    late: bool
    status: str
    suppressed_reason: str | None
    attempts: int | None
    message_id: str | None
    recorded_at: Instant
    sent_at: Instant | None
    failed_at: Instant | None
    last_error: str | None


class SubscriptionView(View):
    event_type: str
    min_escalation_level: int
    max_escalation_level: int | None
    opted_out: bool
    opted_out_at: Instant | None


class RecipientView(View):
    """A recipient and what they subscribe to."""

    email: str
    name: str | None
    organisation: str
    role: str
    digest: bool
    active: bool
    subscriptions: list[SubscriptionView]
