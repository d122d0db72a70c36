"""The ingress on the real Kafka and PostgreSQL: partner events are validated, authorised and
de-duplicated once, bad ones are dead-lettered once with their reason, and accepted ones are
republished on homeward.ingress.v1 with the partner's source and id, keyed by their entity."""

from __future__ import annotations

import datetime as dt
import json
from collections import Counter
from typing import Any

import pytest
from homeward.contracts import Event, new_event, parse_kafka, partner_source, service_source
from homeward.contracts.access import PRINCIPAL_EXTENSION, partner_principal
from homeward.contracts.events import INBOUND, BudgetAllocated, LocalCapacityChanged, PlacementMade
from homeward.contracts.identifiers import nhs_numbers_in_test_range
from homeward.ingress.handlers import HANDLERS
from homeward.kit.consumer import Rejected, authorise
from homeward.kit.service import ServiceRuntime
from homeward.testing import KafkaProbe, new_ods

NHS = nhs_numbers_in_test_range(1, start=7)[0]
AT = dt.datetime(2026, 3, 2, 9, tzinfo=dt.UTC)


def made(pid: str, commissioner: str, **extra: Any) -> PlacementMade:
    data = {
        "placement_id": pid,
        "nhs_number": NHS,
        "commissioner": commissioner,
        "provider": "8HA03",
        "provider_site": "8HA0301",
        "bed_type": "picu",
        "cohort": "mental_health",
        "age_band": "adult",
        "legal_status": "mha_s3",
        "programme": "mental_health",
        "start_date": "2026-01-05",
        "daily_rate_pence": 54500,
        **extra,
    }
    return PlacementMade.model_validate_json(json.dumps(data))


def allocated(commissioner: str, amount: int) -> BudgetAllocated:
    return BudgetAllocated.model_validate_json(
        json.dumps(
            {
                "commissioner": commissioner,
                "allocation_id": "ALLOC-1",
                "financial_year": "2026-27",
                "programme": "mental_health",
                "amount_pence": amount,
                "source": "nhs_england",
            }
        )
    )


def test_every_inbound_type_is_accepted_and_nothing_else() -> None:
    assert set(HANDLERS) == set(INBOUND)


def test_the_ingress_topic_carries_only_partner_events() -> None:
    partner = new_event(made("PLC-1", "05A"), source=partner_source("05A"), time=AT)
    authorise("homeward.ingress.v1", partner)  # accepted partner events pass
    forged = new_event(made("PLC-1", "05A"), source=service_source("placements"), time=AT)
    with pytest.raises(Rejected) as refused:
        authorise("homeward.ingress.v1", forged)
    assert refused.value.reason == "wrong-source"
    capacity = LocalCapacityChanged.model_validate_json(
        json.dumps({"area": "QWU", "bed_type": "picu", "available_beds": 1, "as_of": "2026-03-01T07:00:00Z"})
    )
    internal = new_event(capacity, source=partner_source("05A"), time=AT)  # a service's fact, "from" a partner
    with pytest.raises(Rejected):
        authorise("homeward.ingress.v1", internal)


def _reasons(records: list[Any]) -> Counter[str]:
    return Counter(dict(r.headers)["homeward-dlq-reason"].decode() for r in records)


