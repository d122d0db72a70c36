"""`homeward lag`: how far behind each service's consumer groups are, per partition.

The groups and the topics each must read come from the services' own wiring (the same
list the main job waits on, :func:`homeward.cli.runner.expected_reads`). A partition a group
has not committed on yet counts from its beginning, so a group that never started shows
everything as lag rather than nothing.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

console = Console()
err = Console(stderr=True)


@dataclass(frozen=True)
class PartitionLag:
    group: str
    topic: str
    partition: int
    committed: int | None  # None: the group has committed nothing on this partition
    end: int
    lag: int


class LagReader:
    """Open clients that read the lag repeatedly (the benchmark polls it); :func:`consumer_lags`
    reads it once."""

    def __init__(self, settings: Any, *, group_prefix: str = "", groups: Sequence[str] = ()) -> None:
        from aiokafka import AIOKafkaConsumer
        from homeward.kit.kafka import client_options, make_admin

        self.namespace: str = settings.topic_namespace
        self.group_prefix = group_prefix
        self.groups = tuple(groups)
        self.admin = make_admin(settings)
        self.consumer = AIOKafkaConsumer(group_id=None, enable_auto_commit=False, **client_options(settings))
        self._plan: dict[str, list[Any]] | None = None  # group -> its topic partitions
        self._starts: dict[Any, int] = {}

    async def start(self, timeout: float = 30.0) -> LagReader:
        await asyncio.wait_for(self.admin.start(), timeout)
        await asyncio.wait_for(self.consumer.start(), timeout)
        return self

    async def stop(self) -> None:
        await self.consumer.stop()
        await self.admin.close()

    async def read(self, *, refresh: bool = True) -> list[PartitionLag]:
        """Lag per (group, topic, partition) of every service's consumer groups. With
        ``refresh=False`` the topics, partitions and log start offsets of the previous read are
        reused, and only the committed and end offsets asked for (cheaper, for polling a set of
        topics that does not change)."""
        from aiokafka import TopicPartition

        from .runner import expected_reads

        if refresh or self._plan is None:
            wanted = expected_reads(list(await self.admin.list_topics()), self.namespace, self.group_prefix)
            if self.groups:
                wanted = {g: t for g, t in wanted.items() if g in self.groups}
            # Topics created since this client started: aiokafka has no public call that
            # refreshes the metadata partitions_for_topic reads.
            await self.consumer._client.force_metadata_update()
            plan = {
                group: [
                    TopicPartition(t, p) for t in names for p in sorted(self.consumer.partitions_for_topic(t) or ())
                ]
                for group, names in sorted(wanted.items())
            }
            self._plan = {group: tps for group, tps in plan.items() if tps}
            every = sorted({tp for tps in self._plan.values() for tp in tps})
            self._starts = await self.consumer.beginning_offsets(every) if every else {}
        every = sorted({tp for tps in self._plan.values() for tp in tps})
        ends = await self.consumer.end_offsets(every) if every else {}
        out: list[PartitionLag] = []
        for group, tps in self._plan.items():
            committed = await self.admin.list_consumer_group_offsets(group)
            for tp in tps:
                meta = committed.get(tp)
                offset = meta.offset if meta is not None and meta.offset >= 0 else None
                done = self._starts[tp] if offset is None else offset
                out.append(PartitionLag(group, tp.topic, tp.partition, offset, ends[tp], max(0, ends[tp] - done)))
        return out


async def consumer_lags(
    settings: Any, *, group_prefix: str = "", groups: Sequence[str] = (), timeout: float = 30.0
) -> list[PartitionLag]:
    """Lag per (group, topic, partition) of every service's consumer groups, in
    ``settings.topic_namespace`` (a ``KafkaSettings``); ``groups`` keeps only those named."""
    reader = LagReader(settings, group_prefix=group_prefix, groups=groups)
    try:
        await reader.start(timeout)
        return await reader.read()
    finally:
        await reader.stop()


def summarise(rows: Sequence[PartitionLag]) -> dict[str, Any]:
    """Totals per group and overall, with every partition (the ``--json`` document)."""
    groups: dict[str, dict[str, Any]] = {}
    for r in rows:
        g = groups.setdefault(r.group, {"group": r.group, "lag": 0, "partitions": []})
        g["lag"] += r.lag
        g["partitions"].append({k: v for k, v in asdict(r).items() if k != "group"})
    return {"groups": list(groups.values()), "total": sum(r.lag for r in rows)}


def lag(
    bootstrap: Annotated[
        str | None, typer.Option(help="Kafka bootstrap servers (default from HOMEWARD_KAFKA_*)")
    ] = None,
    namespace: Annotated[
        str | None, typer.Option(help="Topic namespace (default $HOMEWARD_KAFKA_TOPIC_NAMESPACE; empty in production)")
    ] = None,
    group_prefix: Annotated[
        str, typer.Option(help="Prefix of the consumer group ids (the e2e tests and benchmarks use the namespace)")
    ] = "",
    group: Annotated[list[str] | None, typer.Option(help="Only this consumer group (repeatable)")] = None,
    all_partitions: Annotated[
        bool, typer.Option("--all", help="List every partition, not only those with lag")
    ] = False,
    json_out: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table")] = False,
) -> None:
    """Consumer lag per service group and partition, and the total: messages not yet read."""
    from homeward.contracts.access import OPS

    from .connect import kafka_settings

    settings = kafka_settings(bootstrap, role=OPS)
    if namespace is not None:
        settings = settings.model_copy(update={"topic_namespace": namespace})
    try:
        rows = asyncio.run(consumer_lags(settings, group_prefix=group_prefix, groups=group or ()))
    except Exception as exc:  # the broker unreachable, or refusing the admin requests
        err.print(f"[red]cannot read consumer lag from Kafka at {settings.bootstrap_servers}: {exc!r}[/]")
        raise typer.Exit(2) from exc
    doc = summarise(rows)
    if json_out:
        console.print_json(json.dumps(doc))
        return
    shown = [r for r in rows if all_partitions or r.lag]
    if shown:
        t = Table(title="Partitions with lag" if not all_partitions else "Partitions", title_justify="left")
        for c in ("group", "topic", "partition", "committed", "end", "lag"):
            t.add_column(c, justify="right" if c in ("partition", "committed", "end", "lag") else "left")
        for r in shown:
            t.add_row(
                r.group,
                r.topic,
                str(r.partition),
                "-" if r.committed is None else str(r.committed),
                str(r.end),
                str(r.lag),
            )
        console.print(t)
    s = Table(title="Consumer lag per group", title_justify="left")
    for c in ("group", "topics", "partitions", "lag"):
        s.add_column(c, justify="left" if c == "group" else "right")
    for g in doc["groups"]:
        topics = {p["topic"] for p in g["partitions"]}
        s.add_row(g["group"], str(len(topics)), str(len(g["partitions"])), str(g["lag"]))
    console.print(s)
    console.print(f"total lag: [bold]{doc['total']}[/] message(s) not yet read")
