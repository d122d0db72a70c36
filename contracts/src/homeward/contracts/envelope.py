"""The CloudEvents 1.0 envelope, and its Kafka protocol binding.

Homeward writes structured mode (one JSON object, ``content-type:
application/cloudevents+json``) and reads both structured and binary mode
(attributes in ``ce_*`` headers, the payload alone as the value), so a message from
any CloudEvents SDK or from a plain client such as kcat is readable.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from .errors import ContractError, FieldProblem, problems_from
from .events import Payload, payload_class
from .identifiers import FactDatetime

STRUCTURED_CONTENT_TYPE = "application/cloudevents+json"
JSON_CONTENT_TYPE = "application/json"
SPECVERSION = "1.0"
# Names the event's type beside a structured-mode value, so that a consumer can pass over the
# types it does not handle without parsing them (homeward.kit.consumer). The value stays the
# whole event; the header is only a hint, believed only on topics Homeward's own services write
# (the kit drops every homeward-* header of a partner's record).
TYPE_HEADER = "homeward-type"

P = TypeVar("P", bound=Payload)

_PARTNER_SOURCE_RE = re.compile(r"^urn:nhs:ods:(?P<ods>[A-Z0-9]{3,9})(?:[:/].*)?$")
_SERVICE_SOURCE_RE = re.compile(r"^urn:homeward:(?P<service>[a-z]+)$")

Headers = list[tuple[str, bytes]]


def partner_source(ods: str, system: str | None = None) -> str:
    """The ``source`` a partner organisation writes: ``urn:nhs:ods:<ODS>[/<system>]``."""
    return f"urn:nhs:ods:{ods}" + (f"/{system}" if system else "")


def service_source(service: str) -> str:
    return f"urn:homeward:{service}"


def source_organisation(source: str) -> str | None:
    """The ODS code a partner ``source`` names, or None if it is not a partner source."""
    m = _PARTNER_SOURCE_RE.match(source)
    return m.group("ods") if m else None


def source_service(source: str) -> str | None:
    m = _SERVICE_SOURCE_RE.match(source)
    return m.group("service") if m else None


MAX_EXTENSIONS = 20
MAX_EXTENSION_VALUE = 1000
MAX_DEPTH = 32
_EXTENSION_NAME_RE = re.compile(r"^[a-z0-9]{1,20}$")


class Attributes(BaseModel):
    """CloudEvents context attributes Homeward reads and writes. Every one is bounded: a partner's
    attribute is copied into internal events (correlationid) and dead-letter headers, so none may
    be of any size."""

    model_config = ConfigDict(extra="allow", frozen=True)

    specversion: str = Field(max_length=10, description="CloudEvents version; must be 1.0")
    id: str = Field(min_length=1, max_length=200, description="Unique per source; Homeward de-duplicates on it")
    source: str = Field(
        min_length=1,
        max_length=200,
        description="urn:nhs:ods:<ODS> for a partner organisation, urn:homeward:<service> for a service",
        examples=["urn:nhs:ods:QWU"],
    )
    type: str = Field(min_length=1, max_length=100, examples=["homeward.PlacementMade.v1"])
    time: FactDatetime = Field(
        description="When the fact happened in the sender's system (RFC 3339, with offset); "
        "not before 1990, nor more than 366 days ahead"
    )
    subject: str | None = Field(
        default=None, max_length=200, description="The placement, referral or commissioner the event is about"
    )
    dataschema: str | None = Field(default=None, max_length=500)
    datacontenttype: str | None = Field(default=None, max_length=100)
    correlationid: str | None = Field(
        default=None, max_length=200, description="Ties together events of one piece of work"
    )
    causationid: str | None = Field(
        default=None, max_length=200, description="The id of the event that caused this one"
    )

    @field_validator("time", mode="before")
    @classmethod
    def _time_is_rfc3339_text(cls, value: Any) -> Any:
        # pydantic would read a number as Unix seconds; CloudEvents (and our JSON Schema) say RFC 3339.
        if not isinstance(value, (str, dt.datetime)):
            raise ValueError("must be an RFC 3339 timestamp string, such as 2026-03-02T09:00:00Z")
        return value

    @model_validator(mode="after")
    def _bounded_extensions(self) -> Attributes:
        extra = self.model_extra or {}
        extensions = {k: v for k, v in extra.items() if k not in ("data", "data_base64")}
        if len(extensions) > MAX_EXTENSIONS:
            raise ValueError(f"at most {MAX_EXTENSIONS} extension attributes")
        for name, value in extensions.items():
            if not _EXTENSION_NAME_RE.match(name):
                raise ValueError("extension attribute names are 1-20 lowercase letters or digits")
            if isinstance(value, (dict, list)):
                raise ValueError(f"extension attribute {name} must be a string, number or boolean")
            if len(str(value)) > MAX_EXTENSION_VALUE:
                raise ValueError(f"extension attribute {name} is longer than {MAX_EXTENSION_VALUE} characters")
        return self


@dataclass(frozen=True)
class Event(Generic[P]):
    """A validated CloudEvent with a typed payload."""

    id: str
    source: str
    type: str
    time: dt.datetime
    data: P
    subject: str | None = None
    dataschema: str | None = None
    correlationid: str | None = None
    causationid: str | None = None
    extensions: Mapping[str, Any] = field(default_factory=dict)

    @property
    def key(self) -> str:
        return self.data.key()

    @property
    def organisation(self) -> str | None:
        return source_organisation(self.source)

    def attributes(self) -> dict[str, Any]:
        attrs: dict[str, Any] = {
            "specversion": SPECVERSION,
            "id": self.id,
            "source": self.source,
            "type": self.type,
            "time": _rfc3339(self.time),
            "datacontenttype": JSON_CONTENT_TYPE,
        }
        for name in ("subject", "dataschema", "correlationid", "causationid"):
            value = getattr(self, name)
            if value is not None:
                attrs[name] = value
        attrs.update(self.extensions)
        return attrs

    def to_dict(self) -> dict[str, Any]:
        out = self.attributes()
        out["data"] = self.data.model_dump(mode="json", exclude_none=True)
        return out

    def to_json(self) -> bytes:
        return json.dumps(self.to_dict(), separators=(",", ":"), sort_keys=True).encode()

    def to_kafka(self) -> tuple[bytes, bytes, Headers]:
        """(key, value, headers) for a structured-mode Kafka record. Beside the content type, a
        ``homeward-type`` header names the event's type (TYPE_HEADER)."""
        return (
            self.key.encode(),
            self.to_json(),
            [("content-type", STRUCTURED_CONTENT_TYPE.encode()), (TYPE_HEADER, self.type.encode())],
        )


