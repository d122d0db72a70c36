"""Property-based: Schemathesis generates requests from the served OpenAPI document, valid and
invalid, and sends them with a valid key to the running ingress. No answer may be a 5xx, and
every answer must be one the document describes (status, content type, headers, body)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest
import schemathesis
from front_door_support import http_address, issue_key, partner_topics
from homeward.ingress.entrypoints.openapi import EXAMPLE_DATA, EXAMPLE_EVENT
from homeward.testing import KafkaProbe
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    ignored_auth,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

pytestmark = pytest.mark.integration

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    ignored_auth,
]
# Not negative_data_rejection: the contracts' parser (the Kafka path's, which the front door
# must share) is laxer than their JSON Schema in places, e.g. a numeric `time` (Unix seconds)
# is taken. Such a request is answered like any valid one, which is not a fault of this API.
MAX_EXAMPLES = 50


@pytest.mark.timeout(900)  # a loaded machine makes Hypothesis's generation slow
@pytest.mark.filterwarnings("ignore::hypothesis.errors.HypothesisDeprecationWarning")  # inside Schemathesis
async def test_generated_requests_get_only_documented_answers_and_never_a_5xx(
    kafka: KafkaProbe, ingress_factory: Callable[..., Any]
) -> None:
    # The document's examples are RX1's; a generous rate so that the answers are not all 429.
    async with ingress_factory(http_rate_per_s=1000, http_rate_burst=1000) as runtime:
        await partner_topics(kafka, "RX1")
        base_url = await http_address(runtime)
        key = await issue_key(runtime, "RX1")
        async with httpx.AsyncClient(base_url=base_url) as http:
            document = (await http.get("/openapi.json")).json()
        schema = schemathesis.openapi.from_dict(document)
        operation = schema["/events"]["POST"]
        headers = {"Authorization": f"Bearer {key}"}
        statuses: list[int] = []

        def call(case: Any) -> None:
            response = case.call_and_validate(base_url=base_url, headers=headers, checks=CHECKS, timeout=30)
            statuses.append(response.status_code)

        def explicit() -> None:
            """The document's own examples, in each mode: accepted, then resent."""
            binary = {
                "Content-Type": "application/json",
                "ce-specversion": "1.0",
                "ce-id": "rx1-binary-1",
                "ce-source": "urn:nhs:ods:RX1",
                "ce-type": "homeward.PlacementMade.v1",
                "ce-time": "2026-01-05T10:00:00Z",
            }
            for _ in range(2):
                call(operation.Case(media_type="application/cloudevents+json", body=EXAMPLE_EVENT))
                call(operation.Case(media_type="application/json", body=EXAMPLE_DATA, headers=binary))
                batch = [EXAMPLE_EVENT | {"id": f"rx1-batch-{i}"} for i in range(3)]
                call(operation.Case(media_type="application/cloudevents-batch+json", body=batch))
            changed = json.loads(json.dumps(EXAMPLE_EVENT))
            changed["data"]["daily_rate_pence"] += 1
            call(operation.Case(media_type="application/cloudevents+json", body=changed))

        @settings(
            max_examples=MAX_EXAMPLES,
            deadline=None,
            database=None,
            derandomize=True,
            phases=[Phase.generate],
            suppress_health_check=list(HealthCheck),
        )
        @given(
            case=st.one_of(
                operation.as_strategy(generation_mode=GenerationMode.POSITIVE),
                operation.as_strategy(generation_mode=GenerationMode.NEGATIVE),
            )
        )
        def generated(case: Any) -> None:
            call(case)

        def run() -> None:
            explicit()
            generated()

        # Schemathesis calls synchronously; the ingress runs on this event loop meanwhile.
        await asyncio.to_thread(run)
    assert statuses[:7] == [202, 202, 202, 200, 200, 200, 409]
    assert len(statuses) > MAX_EXAMPLES // 2 and max(statuses) < 500
