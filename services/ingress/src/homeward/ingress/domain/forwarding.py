"""What the ingress forwards for the services: the partner's own event, naming who could have
written it (its principal). Pure: no I/O."""

from __future__ import annotations

import dataclasses
from typing import Any

from homeward.contracts import Event
from homeward.contracts.access import PRINCIPAL_EXTENSION, partner_principal
from homeward.contracts.envelope import MAX_EXTENSIONS


def outbox_id(event: Event[Any]) -> str:
    """The outbox's de-duplication key: CloudEvents ids are unique per source only."""
    return f"{event.source} {event.id}"


def principal(event: Event[Any], http_key_id: str | None, namespace: str) -> str:
    """Who could have written the record: the API key it was posted with over HTTP (the ingress
    wrote those onto the partner's topic), else the partner's own Kafka user."""
    if http_key_id:
        return f"apikey:{http_key_id}"
    return f"User:{partner_principal(event.organisation or 'unknown', namespace)}"


def naming(event: Event[Any], who: str) -> Event[Any]:
    """The event as forwarded: the partner's own extensions, less any it called "principal", and
    fewer by one if it used the whole allowance, so the forwarded event stays within the
    contracts' bound; and ``principal`` set to ``who``."""
    own = sorted((k, v) for k, v in event.extensions.items() if k != PRINCIPAL_EXTENSION)[: MAX_EXTENSIONS - 1]
    return dataclasses.replace(event, extensions={**dict(own), PRINCIPAL_EXTENSION: who})
