"""The CloudEvents HTTP protocol binding, on top of the contracts' own parsing.

Three content modes, told apart by ``Content-Type`` (CloudEvents HTTP binding 1.0, section 3):

* **structured**: ``application/cloudevents+json``, the body is one whole event (exactly what
  a structured-mode Kafka record holds, parsed by :func:`homeward.contracts.parse_json`);
* **binary**: ``application/json`` (or another ``application/*+json``), the attributes are in
  ``ce-*`` headers (percent-encoded, section 3.1.3.2) and the body is the event's ``data``, as
  in a binary-mode Kafka record;
* **batch**: ``application/cloudevents-batch+json``, the body is a JSON array of structured
  events. A batch is all or nothing: if any event is refused, none is taken, and the answer
  names each bad one by its index (``[2].data.nhs_number``).

Whatever the mode, each event is validated by :func:`homeward.contracts.envelope.parse_event`,
the function the Kafka path uses, and refusals carry the same reasons as the dead letters of
that path (``malformed-json``, ``invalid-envelope``, ``invalid-payload``, ``unknown-type``...).
Everything here is pure: no I/O.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum
from typing import Any
from urllib.parse import unquote_to_bytes

from homeward.contracts import ContractError, Event, FieldProblem, Payload, parse_json
from homeward.contracts.envelope import parse_event
from homeward.kit.redaction import redact_text

STRUCTURED_TYPE = "application/cloudevents+json"
BATCH_TYPE = "application/cloudevents-batch+json"
JSON_TYPE = "application/json"
PROBLEM_TYPE = "application/problem+json"
PROBLEM_BASE = "https://homeward.example/problems/"
CE_PREFIX = "ce-"


class Mode(Enum):
    STRUCTURED = "structured"
    BINARY = "binary"
    BATCH = "batch"


# ---- answers that are not 2xx: one RFC 9457 problem shape -------------------------------
TITLES = {
    "invalid-event": "The event does not meet the contract",
    "unauthenticated": "A valid API key is needed",
    "forbidden": "Your organisation may not send this",
    "method-not-allowed": "Only POST is allowed here",
    "conflicting-duplicate": "This event id was already used for different content",
    "too-large": "The request is too large",
    "unsupported-media-type": "Unsupported content type",
    "rate-limited": "Too many requests",
    "unavailable": "Homeward cannot take events right now",
    "internal-error": "Unexpected error",
}


@dataclass
class Problem(Exception):
    """An answer other than 2xx, rendered as ``application/problem+json`` (RFC 9457):
    ``type``, ``title``, ``status``, ``detail``, plus ``errors`` (``[{field, problem}]``) and
    ``reason`` (the dead-letter vocabulary) where they apply."""

    status: int
    kind: str
    detail: str
    errors: list[FieldProblem] = field(default_factory=list)
    reason: str | None = None
    headers: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        super().__init__(self.detail)

    @property
    def title(self) -> str:
        return TITLES[self.kind]

    def body(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "type": PROBLEM_BASE + self.kind,
            "title": self.title,
            "status": self.status,
            "detail": redact_text(self.detail),
        }
        if self.reason is not None:
            out["reason"] = self.reason
        if self.errors or self.status == 400:
            out["errors"] = [{"field": redact_text(p.field), "problem": redact_text(p.problem)} for p in self.errors]
        return out


def unsupported_media_type(detail: str) -> Problem:
    return Problem(
        415,
        "unsupported-media-type",
        f"{detail}. Send Content-Type {STRUCTURED_TYPE} (one event), {BATCH_TYPE} (a JSON array of events) "
        f"or {JSON_TYPE} with the attributes in ce-* headers (binary mode)",
        headers={"Accept-Post": f"{STRUCTURED_TYPE}, {BATCH_TYPE}, {JSON_TYPE}"},
    )


def mode_of(content_type: str | None) -> Mode:
    """The content mode a Content-Type names; a :class:`Problem` (415) for any other."""
    if not content_type or not content_type.strip():
        raise unsupported_media_type("The request has no Content-Type")
    media, _, params = content_type.partition(";")
    media = media.strip().lower()
    for param in params.split(";"):
        name, _, value = param.partition("=")
        if name.strip().lower() == "charset" and value.strip().strip('"').lower() not in ("utf-8", "utf8"):
            raise unsupported_media_type("Events are UTF-8 JSON; the charset must be utf-8")
    if media == STRUCTURED_TYPE:
        return Mode.STRUCTURED
    if media == BATCH_TYPE:
        return Mode.BATCH
    if media == JSON_TYPE or (
        media.startswith("application/") and media.endswith("+json") and not media.startswith("application/cloudevents")
    ):
        return Mode.BINARY
    raise unsupported_media_type(f"Content-Type {media!r} is not one Homeward reads")


# ---- parsing -----------------------------------------------------------------------------
@dataclass(frozen=True)
class Parsed:
    """One event of a request: parsed, or why not. ``where`` prefixes its field names:
    empty for a single event, ``[i].`` for the i-th event of a batch."""

    where: str
    event: Event[Payload] | None = None
    error: ContractError | None = None


def _guarded(parse: Any, *args: Any) -> Event[Payload] | ContractError:
    """Call the contracts' parser and turn any failure into a ContractError, as the Kafka
    consumer does: nesting too deep is malformed JSON, anything else an invalid payload."""
    try:
        event: Event[Payload] = parse(*args)
        return event
    except ContractError as exc:
        return exc
    except MemoryError:
        raise
    except RecursionError as exc:
        return ContractError("malformed-json", f"the message is nested too deeply to parse ({type(exc).__name__})")
    except Exception as exc:
        return ContractError("invalid-payload", f"the message could not be parsed ({type(exc).__name__}: {exc})")


def _header_value(name: str, value: str) -> str:
    """A ce-* header's value: percent-decoded (CloudEvents HTTP binding 3.1.3.2), UTF-8."""
    try:
        return unquote_to_bytes(value.encode("latin-1")).decode("utf-8")
    except UnicodeError:
        raise ContractError(
            "invalid-envelope",
            "CloudEvents attributes are invalid",
            [FieldProblem(name, "must be UTF-8 text, percent-encoded where it is not printable ASCII")],
        ) from None


