"""How the payload schemas' ``$defs`` become the AsyncAPI document's shared components."""

from __future__ import annotations

import json
from typing import Any

import pytest
from homeward.contracts import schema
from homeward.contracts.events import ALL_PAYLOADS


def _refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        return [v for k, v in node.items() if k == "$ref" and isinstance(v, str)] + [
            r for v in node.values() for r in _refs(v)
        ]
    if isinstance(node, list):
        return [r for v in node for r in _refs(v)]
    return []


def test_every_local_ref_in_the_document_points_at_an_existing_component() -> None:
    doc = json.loads(schema.ASYNCAPI_PATH.read_text())
    for ref in _refs(doc):
        assert ref.startswith("#/") and not ref.startswith("#/$defs/"), ref
        node: Any = doc
        for part in ref[2:].split("/"):
            node = node[part]


def test_the_ingress_channels_are_described() -> None:
    channels = json.loads(schema.ASYNCAPI_PATH.read_text())["channels"]
    assert channels["ingressFacts"]["address"] == "homeward.ingress.v1"
    assert channels["ingressFacts"]["messages"].keys() == channels["partnerEvents"]["messages"].keys()
    assert channels["ingressDeadLetters"]["address"] == "homeward.dlq.ingress"


def test_every_payload_definition_is_a_shared_component() -> None:
    components = json.loads(schema.ASYNCAPI_PATH.read_text())["components"]["schemas"]
    for cls in ALL_PAYLOADS:
        standalone = schema.event_schema(cls)
        embedded = components[f"{cls.name}V{cls.version}"]
        assert "$defs" not in embedded and "$id" not in embedded and "$schema" not in embedded
        assert set(standalone.get("$defs", {})) <= set(components)


def test_standalone_schemas_keep_their_own_defs() -> None:
    for path in schema.SCHEMA_DIR.glob("*.json"):
        doc = json.loads(path.read_text())
        for ref in _refs(doc):
            assert ref.startswith("#/$defs/"), (path.name, ref)
            assert ref.removeprefix("#/$defs/") in doc["$defs"], (path.name, ref)


def _payload(defs: dict[str, Any]) -> dict[str, Any]:
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": "https://example.test/a.json",
        "properties": {name: {"$ref": f"#/$defs/{name}"} for name in defs},
        "$defs": defs,
    }


def test_hoisting_rewrites_refs_and_shares_identical_definitions() -> None:
    colour = {"enum": ["red", "blue"], "type": "string"}
    pair = {"items": {"$ref": "#/$defs/Colour"}, "type": "array"}
    src = {"AV1": _payload({"Colour": colour, "Pair": pair}), "BV1": _payload({"Colour": dict(colour)})}
    out = schema.hoist_defs(src)
    assert set(out) == {"AV1", "BV1", "Colour", "Pair"}
    assert out["AV1"]["properties"]["Colour"] == {"$ref": "#/components/schemas/Colour"}
    assert out["Pair"]["items"] == {"$ref": "#/components/schemas/Colour"}
    assert "$id" not in out["AV1"] and "$schema" not in out["AV1"]
    assert src["AV1"]["properties"]["Colour"] == {"$ref": "#/$defs/Colour"}, "the input must not be modified"


def test_hoisting_fails_loudly_on_a_name_clash() -> None:
    src = {
        "AV1": _payload({"Colour": {"enum": ["red"], "type": "string"}}),
        "BV1": _payload({"Colour": {"enum": ["green"], "type": "string"}}),
    }
    with pytest.raises(ValueError, match=r"AV1 and BV1 both define 'Colour' with different content"):
        schema.hoist_defs(src)


def test_hoisting_fails_when_a_definition_shadows_a_payload() -> None:
    with pytest.raises(ValueError, match=r"also a payload's component name"):
        schema.hoist_defs({"AV1": _payload({"BV1": {"type": "string"}}), "BV1": _payload({})})


def test_hoisting_refuses_local_refs_it_cannot_embed() -> None:
    with pytest.raises(ValueError, match=r"cannot embed the local reference '#/properties/x'"):
        schema.hoist_defs({"AV1": {"properties": {"y": {"$ref": "#/properties/x"}}}})
