"""Running a service: migrations, pool, FastStream subscribers, outbox relay, scheduled
jobs (the service's own and the kit's retention job) and the HTTP app, in one process with
a clean shutdown on SIGTERM or Ctrl-C."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import signal
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import uvicorn
from aiokafka.abc import ConsumerRebalanceListener
from faststream import AckPolicy
from faststream.kafka import KafkaBroker
from faststream.kafka.annotations import KafkaMessage
from faststream.message import StreamMessage
from faststream.specification import AsyncAPI
from homeward.contracts import Payload
from starlette.routing import BaseRoute

from .auth import TokenVerifier
from .clock import Clock, clock_from
from .consumer import EventConsumer, Handler, InfrastructureError, Record
from .crypto import KeyProblem
from .db import create_pool, migrate
from .http import build_app, loopback
from .kafka import RelayProducer, make_admin, make_broker
from .logging import RateLimiter, configure_logging, get_logger
from .metrics import RETENTION_DELETED, SCHEDULER_RUNS
from .outbox import OutboxRelay, prune_inbox, prune_outbox
from .parking import expire as expire_parked
from .progress import RELAY, ProgressTracker, Stall, consumer_what, stalls
from .settings import ServiceSettings
from .topics import Topics
from .uow import UnitOfWork, UnitOfWorkFactory

log = get_logger(__name__)


class StartupError(RuntimeError):
    """The service cannot start for a reason an operator must fix; the message says what."""


JobFn = Callable[[asyncpg.Pool, Clock], Awaitable[int]]  # type: ignore[type-arg]


class _QuietServer(uvicorn.Server):
    """uvicorn without its own signal handling: the runtime owns SIGTERM/SIGINT and stops
    consuming first, then the HTTP server."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


@dataclass
class Job:
    """A scheduled job; it must be safe to run on several replicas at once (idempotent)."""

    name: str
    run: JobFn
    interval_s: float | None = None
    # Also run once at start, after the migrations and before anything is consumed (a job that
    # brings stored data up to the configured keys, say); a failure then stops the start.
    at_start: bool = False


@dataclass
class Subscription:
    """What a service consumes: all partner topics (by pattern, so new partners are picked up
    without a restart) and/or named internal topics of other services."""

    partners: bool = False
    services: Sequence[str] = ()

    def resolve(self, topics: Topics) -> tuple[tuple[str, ...], str | None]:
        if self.partners and self.services:
            raise ValueError("a subscription is either the partner pattern or named topics")
        if self.partners:
            return (), topics.partner_pattern
        return tuple(topics.internal(s) for s in self.services), None


class _ForgetRevoked(ConsumerRebalanceListener):  # type: ignore[misc]
    """Partitions taken away in a rebalance no longer wait on this replica: another consumer
    reads them now, so they cannot make this one stalled."""

    def __init__(self, progress: ProgressTracker) -> None:
        self.progress = progress

    async def on_partitions_revoked(self, revoked: Any) -> None:
        self.progress.forget(f"{tp.topic}[{tp.partition}]" for tp in revoked)

    async def on_partitions_assigned(self, assigned: Any) -> None:
        return None


async def _raw_decoder(msg: StreamMessage[Any]) -> Any:
    # Records are parsed by the contracts, not by FastStream, so malformed JSON reaches
    # the dead-letter path instead of failing inside the framework.
    return msg.body