def _rfc3339(value: dt.datetime) -> str:
    return value.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")


def dataschema_for(payload_cls: type[Payload]) -> str:
    return f"https://homeward.example/schemas/{payload_cls.event_type()}.json"


def new_event(
    data: P,
    *,
    source: str,
    time: dt.datetime | None = None,
    id: str | None = None,
    subject: str | None = None,
    correlationid: str | None = None,
    causationid: str | None = None,
) -> Event[P]:
    """Build an event around a payload, filling id, time, subject and dataschema."""
    return Event(
        id=id or str(uuid.uuid4()),
        source=source,
        type=type(data).event_type(),
        time=time or dt.datetime.now(dt.UTC),
        data=data,
        subject=subject or data.key(),
        dataschema=dataschema_for(type(data)),
        correlationid=correlationid,
        causationid=causationid,
    )


def caused_by(
    cause: Event[Any], data: P, *, source: str, id: str | None = None, time: dt.datetime | None = None
) -> Event[P]:
    """An event caused by another: it inherits the correlation id and names its cause."""
    return new_event(
        data,
        source=source,
        id=id,
        time=time,
        correlationid=cause.correlationid or cause.id,
        causationid=cause.id,
    )


def _header(headers: Iterable[tuple[str, bytes | None]], name: str) -> str | None:
    for key, value in headers:
        if key.lower() == name and value is not None:
            return value.decode("utf-8", errors="replace")
    return None


