"""The OpenAPI 3.1 document of the ingress's HTTP front door, built from the contracts.

The ingress serves it at ``GET /openapi.json``; a copy is committed as
``contracts/openapi-ingress.json`` for partners. ``python -m homeward.ingress.entrypoints.openapi
--write`` refreshes the copy and ``--check`` (also a test) fails when it is stale.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Annotated, Any

import typer
from homeward.contracts.events import INBOUND, Payload
from homeward.contracts.schema import event_schema

from ..domain.binding import BATCH_TYPE, JSON_TYPE, PROBLEM_BASE, PROBLEM_TYPE, STRUCTURED_TYPE, TITLES

VERSION = "1.0.0"
_REF = "#/components/schemas/"


def committed_path() -> Path | None:
    """contracts/openapi-ingress.json in a source checkout; None where there is none."""
    for parent in Path(__file__).resolve().parents:
        if (parent / "contracts" / "src").is_dir() and (parent / "services" / "ingress").is_dir():
            return parent / "contracts" / "openapi-ingress.json"
    return None


def _rewrite(node: Any) -> Any:
    if isinstance(node, list):
        return [_rewrite(v) for v in node]
    if not isinstance(node, dict):
        return node
    out = {}
    for k, v in node.items():
        if k == "$ref" and isinstance(v, str) and v.startswith("#/$defs/"):
            v = _REF + v[len("#/$defs/") :]
        out[k] = _rewrite(v)
    return out


def _name(cls: type[Payload]) -> str:
    return f"{cls.name}V{cls.version}"


def _event_schemas() -> dict[str, Any]:
    """Each inbound type's data and whole structured event, and what they share, as components."""
    out: dict[str, Any] = {}
    for cls in INBOUND:
        schema = copy.deepcopy(event_schema(cls))
        for name, definition in schema.pop("$defs", {}).items():
            rewritten = _rewrite(definition)
            if out.setdefault(name, rewritten) != rewritten:
                raise ValueError(f"two event types define {name!r} differently")
        schema.pop("$schema", None)
        schema.pop("$id", None)
        props = schema["properties"]
        out[_name(cls)] = _rewrite(props.pop("data"))
        props["data"] = {"$ref": _REF + _name(cls)}
        props["source"] = {
            **props["source"],
            "pattern": r"^urn:nhs:ods:[A-Z0-9]{3,9}([:/].*)?$",
            "description": "urn:nhs:ods:<ODS>[/<system>]: your organisation, the one your API key speaks for",
            "examples": ["urn:nhs:ods:RX1"],
        }
        out[_name(cls) + "Event"] = _rewrite(schema)
    return out


EXAMPLE_DATA = {
    "placement_id": "PLC-RX1-000001",
    "nhs_number": "9990000018",
    "commissioner": "RX1",
    "provider": "8HA03",
    "provider_site": "8HA0301",
    "bed_type": "picu",
    "cohort": "mental_health",
    "age_band": "adult",
    "legal_status": "mha_s3",
    "programme": "mental_health",
    "start_date": "2026-01-05",
    "daily_rate_pence": 54500,
    "out_of_area_reason": "10",
}
EXAMPLE_EVENT = {
    "specversion": "1.0",
    "id": "rx1-epr-000001",
    "source": "urn:nhs:ods:RX1",
    "type": "homeward.PlacementMade.v1",
    "time": "2026-01-05T10:00:00Z",
    "subject": "PLC-RX1-000001",
    "data": EXAMPLE_DATA,
}
# Binary mode's headers. Their values are described, not constrained, here: the same operation
# takes structured events and batches too, where the CloudEvents binding lets ce-* headers be
# present and the body's attributes are what count. In binary mode each is checked as the
# attribute it carries (400 naming the header).
BINARY_HEADERS: dict[str, tuple[str, str | None]] = {
    "ce-specversion": ("Required in binary mode, where its presence marks the mode: 1.0", "1.0"),
    "ce-id": ("Required: unique per source, 1 to 200 characters; a resend keeps it", "rx1-epr-000001"),
    "ce-source": ("Required: urn:nhs:ods:<your ODS code>[/<system>]", "urn:nhs:ods:RX1"),
    "ce-type": (
        "Required: an inbound event type, one of " + ", ".join(cls.event_type() for cls in INBOUND),
        "homeward.PlacementMade.v1",
    ),
    "ce-time": ("Required: when it happened, RFC 3339 with an offset", "2026-01-05T10:00:00Z"),
    "ce-subject": ("The entity the event is about", "PLC-RX1-000001"),
    "ce-dataschema": ("The JSON Schema of data", None),
    "ce-correlationid": ("Ties together the events of one piece of work", None),
    "ce-causationid": ("The id of the event that caused this one", None),
}


