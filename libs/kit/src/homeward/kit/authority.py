"""Who may write what where, and the permanent refusal (:class:`Rejected`) a handler or the
consumer raises: pure rules over the contracts, so a domain may use them; the consumer applies
them to every record and dead-letters what they refuse, with the reason."""

from __future__ import annotations

from typing import Any

from homeward.contracts import ContractError, Event, partner_of, source_organisation, source_service
from homeward.contracts.topics import INGRESS, internal_topic

INGRESS_TOPIC = internal_topic(INGRESS)


class Rejected(Exception):
    """A permanent refusal: the message goes to the dead-letter topic with this reason."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


def authorise(topic: str, event: Event[Any]) -> None:
    """Who may write what where: partners only their own topic and inbound types, services only
    theirs; the ingress's topic carries only partner events (which the ingress accepted)."""
    partner = partner_of(topic)
    if partner is not None:
        org = source_organisation(event.source)
        if org is None:
            raise Rejected(
                "wrong-organisation", f"on {topic} the source must be urn:nhs:ods:{partner}, got {event.source!r}"
            )
        if org != partner:
            raise Rejected("wrong-organisation", f"organisation {org} may not write on {topic}")
        if event.data.direction != "inbound":
            raise Rejected("not-allowed", f"{event.type} is published by Homeward services, not by partners")
        return
    if topic == INGRESS_TOPIC:
        # The ingress vouches for these: it republishes only partner events it accepted.
        if source_organisation(event.source) is None or event.data.direction != "inbound":
            raise Rejected("wrong-source", f"{topic} carries accepted partner events only, not {event.source!r}")
        return
    if topic.startswith("homeward.") and topic.endswith(".v1"):
        owner = topic.split(".")[1]
        if source_service(event.source) != owner:
            raise Rejected("wrong-source", f"only the {owner} service writes on {topic}, not {event.source!r}")


def refusal(exc: Exception) -> tuple[str, str]:
    """(reason, message) for a permanent refusal: a rejection, a reused event id, a contract error."""
    if isinstance(exc, Rejected):
        return exc.reason, exc.message
    if isinstance(exc, ContractError):
        return exc.kind, str(exc)
    return "conflicting-duplicate", str(exc)