@pytest.mark.integration
async def test_partner_events_are_checked_once_and_republished_with_their_identity(
    kafka: KafkaProbe, ingress: ServiceRuntime
) -> None:
    commissioner, other = new_ods("C"), new_ods("D")
    await kafka.create(partners=[commissioner, other])
    mine = kafka.topics.partner(commissioner)

    first = new_event(made("PLC-1", commissioner), source=partner_source(commissioner), id="1", time=AT)
    await kafka.send(mine, first)
    await kafka.send(mine, first)  # a resend: accepted once
    # Another partner may use the same id: ids are unique per source, so this is another event.
    same_id = new_event(made("PLC-2", other), source=partner_source(other), id="1", time=AT)
    await kafka.send(kafka.topics.partner(other), same_id)
    # Binary content mode (attributes in ce_ headers) is read too.
    binary = new_event(allocated(commissioner, 1_000_00), source=partner_source(commissioner), time=AT)
    attrs = binary.attributes()
    await kafka.send_raw(
        mine,
        json.dumps(binary.data.model_dump(mode="json")).encode(),
        key=b"anything",
        headers=[(f"ce_{k}", str(v).encode()) for k, v in attrs.items() if k != "datacontenttype"]
        + [("content-type", b"application/json"), ("homeward-dlq-topic", b"partner.05A.events")],
    )
    # Bad input, each refused once with its reason; the valid event after them still goes through.
    reused = first.to_dict()
    reused["data"]["daily_rate_pence"] += 1
    bad_nhs = first.to_dict() | {"id": "bad-nhs"}
    bad_nhs["data"] = {**bad_nhs["data"], "nhs_number": NHS[:-1] + str((int(NHS[-1]) + 1) % 10)}
    for value in (
        b'{"specversion": "1.0", "id": ',
        json.dumps(reused).encode(),
        json.dumps(bad_nhs).encode(),
        json.dumps(first.to_dict() | {"id": "odd", "type": "homeward.PlacementTeleported.v1"}).encode(),
        json.dumps(first.to_dict() | {"id": "forged", "source": partner_source(other)}).encode(),
    ):
        await kafka.send_raw(mine, value, key=b"PLC-1")
    last = new_event(made("PLC-3", commissioner), source=partner_source(commissioner), time=AT)
    await kafka.send(mine, last)

    accepted_topic = kafka.topics.internal("ingress")
    records = await kafka.read(accepted_topic, until=lambda r: len(r) >= 4, timeout=60, settle=2)
    events = [(r, parse_kafka(r.value, r.headers)) for r in records]
    assert sorted((e.source, e.id) for _, e in events) == sorted(
        [
            (partner_source(commissioner), "1"),
            (partner_source(other), "1"),
            (binary.source, binary.id),
            (last.source, last.id),
        ]
    )
    for record, event in events:
        assert record.key == event.data.key().encode()  # keyed by the entity, whatever the partner used
        # Only Homeward's own headers: nothing a partner put on its record is carried inside.
        # The type header is the ingress's, named from the event it validated.
        assert [k for k, _ in record.headers] == ["content-type", "homeward-type"]
        assert dict(record.headers)["homeward-type"] == event.type.encode()
    by_id = {(e.source, e.id): e for _, e in events}
    # The partner's event as it sent it, plus the principal the ingress names (docs/authority.md).
    principal = f"User:{partner_principal(commissioner, kafka.topics.namespace)}"
    assert by_id[(first.source, "1")].to_dict() == first.to_dict() | {PRINCIPAL_EXTENSION: principal}
    assert by_id[(binary.source, binary.id)].data == binary.data

    dead = await kafka.read(kafka.topics.dlq("ingress"), until=lambda r: len(r) >= 5, timeout=60, settle=2)
    assert _reasons(dead) == Counter(
        ["malformed-json", "conflicting-duplicate", "invalid-payload", "unknown-type", "wrong-organisation"]
    )
    for r in dead:
        assert NHS.encode() not in dict(r.headers)["homeward-dlq-error"]


@pytest.mark.integration
async def test_a_partner_may_not_send_what_homeward_services_publish(
    kafka: KafkaProbe, ingress: ServiceRuntime
) -> None:
    commissioner = new_ods("C")
    await kafka.create(partners=[commissioner])
    forged: Event[Any] = new_event(allocated(commissioner, 5), source=partner_source(commissioner), time=AT)
    as_service = forged.to_dict() | {"type": "homeward.BudgetThresholdBreached.v1", "data": {}}
    await kafka.send_raw(kafka.topics.partner(commissioner), json.dumps(as_service).encode())
    await kafka.send(kafka.topics.partner(commissioner), forged)
    dead = await kafka.read(kafka.topics.dlq("ingress"), until=lambda r: len(r) >= 1, timeout=60)
    assert set(_reasons(dead)) <= {"invalid-payload", "not-allowed"} and len(dead) == 1
    accepted = await kafka.read(kafka.topics.internal("ingress"), until=lambda r: len(r) >= 1, timeout=60)
    assert [parse_kafka(r.value, r.headers).id for r in accepted] == [forged.id]
