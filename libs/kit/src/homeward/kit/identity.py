"""What identifies an event, as pure functions a domain may use: deterministic ids for facts
published once (``stable_id``), and the digest that tells a redelivery from a reused id.

No I/O here (the consumer, the inbox and the services' domains share it)."""

from __future__ import annotations

import hashlib
import json
import uuid
from typing import Any

from homeward.contracts import Event

EVENT_ID_NAMESPACE = uuid.UUID("8f1d2a4e-5b6c-4d7e-9f80-1a2b3c4d5e6f")


def stable_id(*parts: object) -> str:
    """A deterministic event id: the same fact always gets the same id, so it is published once."""
    return str(uuid.uuid5(EVENT_ID_NAMESPACE, "|".join(str(p) for p in parts)))


def digest(event: Event[Any]) -> str:
    """What makes two events with one id the same event: type, subject and payload."""
    content = {"type": event.type, "subject": event.subject, "data": event.data.model_dump(mode="json")}
    return hashlib.sha256(json.dumps(content, sort_keys=True, separators=(",", ":")).encode()).hexdigest()
