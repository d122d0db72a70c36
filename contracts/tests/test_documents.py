import json

from homeward.contracts import schema
from homeward.contracts.events import ALL_PAYLOADS


def test_committed_schemas_and_asyncapi_are_fresh() -> None:
    stale = schema.stale()
    assert not stale, f"regenerate with `python -m homeward.contracts.schema --write`: {stale}"


def test_asyncapi_lists_every_event_and_the_partner_channel() -> None:
    doc = json.loads(schema.ASYNCAPI_PATH.read_text())
    assert doc["asyncapi"] == "3.0.0"
    names = {m["name"] for m in doc["components"]["messages"].values()}
    assert names == {c.event_type() for c in ALL_PAYLOADS}
    assert doc["channels"]["partnerEvents"]["address"] == "partner.{ods}.events"


def test_each_event_schema_fixes_its_type() -> None:
    for cls in ALL_PAYLOADS:
        s = schema.event_schema(cls)
        assert s["properties"]["type"]["const"] == cls.event_type()
        assert "data" in s["required"]
