"""Generate the published documents from the models: one JSON Schema per event type and an
AsyncAPI 3.0 document. ``python -m homeward.contracts.schema --write`` refreshes the committed
copies; ``--check`` fails when they are stale (CI runs the same check as a test).

The per-event JSON Schemas are self-contained (their own ``$defs``); in the AsyncAPI document
those definitions are shared ``components.schemas`` entries instead (see ``hoist_defs``), so the
document passes the official AsyncAPI parser (contracts/tests/test_asyncapi_parser.py)."""

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


_LOCAL_DEFS = "#/$defs/"
_COMPONENT_SCHEMAS = "#/components/schemas/"
# Keywords that make sense for a stand-alone schema file but not inside the AsyncAPI document:
# an embedded `$id` would change the base URI its `#/components/...` refs resolve against.
_STANDALONE_ONLY = ("$schema", "$id")


def _rewrite_refs(node: Any, where: str) -> Any:
    """Copy of ``node`` with ``#/$defs/X`` refs pointing at ``#/components/schemas/X``; any other
    document-local ref would mean something else once embedded, so it is an error."""
    if isinstance(node, list):
        return [_rewrite_refs(v, where) for v in node]
    if not isinstance(node, dict):
        return node
    out: dict[str, Any] = {}
    for k, v in node.items():
        if k == "$ref" and isinstance(v, str):
            if v.startswith(_LOCAL_DEFS):
                v = _COMPONENT_SCHEMAS + v[len(_LOCAL_DEFS) :]
            elif v.startswith("#"):
                raise ValueError(f"{where}: cannot embed the local reference {v!r} in the AsyncAPI document")
        out[k] = _rewrite_refs(v, where)
    return out


def hoist_defs(payload_schemas: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """``components.schemas`` for the AsyncAPI document from stand-alone JSON Schemas (keyed by
    component name): each schema's ``$defs`` become shared components, its refs are rewritten to
    them, and its ``$schema``/``$id`` are dropped. The stand-alone schemas are not modified.

    Raises ``ValueError`` when two schemas define the same name differently, or a definition's
    name is also a payload's component name, since the document could then hold only one."""
    out: dict[str, dict[str, Any]] = {}
    defined_by: dict[str, str] = {}
    for key, schema in payload_schemas.items():
        body = {k: v for k, v in schema.items() if k not in _STANDALONE_ONLY and k != "$defs"}
        out[key] = _rewrite_refs(body, key)
    for key, schema in payload_schemas.items():
        for name, definition in schema.get("$defs", {}).items():
            rewritten = _rewrite_refs(definition, f"{key}.$defs.{name}")
            if name in payload_schemas:
                raise ValueError(f"$defs name clash: {key} defines {name!r}, which is also a payload's component name")
            if name in defined_by and out[name] != rewritten:
                raise ValueError(
                    f"$defs name clash: {defined_by[name]} and {key} both define {name!r} with different "
                    "content; rename one of the types so each shared component has one meaning"
                )
            defined_by.setdefault(name, key)
            out[name] = rewritten
    return out


def asyncapi_document() -> dict[str, Any]:
    messages: dict[str, Any] = {}
    payloads: dict[str, Any] = {}
    for cls in ALL_PAYLOADS:
        key = f"{cls.name}V{cls.version}"
        payloads[key] = event_schema(cls)
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
        "components": {"messages": messages, "schemas": hoist_defs(payloads)},
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
