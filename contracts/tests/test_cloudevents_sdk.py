"""Interoperability with the official CloudEvents Python SDK."""

import datetime as dt
import json

from cloudevents.core.bindings.kafka import KafkaMessage, from_kafka_event, to_binary_event, to_structured_event
from cloudevents.core.v1.event import CloudEvent
from homeward.contracts import new_event, parse_kafka, partner_source
from homeward.contracts.events import PlacementMade

from .factories import placement_made


def _ours():  # type: ignore[no-untyped-def]
    payload = PlacementMade.model_validate_json(json.dumps(placement_made()))
    return new_event(payload, source=partner_source("QWU"), correlationid="corr-1")


def test_our_structured_message_parses_with_the_official_sdk() -> None:
    event = _ours()
    key, value, headers = event.to_kafka()
    parsed = from_kafka_event(KafkaMessage(headers=dict(headers), key=key, value=value))
    assert parsed.get_id() == event.id
    assert parsed.get_type() == "homeward.PlacementMade.v1"
    assert parsed.get_source() == "urn:nhs:ods:QWU"
    assert parsed.get_extension("correlationid") == "corr-1"
    assert parsed.get_data()["placement_id"] == "PLC-QWU-000001"


def _sdk_event() -> CloudEvent:
    return CloudEvent(
        attributes={
            "id": "sdk-1",
            "source": "urn:nhs:ods:QWU/epr",
            "type": "homeward.PlacementMade.v1",
            "specversion": "1.0",
            "time": dt.datetime(2026, 1, 5, 10, tzinfo=dt.UTC),
            "datacontenttype": "application/json",
            "subject": "PLC-QWU-000001",
        },
        data=placement_made(),
    )


def test_sdk_binary_mode_message_is_read() -> None:
    msg = to_binary_event(_sdk_event())
    event = parse_kafka(msg.value, list(msg.headers.items()))
    assert event.id == "sdk-1"
    assert event.organisation == "QWU"
    assert isinstance(event.data, PlacementMade)


def test_sdk_structured_mode_message_is_read() -> None:
    msg = to_structured_event(_sdk_event())
    event = parse_kafka(msg.value, list(msg.headers.items()))
    assert event.id == "sdk-1"
    assert event.data.start_date == dt.date(2026, 1, 5)
