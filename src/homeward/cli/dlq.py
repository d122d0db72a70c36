"""`homeward dlq`: what each service refused, and why; and putting it back once fixed.

A dead letter is the original Kafka record (key, value, headers) with ``homeward-dlq-*``
headers added by the service that refused it. ``list`` reads those headers and never prints
the payload (it can hold an NHS number). ``replay`` re-produces the original record onto the
topic it came from, without the dead-letter headers. Replaying is safe: a service that had
handled the event already skips it (its inbox), and one that refused it tries again, which
is what you want after fixing reference data or a partner's mistake.
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import json
from dataclasses import asdict, dataclass
from typing import Annotated

import typer
from aiokafka import AIOKafkaConsumer, TopicPartition
from homeward.contracts.topics import SERVICES
from homeward.kit.consumer import DLQ_HEADER_PREFIX
from homeward.kit.kafka import client_options, make_producer
from homeward.kit.settings import KafkaSettings
from homeward.kit.topics import Topics
from rich.console import Console
from rich.markup import escape
from rich.table import Table

dlq_app = typer.Typer(help="Dead letters: what each service refused, why, and replaying them once fixed.")
console = Console()
err = Console(stderr=True)


@dataclass(frozen=True)
class DeadLetter:
    id: str  # "<partition>:<offset>" on the dead-letter topic
    at: str
    reason: str
    error: str
    topic: str  # where the record came from
    source: str  # "<partition>:<offset>" there
    key: str | None
    size: int


@dataclass(frozen=True)
class _Raw:
    partition: int
    offset: int
    key: bytes | None
    value: bytes
    headers: list[tuple[str, bytes]]


def _header(headers: list[tuple[str, bytes]], name: str) -> str:
    """The value Homeward wrote: its dead-letter headers come after the record's own, so a
    partner that sends its own ``homeward-dlq-*`` headers cannot change what is read here."""
    return next((v.decode(errors="replace") for k, v in reversed(headers) if k == name), "")


def _dead_letter(r: _Raw) -> DeadLetter:
    h = r.headers
    return DeadLetter(
        id=f"{r.partition}:{r.offset}",
        at=_header(h, DLQ_HEADER_PREFIX + "at"),
        reason=_header(h, DLQ_HEADER_PREFIX + "reason"),
        error=_header(h, DLQ_HEADER_PREFIX + "error"),
        topic=_header(h, DLQ_HEADER_PREFIX + "topic"),
        source=f"{_header(h, DLQ_HEADER_PREFIX + 'partition')}:{_header(h, DLQ_HEADER_PREFIX + 'offset')}",
        key=r.key.decode(errors="replace") if r.key is not None else None,
        size=len(r.value),
    )


async def _read_all(settings: KafkaSettings, topic: str) -> list[_Raw]:
    """Every record on the topic, from the beginning to the end offsets seen at the start."""
    consumer = AIOKafkaConsumer(enable_auto_commit=False, **client_options(settings))
    await consumer.start()
    try:
        partitions = consumer.partitions_for_topic(topic)
        if partitions is None:
            # First sight of the topic. aiokafka has no public call that refreshes the metadata
            # partitions_for_topic reads (consumer.topics() fills a separate copy).
            await consumer._client.force_metadata_update()
            partitions = consumer.partitions_for_topic(topic)
        if not partitions:
            raise LookupError(f"topic {topic} does not exist")
        tps = [TopicPartition(topic, p) for p in sorted(partitions)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        ends = await consumer.end_offsets(tps)
        out: list[_Raw] = []
        pending = {tp for tp in tps if ends[tp] > await consumer.position(tp)}
        while pending:
            batch = await consumer.getmany(*pending, timeout_ms=1000)
            for tp, records in batch.items():
                for rec in records:
                    if rec.offset < ends[tp]:
                        out.append(_Raw(tp.partition, rec.offset, rec.key, rec.value or b"", list(rec.headers)))
                if await consumer.position(tp) >= ends[tp]:
                    pending.discard(tp)
        return out
    finally:
        await consumer.stop()


def original_headers(headers: list[tuple[str, bytes]]) -> list[tuple[str, bytes]]:
    """The record's own headers, as they came: without Homeward's dead-letter headers, and with
    those the dead-letter writer had to store as base64 (a NUL byte, say) decoded again."""
    encoded = {int(n) for n in _header(headers, DLQ_HEADER_PREFIX + "base64-headers").split(",") if n.strip().isdigit()}
    out = []
    for position, (k, v) in enumerate(headers):
        if k.startswith(DLQ_HEADER_PREFIX):
            continue
        out.append((k, base64.b64decode(v) if position in encoded else v))
    return out


def _ops() -> KafkaSettings:
    """On call, the dead letters are read and replayed as ops (see homeward.contracts.access)."""
    from homeward.contracts.access import OPS

    from .connect import kafka_settings

    return kafka_settings(role=OPS)


def read_dead_letters(service: str, settings: KafkaSettings | None = None) -> list[DeadLetter]:
    settings = settings or _ops()
    raws = asyncio.run(_read_all(settings, Topics(settings.topic_namespace).dlq(service)))
    return sorted((_dead_letter(r) for r in raws), key=lambda d: (d.at, d.id))


async def _replay(settings: KafkaSettings, service: str, ids: set[str]) -> list[tuple[str, str]]:
    dlq = Topics(settings.topic_namespace).dlq(service)
    raws = {f"{r.partition}:{r.offset}": r for r in await _read_all(settings, dlq)}
    missing = sorted(ids - raws.keys())
    if missing:
        raise LookupError(f"no dead letter {', '.join(missing)} on the {service} dead-letter topic")
    producer = make_producer(settings, "cli-dlq-replay")
    await producer.start()
    done = []
    try:
        for i in sorted(ids, key=lambda x: tuple(int(n) for n in x.split(":"))):
            r = raws[i]
            topic = _header(r.headers, DLQ_HEADER_PREFIX + "topic")
            if not topic:
                raise LookupError(f"dead letter {i} does not say which topic it came from")
            truncated = _header(r.headers, DLQ_HEADER_PREFIX + "truncated")
            if truncated:
                raise LookupError(
                    f"dead letter {i} cannot be replayed: its {truncated} was too large to keep, and only its "
                    "digest was stored; ask the partner to send it again"
                )
            headers = original_headers(r.headers)
            await producer.send_and_wait(topic, value=r.value, key=r.key, headers=headers)
            done.append((i, topic))
    finally:
        await producer.stop()
    return done


def replay_dead_letters(service: str, ids: set[str], settings: KafkaSettings | None = None) -> list[tuple[str, str]]:
    return asyncio.run(_replay(settings or _ops(), service, ids))


def _service(value: str) -> str:
    if value not in SERVICES:
        raise typer.BadParameter(f"one of {', '.join(SERVICES)}")
    return value


ServiceArg = Annotated[str, typer.Argument(help=f"One of {', '.join(SERVICES)}", callback=_service)]


@dlq_app.command("list")
def list_(
    service: ServiceArg,
    reason: Annotated[str | None, typer.Option(help="Only this reason, e.g. invalid-payload")] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table")] = False,
) -> None:
    """What the service refused, newest last: when, why, and where it came from (never the payload)."""
    try:
        letters = [d for d in read_dead_letters(service) if reason is None or d.reason == reason]
    except LookupError as exc:
        err.print(f"[red]{exc}[/]")
        raise typer.Exit(1) from exc
    if json_out:
        console.print_json(json.dumps([asdict(d) for d in letters]))
        return
    table = Table(title=f"{len(letters)} dead letter(s) of {service}", title_justify="left")
    for col in ("id", "at", "reason", "from", "error"):
        table.add_column(col, overflow="fold")
    for d in letters:
        at = d.at[:19].replace("T", " ") if d.at else ""
        table.add_row(d.id, at, d.reason, f"{d.topic} {d.source}", escape(d.error))
    console.print(table)
    if letters:
        console.print(f"Replay after fixing the cause: homeward dlq replay {service} <id> [<id> ...]", style="dim")


@dlq_app.command()
def replay(
    service: ServiceArg,
    ids: Annotated[list[str], typer.Argument(help="Dead letter ids from `homeward dlq list` (partition:offset)")],
) -> None:
    """Put dead letters back on the topic they came from, without their dead-letter headers."""
    try:
        done = replay_dead_letters(service, set(ids))
    except LookupError as exc:
        err.print(f"[red]{exc}[/]")
        raise typer.Exit(1) from exc
    for i, topic in done:
        console.print(f"replayed {i} onto {topic}")
    console.print(f"{len(done)} replayed at {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M:%S} UTC")
