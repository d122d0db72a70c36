"""Generate the published documents from the models: one JSON Schema per event type and an
AsyncAPI 3.0 document. ``python -m homeward.contracts.schema --write`` refreshes the committed
copies; ``--check`` fails when they are stale (CI runs the same check as a test)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from .envelope import STRUCTURED_CONTENT_TYPE, Attributes, dataschema_for
from .events import ALL_PAYLOADS, INBOUND, Payload
from .topics import INGRESS, PARTNER_TOPIC_PATTERN, SERVICES, dead_letter_topic, internal_topic

CONTRACTS_ROOT = Path(__file__).resolve().parents[3]
SCHEMA_DIR = CONTRACTS_ROOT / "schemas"
ASYNCAPI_PATH = CONTRACTS_ROOT / "asyncapi.json"
CONTRACTS_VERSION = "1.0.0"


def event_schema(cls: type[Payload]) -> dict[str, Any]:
    """JSON Schema of a whole structured-mode CloudEvent carrying ``cls`` as data."""
    attrs = Attributes.model_json_schema()
    data = cls.model_json_schema(mode="validation")
    defs = data.pop("$defs", {})
    props = dict(attrs["properties"])
    props["specversion"] = {"const": "1.0", "description": props["specversion"].get("description", "")}
    props["type"] = {"const": cls.event_type(), "description": "Event type, versioned"}
    props["data"] = data
    schema: dict[str, Any] = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": dataschema_for(cls),
        "title": cls.event_type(),
        "description": (cls.__doc__ or cls.name).strip(),
        "type": "object",
        "required": ["specversion", "id", "source", "type", "time", "data"],
        "properties": props,
    }
    if defs:
        schema["$defs"] = defs
    return schema


def asyncapi_document() -> dict[str, Any]:
    messages: dict[str, Any] = {}
    schemas: dict[str, Any] = {}
    for cls in ALL_PAYLOADS:
        key = f"{cls.name}V{cls.version}"
        schemas[key] = event_schema(cls)
        messages[key] = {
            "name": cls.event_type(),
            "title": cls.name,
            "summary": (cls.__doc__ or cls.name).strip().splitlines()[0],
            "contentType": STRUCTURED_CONTENT_TYPE,
            "payload": {"$ref": f"#/components/schemas/{key}"},
            "bindings": {"kafka": {"key": {"type": "string", "description": f"the {cls.key_field}"}}},
        }

    def refs(classes: list[type[Payload]]) -> dict[str, Any]:
        return {f"{c.name}V{c.version}": {"$ref": f"#/components/messages/{c.name}V{c.version}"} for c in classes}

    channels: dict[str, Any] = {
        "partnerEvents": {
            "address": "partner.{ods}.events",
            "title": "A partner organisation's own topic",
            "description": (
                "Each partner writes only to its own topic; the event source (urn:nhs:ods:<ODS>) must name "
                f"the same organisation. Topic pattern: {PARTNER_TOPIC_PATTERN}"
            ),
            "parameters": {"ods": {"description": "The partner's ODS code, uppercase"}},
            "messages": refs(list(INBOUND)),
        }
    }
    operations: dict[str, Any] = {
        "partnerSends": {
            "action": "send",
            "channel": {"$ref": "#/channels/partnerEvents"},
            "summary": "A partner's own systems publish inbound events",
        }
    }
    for service in SERVICES:
        cid = f"{service}Facts"
        if service == INGRESS:
            channels[cid] = {
                "address": internal_topic(service),
                "description": (
                    "Partner events the ingress accepted (validated, authorised, de-duplicated once), "
                    "republished with the partner's source and id and keyed by the entity they are about; "
                    "referrals, placements and budget read this instead of the partner topics"
                ),
                "messages": refs(list(INBOUND)),
            }
        else:
            published = [c for c in ALL_PAYLOADS if service in c.producers]
            channels[cid] = {
                "address": internal_topic(service),
                "description": f"Facts published by the {service} service through its outbox",
                "messages": refs(published),
            }
        operations[f"{service}Publishes"] = {"action": "send", "channel": {"$ref": f"#/channels/{cid}"}}
        channels[f"{service}DeadLetters"] = {
            "address": dead_letter_topic(service),
            "description": (
                f"Messages the {service} service could not process, byte for byte, with headers "
                "homeward-dlq-reason, homeward-dlq-error, homeward-dlq-topic, homeward-dlq-partition, "
                "homeward-dlq-offset"
            ),
        }
    return {
        "asyncapi": "3.0.0",
        "info": {
            "title": "Homeward event contracts",
            "version": CONTRACTS_VERSION,
            "description": "CloudEvents 1.0 in Kafka structured mode (binary mode also read).",
        },
        "defaultContentType": STRUCTURED_CONTENT_TYPE,
        "channels": channels,
        "operations": operations,
        "components": {"messages": messages, "schemas": schemas},
    }


def _dump(obj: Any) -> str:
    return json.dumps(obj, indent=2, sort_keys=True) + "\n"


def rendered() -> dict[Path, str]:
    files = {SCHEMA_DIR / f"{cls.event_type()}.json": _dump(event_schema(cls)) for cls in ALL_PAYLOADS}
    files[ASYNCAPI_PATH] = _dump(asyncapi_document())
    return files


def stale() -> list[Path]:
    expected = rendered()
    out = [p for p, text in expected.items() if not p.exists() or p.read_text() != text]
    if SCHEMA_DIR.exists():
        out += [p for p in SCHEMA_DIR.glob("*.json") if p not in expected]
    return out


def write() -> None:
    SCHEMA_DIR.mkdir(parents=True, exist_ok=True)
    expected = rendered()
    for p in SCHEMA_DIR.glob("*.json"):
        if p not in expected:
            p.unlink()
    for path, text in expected.items():
        path.write_text(text)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--write", action="store_true")
    parser.add_argument("--check", action="store_true")
    args = parser.parse_args(argv)
    if args.write:
        write()
        return 0
    bad = stale()
    for p in bad:
        print(f"stale: {p}", file=sys.stderr)
    return 1 if bad else 0


if __name__ == "__main__":
    raise SystemExit(main())
