"""`homeward lag` against the real Kafka, in a topic namespace of its own."""

import asyncio
import json

from aiokafka import AIOKafkaConsumer, TopicPartition
from homeward.testing import KafkaProbe
from typer.testing import CliRunner

from homeward.cli.main import app
from homeward.cli.runner import expected_reads

runner = CliRunner()


async def _lag(kafka: KafkaProbe, *extra: str) -> dict:  # type: ignore[type-arg]
    ns = kafka.topics.namespace
    args = ["lag", "--bootstrap", kafka.infra.kafka_bootstrap, "--namespace", ns, "--group-prefix", ns, *extra]
    result = await asyncio.to_thread(runner.invoke, app, args)  # the CLI runs its own event loop
    assert result.exit_code == 0, result.output
    return json.loads(result.output) if "--json" in extra else {"text": result.output}


async def test_lag_counts_what_each_group_has_not_committed(kafka: KafkaProbe) -> None:
    ns = kafka.topics.namespace
    await kafka.create()
    # A group and a topic it must read, from the services' own wiring.
    reads = expected_reads([kafka.topics.internal("placements")], ns, ns)
    group = next(g for g, topics in sorted(reads.items()) if kafka.topics.internal("placements") in topics)
    topic = kafka.topics.internal("placements")
    producer = await kafka.producer()
    for partition, n in ((0, 3), (1, 2)):
        for _ in range(n):
            await producer.send_and_wait(topic, b"{}", key=b"k", partition=partition)

    doc = await _lag(kafka, "--json")
    mine = next(g for g in doc["groups"] if g["group"] == group)
    by_partition = {p["partition"]: p for p in mine["partitions"] if p["topic"] == topic}
    assert by_partition[0] == {"topic": topic, "partition": 0, "committed": None, "end": 3, "lag": 3}
    assert by_partition[1]["lag"] == 2 and by_partition[2]["lag"] == 0
    assert doc["total"] == sum(g["lag"] for g in doc["groups"]) >= 5

    # The group commits two of partition 0's three messages.
    consumer = AIOKafkaConsumer(group_id=group, enable_auto_commit=False, **kafka.infra.client_options())
    await consumer.start()
    try:
        tp = TopicPartition(topic, 0)
        consumer.assign([tp])
        await consumer.commit({tp: 2})
    finally:
        await consumer.stop()

    only = await _lag(kafka, "--json", "--group", group)
    assert [g["group"] for g in only["groups"]] == [group]
    p0 = next(p for p in only["groups"][0]["partitions"] if p["topic"] == topic and p["partition"] == 0)
    assert (p0["committed"], p0["lag"]) == (2, 1)
    assert only["total"] == only["groups"][0]["lag"] == mine["lag"] - 2

    text = (await _lag(kafka, "--group", group))["text"]
    assert "Partitions with lag" in text
    assert f"total lag: {only['total']}" in text


def test_lag_says_when_kafka_cannot_be_reached() -> None:
    result = runner.invoke(app, ["lag", "--bootstrap", "127.0.0.1:1"])
    assert result.exit_code == 2
    assert "cannot read consumer lag" in result.output
