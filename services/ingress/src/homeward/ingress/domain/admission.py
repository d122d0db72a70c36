"""What the front door checks before it takes an event: the same checks as the Kafka path.

After :mod:`.binding` has parsed a request's events with the contracts, each must be storable
(an id or source the receipts and the inbox can hold), and :func:`homeward.kit.authority.authorise`
must let the partner write it on its own topic, exactly as if it had come on
``partner.<ODS>.events``: only inbound types, with a ``source`` naming the key's organisation.
Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from homeward.contracts import ContractError, Event, FieldProblem, Payload
from homeward.contracts.topics import partner_topic
from homeward.kit.authority import Rejected, authorise
from homeward.kit.identity import digest

from .binding import Parsed, Problem, invalid

MAX_KEY_BYTES = 1000  # as the kit's consumer: (source, id) must fit a btree index entry


@dataclass(frozen=True)
class Admitted:
    """An event the partner may send, ready for its receipt and its partner topic."""

    index: int
    where: str
    event: Event[Payload]
    key: bytes
    value: bytes
    headers: list[tuple[str, bytes]]
    digest: str

    @property
    def ident(self) -> tuple[str, str]:
        return (self.event.source, self.event.id)


def _storable(event: Event[Any]) -> None:
    problems = []
    for name, value in (("id", event.id), ("source", event.source)):
        if "\x00" in value:
            problems.append(FieldProblem(name, "must not contain a NUL character"))
            continue
        try:
            size = len(value.encode("utf-8"))
        except UnicodeEncodeError:
            problems.append(FieldProblem(name, "must be valid Unicode text (it holds a lone surrogate)"))
            continue
        if size > MAX_KEY_BYTES:
            problems.append(FieldProblem(name, f"must be at most {MAX_KEY_BYTES} bytes"))
    if problems:
        raise ContractError("invalid-envelope", "CloudEvents attributes are invalid", problems)


def _ready(index: int, where: str, event: Event[Payload]) -> Admitted | ContractError:
    try:
        _storable(event)
        key, value, headers = event.to_kafka()
        return Admitted(index, where, event, key, value, list(headers), digest(event))
    except ContractError as exc:
        return exc
    except MemoryError:
        raise
    except Exception as exc:  # a time that cannot be written in UTC, say
        return ContractError("invalid-payload", f"the event could not be serialised ({type(exc).__name__}: {exc})")


def admit(ods: str, parsed: Sequence[Parsed]) -> list[Admitted]:
    """The request's events, in order, if every one of them may be taken; else the
    :class:`Problem` to answer: 400 (contract), 403 (authorisation) or 409 (one id used for
    two different events in one batch)."""
    problem = invalid(list(parsed))
    if problem is not None:
        raise problem
    ready: list[Admitted] = []
    refused: list[Parsed] = []
    for i, p in enumerate(parsed):
        assert p.event is not None
        done = _ready(i, p.where, p.event)
        if isinstance(done, ContractError):
            refused.append(Parsed(p.where, error=done))
        else:
            ready.append(done)
    if refused:
        problem = invalid([*refused])
        assert problem is not None
        if len(parsed) > 1:
            problem.detail = f"{len(refused)} of the {len(parsed)} events in the batch are invalid; none was accepted"
        raise problem

    topic = partner_topic(ods)
    forbidden: list[tuple[Admitted, Rejected]] = []
    for a in ready:
        try:
            authorise(topic, a.event)
        except Rejected as exc:
            forbidden.append((a, exc))
    if forbidden:
        first = forbidden[0][1]
        errors = [
            FieldProblem(a.where + ("type" if exc.reason == "not-allowed" else "source"), exc.message)
            for a, exc in forbidden
        ]
        detail = first.message if len(ready) == 1 else f"{len(forbidden)} of the {len(ready)} events: {first.message}"
        raise Problem(403, "forbidden", f"Your API key speaks for {ods}. {detail}", errors=errors, reason=first.reason)

    seen: dict[tuple[str, str], Admitted] = {}
    clashes: list[FieldProblem] = []
    for a in ready:
        before = seen.setdefault(a.ident, a)
        if before is not a and before.digest != a.digest:
            clashes.append(
                FieldProblem(a.where + "id", f"also used by {before.where.rstrip('.')} for a different event")
            )
    if clashes:
        raise Problem(
            409,
            "conflicting-duplicate",
            "One event id is used for two different events in this batch; none was accepted. "
            "Each new event needs a new id (a resend keeps the id and the content)",
            errors=clashes,
            reason="conflicting-duplicate",
        )
    return ready