def subscribe(
    broker: KafkaBroker,
    consumer: EventConsumer,
    subscription: Subscription,
    *,
    topics: Topics,
    group_id: str,
    max_records: int = 500,
    batch_timeout_ms: int = 200,
    auto_offset_reset: str = "earliest",
    backoff_s: float = 2.0,
    title: str | None = None,
    progress: ProgressTracker | None = None,
) -> Any:
    """Subscribe ``consumer`` to what ``subscription`` names, in consumer group ``group_id``.
    ``progress`` hears whether each batch committed (homeward.kit.progress)."""
    names, pattern = subscription.resolve(topics)
    sub = broker.subscriber(  # type: ignore[call-overload]
        *names,
        pattern=pattern,
        group_id=group_id,
        batch=True,
        max_records=max_records,
        batch_timeout_ms=batch_timeout_ms,
        auto_offset_reset=auto_offset_reset,  # type: ignore[arg-type]
        ack_policy=AckPolicy.MANUAL,
        decoder=_raw_decoder,
        title=title,
        listener=_ForgetRevoked(progress) if progress is not None else None,
    )

    quiet = RateLimiter()  # an outage retries every backoff_s: one line per interval, with a count

    @sub
    async def on_batch(body: list[bytes], msg: KafkaMessage) -> None:
        records = [Record.from_consumer_record(r) for r in msg.raw_message]
        try:
            await consumer.handle_batch(records, progress=progress)
        except InfrastructureError as exc:
            quiet.log(
                log,
                "error",
                "infrastructure unavailable; batch will be retried",
                key=str(exc),
                error=str(exc),
                size=len(records),
            )
            await asyncio.sleep(backoff_s)
            await msg.nack()
            return
        except Exception as exc:
            quiet.log(
                log,
                "exception",
                "batch failed unexpectedly; it will be retried",
                key=f"{type(exc).__name__}: {exc}",
                size=len(records),
            )
            await asyncio.sleep(backoff_s)
            await msg.nack()
            return
        await msg.ack()

    return sub


def consumer_groups(base: str, subscriptions: Sequence[Subscription]) -> list[tuple[str, Subscription]]:
    """Each subscription's consumer group: ``base`` for the first, ``base-1``, ``base-2``...
    for the others, so each keeps its own offsets."""
    return [(base if i == 0 else f"{base}-{i}", sub) for i, sub in enumerate(subscriptions)]


def retention_job(service: str, settings: ServiceSettings) -> Job:
    """The kit's housekeeping, which every service runs: delete outbox rows published more
    than ``outbox_retention_days`` ago and inbox rows received more than
    ``inbox_retention_days`` ago (0 keeps them forever), ``retention_batch_size`` rows per
    statement. Unpublished and parked outbox rows are never deleted. Ages are measured by
    the database's clock, never the service's injectable one. docs/operations.md says why
    the windows are what they are."""

    async def run(pool: asyncpg.Pool, clock: Clock) -> int:  # type: ignore[type-arg]
        deleted: dict[str, int] = {}
        if settings.outbox_retention_days > 0:
            deleted["outbox"] = await prune_outbox(
                pool, dt.timedelta(days=settings.outbox_retention_days), batch_size=settings.retention_batch_size
            )
        if settings.inbox_retention_days > 0:
            deleted["inbox"] = await prune_inbox(
                pool, dt.timedelta(days=settings.inbox_retention_days), batch_size=settings.retention_batch_size
            )
        for table, n in deleted.items():
            if n:
                RETENTION_DELETED.labels(service, table).inc(n)
        if any(deleted.values()):
            log.info("retention deleted old rows", **deleted)
        return 0  # it emits no events

    return Job("retention", run, interval_s=settings.retention_interval_s)


@dataclass
class ServiceDefinition:
    name: str
    settings: ServiceSettings
    migrations: Path | None
    handlers: Mapping[type[Payload], Handler] = field(default_factory=dict)
    subscriptions: Sequence[Subscription] = ()
    jobs: Sequence[Job] = ()
    routes: Callable[[asyncpg.Pool, Clock], Sequence[BaseRoute]] | None = None  # type: ignore[type-arg]
    publishes: Sequence[type[Payload]] = ()
    version: str = "1.0.0"
    # The service stores NHS numbers, so it needs HOMEWARD_NHS_NUMBER_KEY to start.
    stores_nhs_numbers: bool = False
    # Its subscriptions' batches take turns in a replica (budget: they post to the same
    # commissioners' accounts, as its subscriptions are co-partitioned by commissioner).
    one_batch_at_a_time: bool = False
    # Builds each event's unit of work: the service's subclass of the kit's UnitOfWork, which
    # names its repositories (homeward.kit.uow); handlers are ``(event, uow) -> None``.
    unit_of_work: UnitOfWorkFactory = UnitOfWork