def _problem(status: int, kinds: list[str], description: str, headers: dict[str, Any] | None = None) -> dict[str, Any]:
    schema = "ValidationProblem" if status == 400 else "Problem"
    kind = kinds[0]
    example: dict[str, Any] = {
        "type": PROBLEM_BASE + kind,
        "title": TITLES[kind],
        "status": status,
        "detail": description,
    }
    if status == 400:
        example |= {
            "reason": "invalid-payload",
            "errors": [{"field": "data.nhs_number", "problem": "not a valid NHS number (check digit)"}],
        }
    answer: dict[str, Any] = {
        "description": description,
        "content": {PROBLEM_TYPE: {"schema": {"$ref": _REF + schema}, "example": example}},
    }
    if headers:
        answer["headers"] = headers
    return answer


def _string(description: str, **extra: Any) -> dict[str, Any]:
    return {"type": "string", "description": description, **extra}


def document() -> dict[str, Any]:
    schemas = _event_schemas()
    events = [{"$ref": _REF + _name(cls) + "Event"} for cls in INBOUND]
    schemas["CloudEvent"] = {
        "description": "A structured-mode CloudEvent of an inbound type (the same JSON as on partner.<ODS>.events)",
        "oneOf": events,
    }
    schemas["CloudEventBatch"] = {
        "description": "A batch: structured-mode events in one JSON array; all are taken, or none",
        "type": "array",
        "minItems": 1,
        "items": {"$ref": _REF + "CloudEvent"},
    }
    schemas["EventData"] = {
        "description": "Binary mode: the event's data alone; its attributes are in the ce-* headers",
        "anyOf": [{"$ref": _REF + _name(cls)} for cls in INBOUND],
    }
    schemas["Receipt"] = {
        "type": "object",
        "description": "One event's outcome: accepted now, or a resend of one accepted before (duplicate)",
        "required": ["id", "source", "type", "status"],
        "properties": {
            "id": _string("The event's id"),
            "source": _string("The event's source"),
            "type": _string("The event's type"),
            "status": {"type": "string", "enum": ["accepted", "duplicate"]},
        },
    }
    schemas["BatchReceipt"] = {
        "type": "object",
        "description": "A batch's outcome, one entry per event in the order sent",
        "required": ["ids", "accepted", "duplicates", "events"],
        "properties": {
            "ids": {"type": "array", "items": {"type": "string"}, "description": "The events' ids, in order"},
            "accepted": {"type": "integer", "minimum": 0, "description": "How many were new"},
            "duplicates": {"type": "integer", "minimum": 0, "description": "How many were resends"},
            "events": {"type": "array", "items": {"$ref": _REF + "Receipt"}},
        },
    }
    schemas["FieldProblem"] = {
        "type": "object",
        "required": ["field", "problem"],
        "properties": {
            "field": _string("Where: data.nhs_number, ce-time, [2].data.start_date (the third event of a batch)"),
            "problem": _string("What is wrong (the value itself is never repeated)"),
        },
    }
    schemas["Problem"] = {
        "type": "object",
        "description": "RFC 9457 problem details, the shape of every answer that is not 2xx",
        "required": ["type", "title", "status", "detail"],
        "properties": {
            "type": _string("The kind of problem", format="uri"),
            "title": _string("A short summary of the kind of problem"),
            "status": {"type": "integer", "description": "The HTTP status"},
            "detail": _string("What went wrong with this request"),
            "reason": _string(
                "For 400, 403 and 409: the reason a Kafka record would be dead-lettered with "
                "(malformed-json, invalid-envelope, invalid-payload, unknown-type, wrong-organisation, "
                "not-allowed, conflicting-duplicate)"
            ),
            "errors": {"type": "array", "items": {"$ref": _REF + "FieldProblem"}},
        },
    }
    schemas["ValidationProblem"] = {
        "allOf": [
            {"$ref": _REF + "Problem"},
            {"type": "object", "required": ["errors", "reason"]},
        ]
    }
    retry_after = {
        "Retry-After": {
            "description": "Seconds to wait before trying again",
            "required": True,
            "schema": {"type": "integer", "minimum": 1},
        }
    }
    parameters = [
        {
            "name": name,
            "in": "header",
            "required": False,
            "description": f"Binary mode (Content-Type application/json): {text}. Percent-encoded where not "
            "printable ASCII (CloudEvents HTTP binding 3.1.3.2)",
            "schema": {"type": "string"},
            **({"example": example} if example is not None else {}),
        }
        for name, (text, example) in BINARY_HEADERS.items()
    ]
    description = (
        "Send partner events over HTTP, the CloudEvents HTTP protocol binding in any of its three content modes. "
        "Each event is checked exactly as on Kafka (the contracts; only inbound types; a source naming the "
        "organisation the API key speaks for), then put on your topic partner.<ODS>.events, from which Homeward "
        "reads it like any other. A request is all or nothing: if any event of a batch is refused, none is taken "
        "and the answer names each bad one by its index. Ids are idempotency keys: an exact resend is answered "
        "200 and changes nothing; the same id with other content is answered 409. Each partner may send "
        "a limited number of requests a second (per ingress replica); past it, 429 with Retry-After."
    )
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Homeward ingress: the HTTP front door",
            "version": VERSION,
            "description": (
                "For partner organisations that cannot run a Kafka client. docs/partner-guide.md, "
                "'Sending over HTTP', has a curl example of each mode, how to get an API key and what each "
                "answer means."
            ),
        },
        "security": [{"bearerKey": []}, {"apiKeyHeader": []}],
        "paths": {
            "/events": {
                "post": {
                    "operationId": "postEvents",
                    "summary": "Send one event (structured or binary mode) or a batch",
                    "description": description,
                    "parameters": parameters,
                    "requestBody": {
                        "required": True,
                        "content": {
                            STRUCTURED_TYPE: {"schema": {"$ref": _REF + "CloudEvent"}, "example": EXAMPLE_EVENT},
                            BATCH_TYPE: {"schema": {"$ref": _REF + "CloudEventBatch"}, "example": [EXAMPLE_EVENT]},
                            JSON_TYPE: {"schema": {"$ref": _REF + "EventData"}, "example": EXAMPLE_DATA},
                        },
                    },
                    "responses": {
                        "200": {
                            "description": "An exact resend: every event was accepted before, with the same "
                            "content; nothing changed",
                            "content": {
                                "application/json": {
                                    "schema": {"oneOf": [{"$ref": _REF + "Receipt"}, {"$ref": _REF + "BatchReceipt"}]}
                                }
                            },
                        },
                        "202": {
                            "description": "Accepted: stored, and on its way to partner.<ODS>.events. A batch "
                            "answers with every event's id (resends among them marked duplicate)",
                            "content": {
                                "application/json": {
                                    "schema": {"oneOf": [{"$ref": _REF + "Receipt"}, {"$ref": _REF + "BatchReceipt"}]}
                                }
                            },
                        },
                        "400": _problem(
                            400,
                            ["invalid-event"],
                            "The event (or an event of the batch) does not meet the contracts; errors name each "
                            "field at fault",
                        ),
                        "401": _problem(
                            401,
                            ["unauthenticated"],
                            "No API key, or one that is not valid or was revoked",
                            {
                                "WWW-Authenticate": {
                                    "description": "Bearer",
                                    "required": True,
                                    "schema": {"type": "string"},
                                }
                            },
                        ),
                        "403": _problem(
                            403,
                            ["forbidden"],
                            "The source names another organisation than your key's, or the type is one only "
                            "Homeward's services publish",
                        ),
                        "409": _problem(
                            409,
                            ["conflicting-duplicate"],
                            "An event id was used before (or twice in this batch) for different content",
                        ),
                        "413": _problem(413, ["too-large"], "The request body is larger than the limit"),
                        "415": _problem(
                            415,
                            ["unsupported-media-type"],
                            f"The Content-Type is not {STRUCTURED_TYPE}, {BATCH_TYPE} or {JSON_TYPE}",
                        ),
                        "429": _problem(429, ["rate-limited"], "Too many requests from your organisation", retry_after),
                        "503": _problem(
                            503,
                            ["unavailable"],
                            "Homeward cannot take events right now (its database or Kafka is unavailable, or "
                            "your topic is not set up yet); try again later",
                            {**retry_after, "Retry-After": {**retry_after["Retry-After"], "required": False}},
                        ),
                    },
                }
            },
            "/openapi.json": {
                "get": {
                    "operationId": "getOpenApi",
                    "summary": "This document",
                    "security": [],
                    "responses": {
                        "200": {
                            "description": "The OpenAPI document",
                            "content": {"application/json": {"schema": {"type": "object"}}},
                        }
                    },
                }
            },
        },
        "components": {
            "securitySchemes": {
                "bearerKey": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "Your API key: Authorization: Bearer hwk_...",
                },
                "apiKeyHeader": {
                    "type": "apiKey",
                    "in": "header",
                    "name": "X-API-Key",
                    "description": "Your API key, for clients that cannot set Authorization",
                },
            },
            "schemas": schemas,
        },
    }


def rendered() -> str:
    return json.dumps(document(), indent=2, sort_keys=True) + "\n"


def stale() -> bool:
    path = committed_path()
    return path is None or not path.exists() or path.read_text() != rendered()


app = typer.Typer(add_completion=False)


@app.command(help=__doc__)
def refresh(
    write: Annotated[bool, typer.Option("--write", help="refresh contracts/openapi-ingress.json")] = False,
    check: Annotated[bool, typer.Option("--check", help="fail if the committed copy is stale (the default)")] = False,
) -> None:
    path = committed_path()
    if path is None:
        typer.echo("no source checkout here: contracts/openapi-ingress.json not found", err=True)
        raise typer.Exit(2)
    if write:
        path.write_text(rendered())
        return
    if stale():
        typer.echo(f"stale: {path}; run python -m homeward.ingress.entrypoints.openapi --write", err=True)
        raise typer.Exit(1)


def main(argv: list[str] | None = None) -> int:
    """Run with ``argv`` (default: the command line); returns the exit status."""
    try:
        app(args=argv, prog_name="python -m homeward.ingress.entrypoints.openapi")
    except SystemExit as done:
        return done.code if isinstance(done.code, int) else 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
