"""Topic creation against the real broker: what exists is left alone, a refusal is an error."""

import uuid

import pytest
from homeward.contracts.topics import TopicSpec
from homeward.kit.kafka import TopicsRefused, ensure_topics, make_admin
from homeward.testing import Infra


async def _names(infra: Infra) -> set[str]:
    admin = make_admin(infra.kafka_settings(""))
    await admin.start()
    try:
        return set(await admin.list_topics())
    finally:
        await admin.close()


async def test_creates_only_what_is_missing(infra: Infra) -> None:
    specs = [TopicSpec(f"kit.topics.{uuid.uuid4().hex[:8]}.{n}", 2) for n in range(2)]
    settings = infra.kafka_settings("")
    assert await ensure_topics(settings, specs[:1]) == [specs[0].name]
    assert await ensure_topics(settings, specs) == [specs[1].name]
    assert await ensure_topics(settings, specs) == []
    assert {s.name for s in specs} <= await _names(infra)


async def test_a_refused_topic_is_an_error_naming_it(infra: Infra) -> None:
    spec = TopicSpec(f"kit.topics.{uuid.uuid4().hex[:8]}.refused", 1)
    with pytest.raises(TopicsRefused, match=spec.name):
        await ensure_topics(infra.kafka_settings(""), [spec], replication=3)  # one broker
    assert spec.name not in await _names(infra)
