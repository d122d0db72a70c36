"""Issue 14's poison records, each as it was reproduced: sent on a partner topic of the real
Kafka to the real ingress (the only reader of partner topics) on the real PostgreSQL. Each is
dead-lettered once, with its reason, and the partner's next event still goes through: no
record can jam the partition or the outbox behind it."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
from collections import Counter
from typing import Any

from homeward.contracts import new_event, parse_kafka, partner_source
from homeward.contracts.events import PlacementMade
from homeward.kit.service import ServiceRuntime
from homeward.testing import KafkaProbe, new_ods, sample_placement

AT = dt.datetime(2026, 3, 2, 9, tzinfo=dt.UTC)
H = "homeward-dlq-"


def made(pid: str, commissioner: str, **extra: Any) -> PlacementMade:
    return sample_placement(pid, commissioner=commissioner).model_copy(update=extra)


async def test_each_reproduced_poison_record_is_dead_lettered_once_and_the_partition_goes_on(
    kafka: KafkaProbe, ingress: ServiceRuntime
) -> None:
    commissioner, other = new_ods("C"), new_ods("D")
    await kafka.create(partners=[commissioner, other])
    topic = kafka.topics.partner(commissioner)

    # 1. A 10,000-byte partner message of nested arrays (it raised RecursionError outside the
    #    per-event savepoint, and the batch was retried every 2 s forever).
    deep = b"[" * 5000 + b"]" * 5000
    # 2. A rejected record carrying a 0x00 byte in a header (the jsonb insert of its dead-letter
    #    headers failed, so the partition was stuck the same way).
    forged = new_event(made("PLC-NUL", other), source=partner_source(other), time=AT)
    nul_headers = [("x-trace", b"a\x00b"), ("bad\x00name", b"v")]
    # 3. A near-1 MB malformed message (dead-lettered whole into the outbox, Kafka refused it,
    #    and no later outbox row was ever published).
    huge = b'{"specversion": "1.0", "junk": "' + b"x" * 1_000_000
    # 4. A date at the edge (9999-12-31 gave handler-failed: OverflowError after three retries).
    edge = new_event(made("PLC-EDGE", commissioner), source=partner_source(commissioner), time=AT).to_dict()
    edge["data"]["start_date"] = "9999-12-31"
    good = new_event(made("PLC-GOOD", commissioner), source=partner_source(commissioner), time=AT)

    await kafka.send_raw(topic, deep, key=b"deep")
    await kafka.send_raw(topic, json.dumps(forged.to_dict()).encode(), key=b"nul", headers=nul_headers)
    await kafka.send_raw(topic, huge, key=b"huge")
    await kafka.send_raw(topic, json.dumps(edge).encode(), key=b"edge")
    await kafka.send(topic, good)

    accepted = await kafka.read(kafka.topics.internal("ingress"), until=lambda r: len(r) >= 1, timeout=60, settle=2)
    assert [parse_kafka(r.value, r.headers).id for r in accepted] == [good.id]

    dead = await kafka.read(kafka.topics.dlq("ingress"), until=lambda r: len(r) >= 4, timeout=60, settle=2)
    by_key = {r.key: r for r in dead}
    assert Counter(r.key for r in dead) == Counter([b"deep", b"nul", b"huge", b"edge"])  # once each
    reasons = {k: dict(r.headers)[H + "reason"].decode() for k, r in by_key.items()}
    assert reasons == {
        b"deep": "malformed-json",
        b"nul": "wrong-organisation",
        b"huge": "malformed-json",
        b"edge": "invalid-payload",
    }
    # The deep one is kept as it came; its error names the bound the contracts set on nesting.
    assert by_key[b"deep"].value == deep
    assert "nests deeper than" in dict(by_key[b"deep"].headers)[H + "error"].decode()
    # The NUL-bearing headers are stored base64-encoded, and named as such.
    nul = by_key[b"nul"].headers
    assert ("x-trace", base64.b64encode(b"a\x00b")) in nul
    assert dict(nul)[H + "base64-headers"]
    # The huge one is a stub naming its digest and origin, small enough for Kafka.
    stub = json.loads(by_key[b"huge"].value)
    assert stub["sha256"] == hashlib.sha256(huge).hexdigest() and stub["size"] == len(huge)
    assert (stub["topic"], stub["partition"]) == (topic, 0)
    assert dict(by_key[b"huge"].headers)[H + "truncated"] == b"value"
    # The edge date is refused as data, naming the field, with no retries.
    assert b"data.start_date" in dict(by_key[b"edge"].headers)[H + "error"]
