"""Budget scales out by commissioner: placements keys what it publishes by commissioner, as the
ingress keys allocations and invoices, and the kit's client ids make each replica take the same
place in every consumer group of its service, so each replica is given the same partition
numbers of both topics and owns whole commissioners. Against the real Kafka and PostgreSQL,
through the kit's runtime, as two budget replicas run; and a replica's batches take turns."""

from __future__ import annotations

import asyncio
import datetime as dt
from pathlib import Path
from typing import Any

from homeward.contracts import Event, new_event, partner_source, service_source
from homeward.contracts.events import BudgetAllocated, PlacementClosed, PlacementMade
from homeward.contracts.topics import publish_key
from homeward.contracts.vocab import EndReason, FundingSource, Programme
from homeward.kit.access import confluent_config
from homeward.kit.clock import FixedClock
from homeward.kit.consumer import EventConsumer, Record, UnitOfWork
from homeward.kit.db import create_pool, migrate
from homeward.kit.service import ServiceDefinition, ServiceRuntime, Subscription
from homeward.kit.settings import ServiceSettings
from homeward.testing import KafkaProbe, eventually, sample_placement

COMMISSIONERS = [f"0{n}{c}" for n in range(1, 4) for c in "ABCDEFGH"]  # 24 of them


def closed(placement_id: str, commissioner: str) -> PlacementClosed:
    return PlacementClosed(
        placement_id=placement_id,
        patient_ref="pt_" + "0" * 32,
        commissioner=commissioner,
        provider_site="RYG01",
        end_date=dt.date(2026, 10, 1),
        end_reason=EndReason.DISCHARGED_HOME,
        out_of_area=True,
        length_of_stay_nights=30,
    )


def allocated(commissioner: str) -> BudgetAllocated:
    return BudgetAllocated(
        allocation_id=f"ALLOC-{commissioner}",
        commissioner=commissioner,
        financial_year="2026-27",
        programme=Programme.MENTAL_HEALTH,
        amount_pence=100_000_00,
        source=FundingSource.ICB,
    )


def _assignments(kafka: KafkaProbe, groups: list[str]) -> dict[str, dict[str, list[int]]]:
    """Each group's members (by the replica named in their client id) and their partition numbers."""
    from confluent_kafka.admin import AdminClient

    admin: Any = AdminClient(confluent_config(kafka.infra.kafka_settings()))
    out: dict[str, dict[str, list[int]]] = {}
    for gid, future in admin.describe_consumer_groups(groups, request_timeout=10).items():
        out[gid] = {
            m.client_id.removeprefix("homeward-budget-"): sorted(tp.partition for tp in m.assignment.topic_partitions)
            for m in future.result().members
        }
    return out


def test_placements_keys_what_it_publishes_by_commissioner_and_others_by_entity() -> None:
    event = closed("PLC-9", "05A")
    assert publish_key("placements", event) == "05A" != event.key() == "PLC-9"
    assert publish_key("budget", event) == "PLC-9"  # other services key by the event's entity
    assert publish_key("placements", allocated("05H")) == "05H"


async def test_a_service_unit_of_work_queues_its_events_keyed_as_the_service_keys_them(database: str) -> None:
    await migrate(database, "placements", None)
    pool = await create_pool(database, 1, 2)
    try:
        async with pool.acquire() as conn, conn.transaction():
            uow: UnitOfWork[Any] = UnitOfWork(conn, "placements", FixedClock(dt.date(2026, 10, 2)))
            assert await uow.publish(closed("PLC-1", "05R"))
            other: UnitOfWork[Any] = UnitOfWork(conn, "budget", FixedClock(dt.date(2026, 10, 2)))
            assert await other.publish(closed("PLC-2", "05R"))
        rows = {r["topic"]: bytes(r["key"]) for r in await pool.fetch("SELECT topic, key FROM outbox")}
        assert rows == {"homeward.placements.v1": b"05R", "homeward.budget.v1": b"PLC-2"}
    finally:
        await pool.close()


