"""Use cases behind the CLI: keeping recipients and subscriptions, and importing them in bulk."""

from __future__ import annotations

import datetime as dt
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from .domain.model import Recipient, defaults_for
from .domain.recipients import InvalidInput, RecipientSpec, parse_event_type, recipient_from
from .ports import Directory


@dataclass
class ImportReport:
    added: int = 0
    updated: int = 0
    subscriptions: int = 0
    errors: list[tuple[int, str]] = field(default_factory=list)


class UnknownRecipient(LookupError):
    pass


async def add_recipient(directory: Directory, spec: RecipientSpec) -> tuple[Recipient, bool, list[str]]:
    """Add or update a recipient; a new one is subscribed to its role's defaults unless told not to."""
    recipient, created = await directory.upsert_recipient(spec)
    subscribed = await subscribe_defaults(directory, recipient) if spec.subscribe_defaults else []
    return recipient, created, subscribed


async def subscribe_defaults(directory: Directory, recipient: Recipient) -> list[str]:
    """Subscribe to the default routes for the recipient's role; existing subscriptions
    (and their opt-outs) are left as they are. Returns the event types newly subscribed."""
    added = []
    for r in defaults_for(recipient.role, await directory.default_routes()):
        if await directory.subscribe(
            recipient.id, r.event_type, r.min_escalation_level, r.max_escalation_level, replace=False
        ):
            added.append(r.event_type)
    return added


async def import_recipients(
    directory: Directory, rows: Iterable[tuple[int, Any]], allowed_reserved: Collection[str] = ()
) -> ImportReport:
    """Validate each row on its own: valid rows are imported, invalid ones reported by line."""
    report = ImportReport()
    for line, row in rows:
        if not isinstance(row, Mapping):
            report.errors.append((line, "each recipient must be a mapping with email, org and role"))
            continue
        try:
            spec = recipient_from(row, allowed_reserved)
        except InvalidInput as exc:
            report.errors.append((line, str(exc)))
            continue
        _, created, subscribed = await add_recipient(directory, spec)
        report.added += created
        report.updated += not created
        report.subscriptions += len(subscribed)
    return report


async def _recipient(directory: Directory, email: str) -> Recipient:
    found = await directory.find(email.strip().lower())
    if found is None:
        raise UnknownRecipient(f"no recipient with the address {email.strip()}")
    return found


async def subscribe(
    directory: Directory, email: str, event_type: str, min_level: int = 1, max_level: int | None = None
) -> None:
    if min_level < 1 or (max_level is not None and max_level < min_level):
        raise InvalidInput(["levels: need 1 <= min-level <= max-level"])
    recipient = await _recipient(directory, email)
    await directory.subscribe(recipient.id, parse_event_type(event_type), min_level, max_level, replace=True)


async def opt_out(directory: Directory, email: str, event_type: str, at: dt.datetime) -> None:
    recipient = await _recipient(directory, email)
    name = parse_event_type(event_type)
    if not await directory.set_opted_out(recipient.id, name, at):
        raise UnknownRecipient(f"{recipient.email} has no subscription to {name}")


async def opt_in(directory: Directory, email: str, event_type: str) -> None:
    recipient = await _recipient(directory, email)
    name = parse_event_type(event_type)
    if not await directory.set_opted_out(recipient.id, name, None):
        raise UnknownRecipient(f"{recipient.email} has no subscription to {name}")


async def set_active(directory: Directory, email: str, active: bool) -> Recipient:
    recipient = await _recipient(directory, email)
    await directory.set_active(recipient.id, active)
    return recipient
