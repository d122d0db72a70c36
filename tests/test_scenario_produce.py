"""The scenario's producer against the real Kafka: every event arrives, in order per key."""

from collections import defaultdict

from homeward.contracts import parse_kafka
from homeward.testing import KafkaProbe

from homeward.scenario import ScenarioConfig, generate
from homeward.scenario.produce import produce


async def test_produce_delivers_every_event_in_order_per_key(kafka: KafkaProbe) -> None:
    sc = generate(ScenarioConfig(placements=40, seed=3))
    await kafka.create(partners=sc.partners)
    items = [(kafka.topics.partner(p), e) for p, e in sc.events]
    acked: list[int] = []

    # A small window, so the producer waits for acknowledgements many times on the way.
    result = await produce(kafka.settings, items, record_times=True, window=64, on_progress=acked.append)

    assert result.count == len(items) == sum(acked)
    assert result.timestamps is not None and all(t > 0 for t in result.timestamps)
    sent: dict[tuple[str, bytes], list[str]] = defaultdict(list)
    for topic, event in items:
        sent[(topic, event.key.encode())].append(event.id)
    for partner in sc.partners:
        topic = kafka.topics.partner(partner)
        expected = sum(1 for t, _ in items if t == topic)
        records = await kafka.read(topic, until=lambda r, n=expected: len(r) >= n)
        got: dict[tuple[str, bytes], list[str]] = defaultdict(list)
        for r in sorted(records, key=lambda r: (r.partition, r.offset)):
            got[(topic, r.key)].append(parse_kafka(r.value, r.headers).id)
        assert got == {k: v for k, v in sent.items() if k[0] == topic}
