"""`homeward dlq`: what each service refused, and why; and putting it back once fixed.

A dead letter is the original Kafka record (key, value, headers) with ``homeward-dlq-*``
headers added by the service that refused it, the last of them ``homeward-dlq-mac``: an HMAC
over the others and the record's digests (``homeward.kit.crypto``), with the key of
``HOMEWARD_DLQ_HMAC_KEY``. Only a dead letter whose MAC verifies is believed:

* ``list`` shows, for each dead letter, its id, age, reason and origin (the topic, partition
  and offset it was read from), nothing of the record itself: not its key, value or headers
  (they can hold an NHS number). One whose MAC does not verify is listed as ``unverified``,
  with none of what its headers claim.
* ``show`` prints one dead letter whole, the record included, for an operator who must see it
  (the same access as reading the dead-letter topic).
* ``replay`` re-produces a verified record onto the topic it was read from, without the
  dead-letter headers; it refuses an unverified one. Replaying is safe: a service that had
  handled the event already skips it (its inbox), and one that refused it tries again, which is
  what you want after fixing reference data or a partner's mistake.
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
from homeward.kit.consumer import DLQ_HEADER_PREFIX, DLQ_MAC_HEADER
from homeward.kit.crypto import KeyProblem, verify_dead_letter_mac
from homeward.kit.kafka import client_options, make_producer
from homeward.kit.settings import CommonSettings, KafkaSettings
from homeward.kit.topics import Topics
from rich.console import Console
from rich.markup import escape
from rich.table import Table

dlq_app = typer.Typer(help="Dead letters: what each service refused, why, and replaying them once fixed.")
console = Console()
err = Console(stderr=True)

UNVERIFIED = "unverified"


@dataclass(frozen=True)
class DeadLetter:
    """What ``list`` shows: no key, value or header of the record itself."""

    id: str  # "<partition>:<offset>" on the dead-letter topic
    verified: bool
    at: str  # when the service refused it (unverified: when Kafka received the dead letter)
    age: str
    reason: str
    service: str
    topic: str  # where the record came from (verified only)
    source: str  # "<partition>:<offset>" there


@dataclass(frozen=True)
class _Raw:
    partition: int
    offset: int
    key: bytes | None
    value: bytes
    headers: list[tuple[str, bytes]]
    timestamp: int | None = None


@dataclass(frozen=True)
class _Checked:
    raw: _Raw
    verified: bool
    metadata: dict[str, str]  # the homeward-dlq-* headers, name without the prefix (verified only)
    own_headers: list[tuple[str, bytes]]  # the record's own headers, as stored


def dead_letter_keys() -> list[bytes]:
    """The keys that may have signed dead letters: from the environment, else the native stack's."""
    common = CommonSettings()
    if common.patient_ref_key is None and common.dlq_hmac_key is None:
        try:
            from homeward.devstack.secrets import read_secrets

            found = {k.removeprefix("HOMEWARD_").lower(): v for k, v in read_secrets().items()}
            common = CommonSettings.model_validate(found)
        except Exception:
            pass
    try:
        return common.dead_letter_keys()
    except KeyProblem as exc:
        raise LookupError(
            f"cannot check dead letters: {exc}. Use the services' keys (on the native stack: "
            'eval "$(homeward-stack env)")'
        ) from None


def check(r: _Raw, keys: list[bytes]) -> _Checked:
    """Split Homeward's dead-letter headers from the record's own and verify their MAC. The
    metadata is the block that ends with the MAC (the service appends it after the record's
    own headers); nothing in it is believed unless the MAC verifies."""
    macs = [i for i, (k, _) in enumerate(r.headers) if k == DLQ_MAC_HEADER]
    own = [(k, v) for k, v in r.headers if not k.startswith(DLQ_HEADER_PREFIX)]
    if not macs:
        return _Checked(r, False, {}, own)
    end = macs[-1]
    start = end
    while start > 0 and r.headers[start - 1][0].startswith(DLQ_HEADER_PREFIX):
        start -= 1
    metadata = r.headers[start:end]
    own = r.headers[:start] + r.headers[end + 1 :]
    ok = not any(k.startswith(DLQ_HEADER_PREFIX) for k, _ in own) and verify_dead_letter_mac(
        keys,
        r.headers[end][1].decode(errors="replace"),
        metadata,
        record_key=r.key,
        value=r.value,
        headers=own,
    )
    if not ok:
        return _Checked(r, False, {}, [(k, v) for k, v in r.headers if not k.startswith(DLQ_HEADER_PREFIX)])
    meta = {k.removeprefix(DLQ_HEADER_PREFIX): v.decode(errors="replace") for k, v in metadata}
    return _Checked(r, True, meta, own)


def _age(at: dt.datetime | None, now: dt.datetime) -> str:
    if at is None:
        return ""
    seconds = max(0, int((now - at).total_seconds()))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def _when(c: _Checked) -> dt.datetime | None:
    try:
        if c.verified:
            return dt.datetime.fromisoformat(c.metadata["at"])
        if c.raw.timestamp is not None:
            return dt.datetime.fromtimestamp(c.raw.timestamp / 1000, dt.UTC)
    except (KeyError, ValueError):
        pass
    return None


