"""Aggregates that record domain events, as a pure module: a service's ``domain`` may import it
(it reaches no I/O), and the unit of work (homeward.kit.uow) publishes what they recorded."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from homeward.contracts import Payload


@dataclass(frozen=True)
class DomainEvent:
    """What an aggregate recorded: the payload, its deterministic id, when the fact happened
    (None: when its cause happened) and, rarely, another service's topic."""

    payload: Payload
    id: str
    time: dt.datetime | None = None
    topic: str | None = None


class Aggregate:
    """Mixin for an aggregate (a dataclass, frozen or not) that records domain events.

    The events live outside the dataclass's fields, so they take no part in equality, ``repr``
    or ``dataclasses.replace``: a replaced aggregate starts with none."""

    def record_event(
        self, payload: Payload, *, id: str, time: dt.datetime | None = None, topic: str | None = None
    ) -> None:
        self.__dict__.setdefault("_homeward_events", []).append(DomainEvent(payload, id, time, topic))

    def take_events(self) -> list[DomainEvent]:
        """The recorded events, oldest first; the aggregate holds none afterwards."""
        return self.__dict__.pop("_homeward_events", [])  # type: ignore[no-any-return]