def _binary(headers: Mapping[str, str], body: bytes) -> Event[Payload]:
    raw: dict[str, Any] = {}
    for name, value in headers.items():
        lower = name.lower()
        if lower.startswith(CE_PREFIX) and len(lower) > len(CE_PREFIX):
            raw.setdefault(lower[len(CE_PREFIX) :], _header_value(lower, value))
    if "specversion" not in raw:
        raise ContractError(
            "invalid-envelope",
            f"binary mode needs the event's attributes in ce-* headers; to send the whole event as JSON use "
            f"Content-Type {STRUCTURED_TYPE}",
            [FieldProblem("ce-specversion", "required in binary mode (Content-Type application/json)")],
        )
    try:
        data = json.loads(body)
    except RecursionError:
        raise
    except (ValueError, UnicodeDecodeError) as exc:
        raise ContractError(
            "malformed-json",
            f"binary-mode data is not valid JSON ({type(exc).__name__})",
            [FieldProblem("data", "the body must be the event's data as a JSON object")],
        ) from exc
    try:
        return parse_event(raw, data)
    except ContractError as exc:
        # Attribute problems name the header the partner set.
        exc.problems = [
            p if p.field.startswith("data") or p.field.startswith("(") else FieldProblem(CE_PREFIX + p.field, p.problem)
            for p in exc.problems
        ]
        raise


def _batch(body: bytes) -> list[Parsed]:
    try:
        items = json.loads(body)
    except RecursionError:
        return [Parsed("", error=ContractError("malformed-json", "the batch is nested too deeply to parse"))]
    except (ValueError, UnicodeDecodeError) as exc:
        return [Parsed("", error=ContractError("malformed-json", f"the batch is not valid JSON ({exc})"))]
    if not isinstance(items, list):
        return [Parsed("", error=ContractError("malformed-json", "a batch must be a JSON array of structured events"))]
    if not items:
        return [Parsed("", error=ContractError("invalid-envelope", "a batch holds at least one event"))]
    out: list[Parsed] = []
    for i, item in enumerate(items):
        where = f"[{i}]."
        if not isinstance(item, dict):
            out.append(Parsed(where, error=ContractError("malformed-json", "each event must be a JSON object")))
            continue
        parsed = _guarded(parse_event, item, item.get("data"))
        out.append(Parsed(where, error=parsed) if isinstance(parsed, ContractError) else Parsed(where, event=parsed))
    return out


def parse_request(mode: Mode, headers: Mapping[str, str], body: bytes) -> list[Parsed]:
    """The events of a request, each parsed or refused with the contracts' reason."""
    if mode is Mode.BATCH:
        return _batch(body)
    parsed = _guarded(parse_json, body) if mode is Mode.STRUCTURED else _guarded(_binary, headers, body)
    return [Parsed("", error=parsed)] if isinstance(parsed, ContractError) else [Parsed("", event=parsed)]


def field_problems(where: str, error: ContractError) -> list[FieldProblem]:
    """An error's problems with their fields placed in the request (``[2].data.x``)."""
    if not error.problems:
        return [FieldProblem(where.rstrip(".") or "(body)", error.message)]
    return [FieldProblem(where + p.field, p.problem) for p in error.problems]


def invalid(parsed: list[Parsed]) -> Problem | None:
    """The 400 answer for a request with any unparsable event (a batch is all or nothing)."""
    bad = [p for p in parsed if p.error is not None]
    if not bad:
        return None
    errors = [fp for p in bad for fp in field_problems(p.where, p.error)]  # type: ignore[arg-type]
    first = bad[0].error
    assert first is not None
    if len(parsed) > 1:
        detail = f"{len(bad)} of the {len(parsed)} events in the batch are invalid; none was accepted: " + first.message
    else:
        detail = first.message
    return Problem(400, "invalid-event", detail, errors=errors, reason=first.kind)