def parse_attributes(raw: Mapping[str, Any]) -> Attributes:
    try:
        attrs = Attributes.model_validate(raw)
    except ValidationError as exc:
        raise ContractError("invalid-envelope", "CloudEvents attributes are invalid", problems_from(exc)) from exc
    if attrs.specversion != SPECVERSION:
        raise ContractError(
            "invalid-envelope",
            "CloudEvents attributes are invalid",
            [FieldProblem("specversion", f"must be {SPECVERSION!r}")],
        )
    return attrs


def parse_event(raw: Mapping[str, Any], data: Any) -> Event[Payload]:
    """Validate attributes and payload into a typed Event."""
    attrs = parse_attributes(raw)
    cls = payload_class(attrs.type)
    if cls is None:
        raise ContractError(
            "unknown-type",
            f"event type {attrs.type!r} is not in the Homeward contracts",
            [FieldProblem("type", "unknown event type; expected homeward.<Name>.v<major>")],
        )
    if not isinstance(data, dict):
        raise ContractError(
            "invalid-payload",
            f"{attrs.type} needs a JSON object as data",
            [FieldProblem("data", "must be a JSON object")],
        )
    try:
        payload = cls.model_validate_json(json.dumps(data))
    except ValidationError as exc:
        raise ContractError("invalid-payload", f"{attrs.type} payload is invalid", problems_from(exc, "data")) from exc
    known = set(Attributes.model_fields)
    extensions = {k: v for k, v in raw.items() if k not in known and k not in ("data", "data_base64")}
    return Event(
        id=attrs.id,
        source=attrs.source,
        type=attrs.type,
        time=attrs.time,
        data=payload,
        subject=attrs.subject,
        dataschema=attrs.dataschema,
        correlationid=attrs.correlationid,
        causationid=attrs.causationid,
        extensions=extensions,
    )


def _too_deep(value: Any, limit: int = MAX_DEPTH) -> bool:
    """Whether JSON nests deeper than ``limit`` (walked without recursion)."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if depth > limit:
            return True
        if isinstance(item, dict):
            stack.extend((v, depth + 1) for v in item.values())
        elif isinstance(item, list):
            stack.extend((v, depth + 1) for v in item)
    return False


def loads_bounded(value: bytes | str, what: str = "message") -> Any:
    """``json.loads`` that refuses, as a contract error, what is not JSON or nests too deeply:
    Homeward's payloads nest a few levels; a deeply nested value is an attack on the parser."""
    try:
        raw = json.loads(value)
    except RecursionError as exc:
        raise ContractError("malformed-json", f"{what} nests deeper than {MAX_DEPTH} levels") from exc
    except (ValueError, UnicodeDecodeError) as exc:
        raise ContractError("malformed-json", f"{what} is not valid JSON ({exc.__class__.__name__}: {exc})") from exc
    if _too_deep(raw):
        raise ContractError("malformed-json", f"{what} nests deeper than {MAX_DEPTH} levels")
    return raw


def parse_json(value: bytes | str) -> Event[Payload]:
    """Parse a structured-mode CloudEvent."""
    raw = loads_bounded(value)
    if not isinstance(raw, dict):
        raise ContractError("malformed-json", "a structured CloudEvent must be a JSON object")
    return parse_event(raw, raw.get("data"))


def parse_kafka(value: bytes | None, headers: Iterable[tuple[str, bytes | None]] = ()) -> Event[Payload]:
    """Parse a Kafka record in structured or binary content mode."""
    headers = list(headers)
    if value is None:
        raise ContractError("malformed-json", "message has no value (tombstone)")
    if _header(headers, "ce_specversion") is None:
        return parse_json(value)
    raw: dict[str, Any] = {}
    for key, hv in headers:
        if key.lower().startswith("ce_") and hv is not None:
            raw[key[3:].lower()] = hv.decode("utf-8", errors="replace")
    content_type = _header(headers, "content-type")
    if content_type and "json" not in content_type:
        raise ContractError(
            "invalid-envelope",
            f"binary-mode data must be JSON, got content-type {content_type!r}",
            [FieldProblem("content-type", "must be application/json")],
        )
    data = loads_bounded(value, "binary-mode data")
    return parse_event(raw, data)
