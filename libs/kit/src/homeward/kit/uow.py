"""The unit of work: one transaction holding a service's repositories, its outbox and its
parking lot, which commit together.

Every service handles an event the same way (docs/architecture.md, "One shape"):

- a handler is a plain function ``async def handle(event, uow) -> None``, registered in one
  table per service (``{PlacementMade: placement_made, ...}``);
- ``uow`` is the service's subclass of :class:`UnitOfWork`, which names its repositories
  (``uow.placements``, ``uow.ledger``...) and its configuration; the entrypoint wires them;
- aggregates record the domain events their changes raise (:class:`Aggregate`); repositories
  remember the aggregates they handed out or were given (:class:`Repository`), and the unit of
  work publishes what they recorded, through the outbox, before the transaction commits;
- an event that needs an aggregate not yet seen is parked with ``uow.parking.park(...)`` and
  run through the service's handler table again by ``uow.retry_parked(key)`` when the
  aggregate appears (homeward.kit.parking).

The kit's consumer opens the transaction and builds the unit of work for each event; a job or
a test opens one with :func:`unit_of_work`.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import functools
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any, Generic, Protocol, TypeVar

import asyncpg
from homeward.contracts import ContractError, Event, Payload, caused_by, new_event, service_source
from homeward.contracts.topics import publish_key

from . import outbox
from .aggregate import Aggregate, DomainEvent
from .authority import Rejected, refusal
from .clock import Clock
from .topics import Topics

if TYPE_CHECKING:
    from .parking import ParkingLot

__all__ = [
    "Aggregate",
    "DomainEvent",
    "Handler",
    "Repository",
    "UnitOfWork",
    "UnitOfWorkFactory",
    "handler_table",
    "unit_of_work",
]

P = TypeVar("P", bound=Payload)
A = TypeVar("A")


class Repository:
    """Base for a repository of aggregates: it remembers those it handed out or was given
    (``track``), so the unit of work can publish the events they record."""

    @property
    def seen(self) -> list[Any]:
        return self.__dict__.setdefault("_homeward_seen", [])  # type: ignore[no-any-return]

    def track(self, aggregate: A) -> A:
        if aggregate is not None and not any(a is aggregate for a in self.seen):
            self.seen.append(aggregate)
        return aggregate


class Handler(Protocol):
    def __call__(self, event: Event[Any], uow: Any, /) -> Awaitable[None]: ...


class UnitOfWork(Generic[P]):
    """What a handler gets: the service's repositories (named by its subclass), the clock, the
    outbox (``publish``) and the parking lot, all in the one open transaction.

    ``conn`` is for the service's subclass, to build its adapters; handlers use the
    repositories. ``cause`` is the event being handled (None in a job), ``origin`` the topic it
    came from; ``handlers`` is the service's table, which ``retry_parked`` runs parked events
    through."""

    def __init__(
        self,
        conn: asyncpg.Connection,  # type: ignore[type-arg]
        service: str,
        clock: Clock,
        cause: Event[Any] | None = None,
        topics: Topics | None = None,
        *,
        origin: str | None = None,
        handlers: Mapping[str, Handler] | None = None,
        dead_letter_key: bytes | None = None,
        parking_expiry: dt.timedelta | None = None,
    ) -> None:
        self.conn = conn
        self.service = service
        self.clock = clock
        self.cause = cause
        self.topics = topics or Topics()
        self.origin = origin
        self.handlers: Mapping[str, Handler] = handlers or {}
        self.dead_letter_key = dead_letter_key
        self.parking_expiry = parking_expiry
        self.published: list[Event[Any]] = []
        self._parking: ParkingLot | None = None

    # ---------------------------------------------------------------- the outbox

    async def publish(
        self,
        data: Payload,
        *,
        id: str | None = None,
        topic: str | None = None,
        time: dt.datetime | None = None,
    ) -> bool:
        """Queue an event in the outbox; False if an event with this id was already queued.

        Its ``time`` is when the fact happened: ``time`` if given, else its cause's time (the
        fact it follows from), else now (a job's own finding)."""
        source = service_source(self.service)
        if self.cause is not None:
            when = time or self.cause.time
            event: Event[Any] = caused_by(self.cause, data, source=source, id=id, time=when)
        else:
            event = new_event(data, source=source, id=id, time=time or self.clock.now())
        if topic is None:  # its own topic: keyed as the service keys what it publishes
            added = await outbox.add(
                self.conn, self.topics.internal(self.service), event, publish_key(self.service, data)
            )
        else:
            added = await outbox.add(self.conn, topic, event)
        if added:
            self.published.append(event)
        return added

    def repositories(self) -> list[Repository]:
        return [value for value in vars(self).values() if isinstance(value, Repository)]

    async def flush(self) -> int:
        """Publish what the aggregates the repositories saw have recorded; how many were new.
        The kit's consumer calls it after each handler; a job calls it before committing."""
        added = 0
        for repository in self.repositories():
            for aggregate in repository.seen:
                if isinstance(aggregate, Aggregate):
                    for e in aggregate.take_events():
                        added += await self.publish(e.payload, id=e.id, time=e.time, topic=e.topic)
        return added

    # ---------------------------------------------------------------- the parking lot

    @property
    def parking(self) -> ParkingLot:
        if self._parking is None:
            from .parking import ParkingLot

            self._parking = ParkingLot(
                self.conn,
                service=self.service,
                clock=self.clock,
                topics=self.topics,
                dead_letter_key=self.dead_letter_key,
                expiry=self.parking_expiry,
            )
        return self._parking

    async def park(self, event: Event[Any], *, awaiting: str, reason: str) -> bool:
        """Park ``event`` until ``awaiting`` (an aggregate's key, ``placement:P1``) appears."""
        return await self.parking.park(event, awaiting=awaiting, reason=reason, origin=self.origin)

    async def retry_parked(self, awaiting: str) -> int:
        """Run the events parked for ``awaiting`` through the service's handlers again, oldest
        fact first, each in a savepoint; how many were applied.

        One the handler refuses (``Rejected`` or a contract error) is dead-lettered with the
        reason and marked rejected; one it parks again stays parked. Any other error is the
        handling event's own failure (the kit retries or dead-letters it)."""

        applied = 0
        cause, origin = self.cause, self.origin
        try:
            for parked in await self.parking.waiting(awaiting):
                try:
                    event = parked.event()
                except ContractError as exc:
                    await self.parking.reject(parked, *refusal(exc))
                    continue
                handler = self.handlers.get(event.type)
                if handler is None:
                    await self.parking.reject(parked, "unknown-type", f"{self.service} no longer handles {event.type}")
                    continue
                self.cause, self.origin = event, parked.origin
                before = self.parking.parked_now.copy()
                try:
                    async with self.conn.transaction():  # a savepoint
                        await handler(event, self)
                        await self.flush()
                except (Rejected, ContractError) as exc:
                    await self.parking.reject(parked, *refusal(exc))
                    continue
                if parked.key in self.parking.parked_now - before:
                    continue  # still waiting (for something else now)
                await self.parking.resolve(parked, "applied", f"applied when {awaiting} appeared")
                applied += 1
        finally:
            self.cause, self.origin = cause, origin
        return applied


def handler_table(
    handlers: Mapping[type[Payload], Handler], *, refusals: tuple[type[Exception], ...] = ()
) -> dict[type[Payload], Handler]:
    """A service's one table of handlers. ``refusals`` are the domain's own exceptions for a
    fact it refuses (each with ``reason`` and ``message``): raised by a handler, they become the
    kit's ``Rejected``, so the event is dead-lettered with that reason."""
    if not refusals:
        return dict(handlers)

    def refusing(handler: Handler) -> Handler:
        @functools.wraps(handler)
        async def handle(event: Event[Any], uow: Any) -> None:
            try:
                await handler(event, uow)
            except refusals as exc:
                raise Rejected(str(getattr(exc, "reason", "refused")), str(getattr(exc, "message", exc))) from exc

        return handle

    return {payload: refusing(h) for payload, h in handlers.items()}


UnitOfWorkFactory = Callable[..., UnitOfWork[Any]]
"""Builds a service's unit of work: called as ``factory(conn, service, clock, cause=...,
topics=..., origin=..., handlers=..., dead_letter_key=..., parking_expiry=...)``; a service's
subclass takes its own keyword arguments too (``functools.partial`` binds them)."""


@contextlib.asynccontextmanager
async def unit_of_work(
    pool: asyncpg.Pool,  # type: ignore[type-arg]
    factory: UnitOfWorkFactory,
    service: str,
    clock: Clock,
    topics: Topics | None = None,
    **plumbing: Any,
) -> AsyncIterator[UnitOfWork[Any]]:
    """A unit of work in a transaction of its own, for a job or a test: what its aggregates
    recorded is published, and everything commits together, when the block ends without an
    error; an error rolls everything back."""
    async with pool.acquire() as conn, conn.transaction():
        uow = factory(conn, service, clock, topics=topics, **plumbing)
        yield uow
        await uow.flush()