def _dead_letter(c: _Checked, now: dt.datetime) -> DeadLetter:
    when = _when(c)
    m = c.metadata
    return DeadLetter(
        id=f"{c.raw.partition}:{c.raw.offset}",
        verified=c.verified,
        at=when.isoformat() if when else "",
        age=_age(when, now),
        reason=m.get("reason", "") if c.verified else UNVERIFIED,
        service=m.get("service", ""),
        topic=m.get("topic", ""),
        source=f"{m['partition']}:{m['offset']}" if m.get("partition") else "",
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
                        out.append(
                            _Raw(tp.partition, rec.offset, rec.key, rec.value or b"", list(rec.headers), rec.timestamp)
                        )
                if await consumer.position(tp) >= ends[tp]:
                    pending.discard(tp)
        return out
    finally:
        await consumer.stop()


def original_headers(c: _Checked) -> list[tuple[str, bytes]]:
    """The record's own headers, as they came: those the dead-letter writer had to store as
    base64 (a NUL byte, say) decoded again."""
    encoded = {int(n) for n in c.metadata.get("base64-headers", "").split(",") if n.strip().isdigit()}
    return [(k, base64.b64decode(v) if i in encoded else v) for i, (k, v) in enumerate(c.own_headers)]


async def _checked(settings: KafkaSettings, service: str) -> list[_Checked]:
    keys = dead_letter_keys()
    raws = await _read_all(settings, Topics(settings.topic_namespace).dlq(service))
    return [check(r, keys) for r in raws]


def _ops() -> KafkaSettings:
    """On call, the dead letters are read and replayed as ops (see homeward.contracts.access)."""
    from homeward.contracts.access import OPS

    from .connect import kafka_settings

    return kafka_settings(role=OPS)


def read_dead_letters(service: str, settings: KafkaSettings | None = None) -> list[DeadLetter]:
    checked = asyncio.run(_checked(settings or _ops(), service))
    now = dt.datetime.now(dt.UTC)
    return sorted((_dead_letter(c, now) for c in checked), key=lambda d: (d.at, d.id))


def read_dead_letter(service: str, id: str, settings: KafkaSettings | None = None) -> _Checked:
    found = {f"{c.raw.partition}:{c.raw.offset}": c for c in asyncio.run(_checked(settings or _ops(), service))}
    if id not in found:
        raise LookupError(f"no dead letter {id} on the {service} dead-letter topic")
    return found[id]


async def _replay(settings: KafkaSettings, service: str, ids: set[str]) -> list[tuple[str, str]]:
    checked = {f"{c.raw.partition}:{c.raw.offset}": c for c in await _checked(settings, service)}
    missing = sorted(ids - checked.keys())
    if missing:
        raise LookupError(f"no dead letter {', '.join(missing)} on the {service} dead-letter topic")
    order = sorted(ids, key=lambda x: tuple(int(n) for n in x.split(":")))
    for i in order:  # every one is checked before any is replayed
        c = checked[i]
        if not c.verified:
            raise LookupError(
                f"dead letter {i} is unverified: its dead-letter headers were not written by a Homeward service "
                "with this key, so where it came from is not known; it is not replayed"
            )
        if not c.metadata.get("topic"):
            raise LookupError(f"dead letter {i} does not say which topic it came from")
        if c.metadata.get("truncated"):
            raise LookupError(
                f"dead letter {i} cannot be replayed: its {c.metadata['truncated']} was too large to keep, and only "
                "its digest was stored; ask the partner to send it again"
            )
    producer = make_producer(settings, "cli-dlq-replay")
    await producer.start()
    done = []
    try:
        for i in order:
            c = checked[i]
            topic = c.metadata["topic"]
            await producer.send_and_wait(topic, value=c.raw.value, key=c.raw.key, headers=original_headers(c))
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
    """What the service refused, oldest first: age, reason and origin only (never the record's
    key, value or headers; `homeward dlq show` prints one whole)."""
    try:
        letters = [d for d in read_dead_letters(service) if reason is None or d.reason == reason]
    except LookupError as exc:
        err.print(f"[red]{exc}[/]")
        raise typer.Exit(1) from exc
    if json_out:
        console.print_json(json.dumps([asdict(d) for d in letters]))
        return
    table = Table(title=f"{len(letters)} dead letter(s) of {service}", title_justify="left")
    for col in ("id", "age", "reason", "from"):
        table.add_column(col, overflow="fold")
    for d in letters:
        origin = f"{d.topic} {d.source}" if d.verified else "(not known: its metadata did not verify)"
        table.add_row(d.id, d.age, escape(d.reason), escape(origin))
    console.print(table)
    if letters:
        console.print(
            f"Why, in full: homeward dlq show {service} <id>. After fixing the cause: "
            f"homeward dlq replay {service} <id> [<id> ...]",
            style="dim",
        )


@dlq_app.command()
def show(
    service: ServiceArg,
    id: Annotated[str, typer.Argument(help="A dead letter id from `homeward dlq list` (partition:offset)")],
) -> None:
    """One dead letter whole: its verified metadata, the error message, and the original record
    (key, headers, value), which can hold an NHS number. For operators investigating it."""
    try:
        c = read_dead_letter(service, id)
    except LookupError as exc:
        err.print(f"[red]{exc}[/]")
        raise typer.Exit(1) from exc
    err.print("[yellow]This prints the refused record itself, which may identify a person.[/]")
    out = {
        "id": id,
        "verified": c.verified,
        "metadata": c.metadata if c.verified else None,
        "key": c.raw.key.decode(errors="replace") if c.raw.key is not None else None,
        "headers": [[k, v.decode(errors="replace")] for k, v in original_headers(c)] if c.verified else None,
        "value": c.raw.value.decode(errors="replace"),
    }
    console.print_json(json.dumps(out))


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