async def test_two_budget_replicas_each_own_whole_commissioners_across_both_topics(
    tmp_path: Path, database: str, kafka: KafkaProbe
) -> None:
    (tmp_path / "0001_seen.sql").write_text(
        "CREATE TABLE seen (replica text NOT NULL, commissioner text NOT NULL, kind text NOT NULL, "
        "PRIMARY KEY (commissioner, kind));"
    )
    group = f"{kafka.topics.namespace}homeward-budget"

    def replica(name: str) -> ServiceRuntime:
        async def on_allocation(event: Event[BudgetAllocated], uow: UnitOfWork[Any]) -> None:
            await uow.conn.execute("INSERT INTO seen VALUES ($1, $2, 'allocation')", name, event.data.commissioner)

        async def on_closure(event: Event[PlacementClosed], uow: UnitOfWork[Any]) -> None:
            await uow.conn.execute("INSERT INTO seen VALUES ($1, $2, 'closure')", name, event.data.commissioner)

        settings = ServiceSettings(
            database_url=database,
            http_port=0,
            consumer_group=group,
            batch_timeout_ms=50,
            outbox_poll_interval_s=0.2,
            scheduler_interval_s=3600,
            kafka=kafka.service_settings("budget").model_copy(update={"instance": name, "metadata_max_age_ms": 1000}),
        )
        return ServiceRuntime(
            ServiceDefinition(
                name="budget",
                settings=settings,
                migrations=tmp_path,
                handlers={BudgetAllocated: on_allocation, PlacementClosed: on_closure},
                subscriptions=[Subscription(services=["ingress"]), Subscription(services=["placements"])],
                one_batch_at_a_time=True,
            )
        )

    # Instance names that sort the other way round from the order the replicas start in.
    replicas = [replica("replica-b"), replica("replica-a")]
    for r in replicas:
        await r.start()
    try:
        groups = [group, f"{group}-1"]

        async def both_groups_split() -> bool:
            described = await asyncio.to_thread(_assignments, kafka, groups)
            return all(len(members) == 2 and all(members.values()) for members in described.values())

        assert await eventually(both_groups_split, timeout=90), "the two replicas never shared both groups"
        described = await asyncio.to_thread(_assignments, kafka, groups)
        assert described[group] == described[f"{group}-1"], described  # the same partitions of both topics
        assert sorted(described[group]) == ["replica-a", "replica-b"]

        for commissioner in COMMISSIONERS:
            await kafka.send(
                kafka.topics.internal("ingress"),
                new_event(allocated(commissioner), source=partner_source(commissioner)),
            )
            event = new_event(closed(f"PLC-{commissioner}", commissioner), source=service_source("placements"))
            _, value, headers = event.to_kafka()
            await kafka.send_raw(
                kafka.topics.internal("placements"),
                value,
                key=publish_key("placements", event.data).encode(),
                headers=headers,
            )
        assert replicas[0].pool is not None
        pool = replicas[0].pool

        async def all_seen() -> bool:
            return int(await pool.fetchval("SELECT count(*) FROM seen")) == 2 * len(COMMISSIONERS)

        assert await eventually(all_seen, timeout=90), "not every event was handled"
        rows = await pool.fetch("SELECT commissioner, array_agg(DISTINCT replica) AS r FROM seen GROUP BY commissioner")
        assert all(len(r["r"]) == 1 for r in rows), [dict(r) for r in rows if len(r["r"]) > 1]
        owners = {r["r"][0] for r in rows}
        assert owners == {"replica-a", "replica-b"}, "both replicas own some commissioners"
    finally:
        for r in replicas:
            await r.stop()


async def test_one_replicas_batches_take_turns_when_the_service_asks(database: str, tmp_path: Path) -> None:
    """Two batches handed to one consumer at once (its two subscriptions' tasks): with
    ``one_batch_at_a_time`` a handler never finds the other batch's handler running."""
    (tmp_path / "0001_seen.sql").write_text("CREATE TABLE seen (placement_id text PRIMARY KEY);")
    await migrate(database, "budget", tmp_path)
    pool = await create_pool(database, 1, 4)

    async def overlap(one_at_a_time: bool) -> int:
        inside = {"now": 0, "most": 0}
        other_came = asyncio.Event()

        async def handle(event: Event[PlacementMade], uow: UnitOfWork[Any]) -> None:
            inside["now"] += 1
            inside["most"] = max(inside["most"], inside["now"])
            if inside["now"] > 1:
                other_came.set()
            try:  # give the other batch every chance to come in: it sets other_came if it does
                await asyncio.wait_for(other_came.wait(), timeout=1.0)
            except TimeoutError:
                pass
            finally:
                inside["now"] -= 1
            await uow.conn.execute("INSERT INTO seen VALUES ($1)", event.data.placement_id)

        consumer = EventConsumer(
            "budget",
            pool,
            {PlacementMade: handle},
            clock=FixedClock(dt.date(2026, 1, 6)),
            one_batch_at_a_time=one_at_a_time,
        )
        topic = consumer.topics.internal("ingress")
        batches = []
        for n in range(2):
            e = new_event(
                sample_placement(f"PLC-{one_at_a_time}-{n}", commissioner="RYG"), source=partner_source("RYG")
            )
            key, value, headers = e.to_kafka()
            batches.append([Record(topic, n, 0, key, value, tuple(headers))])
        results = await asyncio.gather(*(consumer.handle_batch(b) for b in batches))
        assert [r.handled for r in results] == [1, 1]
        return inside["most"]

    try:
        assert await overlap(False) == 2, "without the option the two batches run side by side"
        assert await overlap(True) == 1
    finally:
        await pool.close()