class ServiceRuntime:
    def __init__(self, definition: ServiceDefinition, clock: Clock | None = None) -> None:
        self.d = definition
        self.settings = definition.settings
        self.clock = clock or clock_from(self.settings.common.clock)
        self.topics = Topics(self.settings.kafka.topic_namespace)
        self.broker = make_broker(self.settings.kafka, definition.name)
        self.pool: asyncpg.Pool | None = None  # type: ignore[type-arg]
        self.relay: OutboxRelay | None = None
        self._producer: RelayProducer | None = None
        self._tasks: list[asyncio.Task[Any]] = []
        self._stop = asyncio.Event()
        self._job_wake = asyncio.Event()
        self._job_log = RateLimiter()
        # Run by every service beside its own jobs; not by /admin/run-jobs, which runs the
        # service's schedulers on demand.
        self.parking_job = self._parking_job()
        self.kit_jobs = [retention_job(definition.name, self.settings), self.parking_job]
        self.server: uvicorn.Server | None = None
        self.verifier: TokenVerifier | None = None
        # One per subscription and one for the relay: what /readyz and homeward_stalled report.
        self.progress: list[ProgressTracker] = []
        for payload in definition.publishes:
            topic = self.topics.internal(definition.name)
            self.broker.publisher(topic, schema=payload, title=f"{topic}:{payload.name}")

    def _parking_job(self) -> Job:
        """The kit's parking-lot expiry, which every service runs: an event parked longer than
        ``parking_expiry_days`` is dead-lettered as parked-expired (homeward.kit.parking)."""

        async def run(pool: asyncpg.Pool, clock: Clock) -> int:  # type: ignore[type-arg]
            return await expire_parked(
                pool,
                service=self.d.name,
                clock=clock,
                topics=self.topics,
                dead_letter_key=self.settings.common.dead_letter_keys()[0],
            )

        return Job("parking-expiry", run)

    def asyncapi(self) -> dict[str, Any]:
        spec = AsyncAPI(self.broker, title=f"Homeward {self.d.name}", version=self.d.version)
        return spec.to_specification().to_jsonable()  # type: ignore[no-any-return]

    def needed_topics(self) -> list[str]:
        """The named topics this service writes or reads (partner topics are found by pattern)."""
        names = [self.topics.internal(self.d.name), self.topics.dlq(self.d.name)]
        names += [self.topics.internal(s) for sub in self.d.subscriptions for s in sub.services]
        return sorted(set(names))

    async def _check_topics(self) -> None:
        admin = make_admin(self.settings.kafka)
        try:
            await admin.start()
            existing = set(await admin.list_topics())
        except Exception as exc:
            raise StartupError(
                f"cannot reach Kafka at {self.settings.kafka.bootstrap_servers}: {type(exc).__name__}: {exc}"
            ) from exc
        finally:
            with contextlib.suppress(Exception):
                await admin.close()
        missing = [t for t in self.needed_topics() if t not in existing]
        if missing:
            raise StartupError(
                f"Kafka has no topic {', '.join(missing)}. Topics are created by the init step, not by the "
                "services: `homeward-stack up` on the native stack, `docker compose run --rm init` with compose, "
                "the KafkaTopic resources under deploy/ on Kubernetes"
            )

    def _check_settings(self) -> None:
        """Keys and the database account: refused before anything connects."""
        s = self.settings
        try:
            s.common.check_keys(nhs_numbers=self.d.stores_nhs_numbers)
        except KeyProblem as exc:
            raise StartupError(str(exc)) from None
        self.verifier = TokenVerifier(s.auth)
        if self.verifier.problem is not None:
            if not loopback(s.http_host):
                prefix = s.model_config.get("env_prefix", "HOMEWARD_SERVICE_")
                raise StartupError(
                    f"{prefix}HTTP_HOST={s.http_host} serves beyond this machine, but staff sign-in is not "
                    f"configured ({self.verifier.problem}): set HOMEWARD_AUTH_ISSUER and HOMEWARD_AUTH_JWKS "
                    "(docs/staff-access.md), or bind 127.0.0.1"
                )
            log.warning("staff sign-in is not configured: every read API answers 401", problem=self.verifier.problem)
        if not s.database_url:
            prefix = s.model_config.get("env_prefix", "HOMEWARD_SERVICE_")
            raise StartupError(
                f"{prefix}DATABASE_URL is not set: give the service its own database and role "
                f"(postgresql://homeward_{self.d.name}:<password>@<host>/homeward_{self.d.name}), not the superuser; "
                "`homeward-stack env` prints the native stack's"
            )

    async def start(self) -> None:
        s = self.settings
        self._check_settings()
        await self._check_topics()
        try:
            await migrate(s.database_url, self.d.name, self.d.migrations)
            self.pool = await create_pool(s.database_url, s.pool_min_size, s.pool_max_size)
        except (
            OSError,
            TimeoutError,
            asyncpg.exceptions.PostgresConnectionError,
            asyncpg.exceptions.CannotConnectNowError,  # shutting down, starting up
        ) as exc:
            # Down, restarting or refusing connections: the supervisor starts the service again.
            # (The address is the settings'; the message never repeats the URL, which holds a password.)
            raise StartupError(f"cannot reach PostgreSQL: {type(exc).__name__}: {exc}") from exc
        for job in self.d.jobs:
            if job.at_start:
                try:
                    done = await job.run(self.pool, self.clock)
                except Exception as exc:
                    await self.pool.close()
                    raise StartupError(f"{job.name} failed at start: {type(exc).__name__}: {exc}") from exc
                log.info("start-up job ran", job=job.name, changed=done)
        consumer = EventConsumer(
            self.d.name,
            self.pool,
            self.d.handlers,
            clock=self.clock,
            retry_attempts=s.retry_attempts,
            retry_backoff_s=s.retry_backoff_s,
            topics=self.topics,
            transient_retry_budget_s=s.transient_retry_budget_s,
            transient_backoff_max_s=s.transient_backoff_max_s,
            dead_letter_max_bytes=s.dead_letter_max_bytes,
            dead_letter_key=s.common.dead_letter_keys()[0],
            one_batch_at_a_time=self.d.one_batch_at_a_time,
            unit_of_work=self.d.unit_of_work,
            parking_expiry=dt.timedelta(days=s.parking_expiry_days),
        )
        self.consumer = consumer
        group = s.consumer_group or f"homeward-{self.d.name}"
        self.progress = []
        for group_id, sub in consumer_groups(group, self.d.subscriptions):
            names, pattern = sub.resolve(self.topics)
            tracker = ProgressTracker(
                self.d.name,
                consumer_what(group_id),
                stall_after_s=s.stall_after_s,
                detail={"group": group_id, "topics": [pattern] if pattern else list(names)},
            )
            self.progress.append(tracker)
            subscribe(
                self.broker,
                consumer,
                sub,
                topics=self.topics,
                group_id=group_id,
                max_records=s.batch_max_records,
                batch_timeout_ms=s.batch_timeout_ms,
                auto_offset_reset=s.kafka.auto_offset_reset,
                title=f"{self.d.name}:{'partners' if sub.partners else ','.join(sub.services)}",
                progress=tracker,
            )
        producer = RelayProducer(s.kafka, self.d.name)
        await producer.start()
        self._producer = producer
        relay_progress = ProgressTracker(self.d.name, RELAY, stall_after_s=s.stall_after_s)
        self.progress.append(relay_progress)
        self.relay = OutboxRelay(
            self.pool,
            producer.send,
            restart_producer=producer.restart,
            service=self.d.name,
            batch_size=s.outbox_batch_size,
            poll_interval_s=s.outbox_poll_interval_s,
            send_timeout_s=s.outbox_send_timeout_s,
            progress=relay_progress,
        )
        self._tasks.append(asyncio.create_task(self.relay.run(), name="outbox-relay"))
        await self.broker.start()
        for job in [*self.d.jobs, *self.kit_jobs]:
            self._tasks.append(asyncio.create_task(self._run_job(job), name=f"job-{job.name}"))
        routes = self.d.routes(self.pool, self.clock) if self.d.routes else ()
        app = build_app(
            self.d.name,
            checks={"postgres": self._pg_ready, "kafka": self._kafka_ready},
            asyncapi=self.asyncapi,
            routes=routes,
            state={"pool": self.pool, "clock": self.clock, "runtime": self},
            run_jobs=self.run_jobs_once,
            stalled=self.stalled,
            verifier=self.verifier,
        )
        config = uvicorn.Config(app, host=s.http_host, port=s.http_port, log_config=None, access_log=False)
        self.server = _QuietServer(config)
        self._tasks.append(asyncio.create_task(self.server.serve(), name="http"))
        log.info("service started", http=f"http://{s.http_host}:{s.http_port}", group=group)

    def stalled(self) -> list[Stall]:
        """What makes no progress now: consumer subscriptions and the relay (homeward.kit.progress)."""
        return stalls(self.progress)

    async def _pg_ready(self) -> bool:
        assert self.pool is not None
        async with self.pool.acquire() as conn:
            return await conn.fetchval("SELECT 1") == 1  # type: ignore[no-any-return]

    async def _kafka_ready(self) -> bool:
        return await self.broker.ping(timeout=3)

    async def run_jobs_once(self) -> dict[str, int]:
        assert self.pool is not None
        return {job.name: await job.run(self.pool, self.clock) for job in [*self.d.jobs, self.parking_job]}

    async def _run_job(self, job: Job) -> None:
        interval = job.interval_s or self.settings.scheduler_interval_s
        assert self.pool is not None
        if self.settings.scheduler_first_run_after_s:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._job_wake.wait(), timeout=self.settings.scheduler_first_run_after_s)
        while not self._stop.is_set():
            try:
                n = await job.run(self.pool, self.clock)
                SCHEDULER_RUNS.labels(self.d.name, job.name, "ok").inc()
                if n:
                    log.info("job ran", job=job.name, emitted=n)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                SCHEDULER_RUNS.labels(self.d.name, job.name, "error").inc()
                self._job_log.log(
                    log, "exception", "job failed; will run again", key=(job.name, f"{exc!r}"), job=job.name
                )
            self._job_wake.clear()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._job_wake.wait(), timeout=interval)

    def _task(self, name: str) -> asyncio.Task[Any] | None:
        return next((t for t in self._tasks if t.get_name() == name), None)

    async def stop(self) -> None:
        """Stop consuming first; then the relay, if it is the leader, publishes what is
        committed while it still holds the relay lock, and releases it (a standby just stops:
        the leader, maybe on another replica, publishes); then close."""
        self._stop.set()
        self._job_wake.set()
        with contextlib.suppress(Exception):
            await self.broker.stop()
        relay_task = self._task("outbox-relay")
        if self.relay is not None:
            await self.relay.stop(drain=True)
        if relay_task is not None:
            try:
                await asyncio.wait_for(asyncio.shield(relay_task), timeout=self.settings.outbox_drain_timeout_s)
            except TimeoutError:
                log.warning(
                    "outbox not drained in time; the next leader publishes the rest",
                    timeout_s=self.settings.outbox_drain_timeout_s,
                )
            except Exception:
                log.exception("the outbox relay failed while stopping")
        if self.server is not None:
            self.server.should_exit = True
            http = self._task("http")
            if http is not None:
                with contextlib.suppress(BaseException):
                    await asyncio.wait_for(asyncio.shield(http), timeout=5)
        for task in self._tasks:
            if not task.done():
                task.cancel()
        for task in self._tasks:
            with contextlib.suppress(BaseException):
                await task
        if self._producer is not None:
            await self._producer.stop()
        if self.pool is not None:
            await self.pool.close()
        log.info("service stopped")

    async def run_forever(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError):
                loop.add_signal_handler(sig, self._stop.set)
        await self.start()
        try:
            await self._stop.wait()
        finally:
            await self.stop()


def run(definition: ServiceDefinition) -> None:
    """Entry point used by each service's ``__main__``."""
    common = definition.settings.common
    configure_logging(definition.name, common.log_level, common.log_format)
    try:
        asyncio.run(ServiceRuntime(definition).run_forever())
    except StartupError as exc:
        log.error("cannot start", reason=str(exc))
        raise SystemExit(1) from None
