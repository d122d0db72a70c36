"""Is the work moving? A stall detector for each consumer subscription and the outbox relay.

A :class:`ProgressTracker` watches one piece of work: a subscription's consumer (named by its
consumer group) or the outbox relay. It is *stalled* when work is waiting and nothing has been
committed for ``stall_after_s`` (``HOMEWARD_<SERVICE>_STALL_AFTER_S``, default 300):

* a consumer: a batch of records was read and keeps being rolled back and run again (transient
  database errors, the platform down, an unexpected error) without committing. A consumer with
  no records waiting is idle, never stalled; while Kafka is unreachable and the last batch had
  committed, nothing is known to wait, so it is not stalled either (``/readyz`` says ``kafka``);
* the relay: this replica leads (holds the relay lock), rows are pending, and no batch has been
  published or parked. A standby relay is never stalled: the leader, elsewhere, publishes.

A rebalance that takes partitions away from a consumer forgets what waited on them: another
replica reads them now. (With Kafka's eager rebalancing every rebalance revokes everything, so a
stuck batch's wait counts again from its next failed try.)

What counts as progress: a batch that commits (records handled, skipped or dead-lettered: a
dead letter *is* progress); a relay batch published or parked; nothing waiting.

A stall turns ``/readyz`` to 503 with a ``stalled`` list naming what, since when and the last
error, and sets ``homeward_stalled{service,what}`` to 1; ``homeward_seconds_since_progress``
says how long work has waited without progress (0 when nothing waits). Both are computed when
read, so a scrape is always current. ``/healthz`` (liveness) is not affected: restarting a pod
cures neither an unreachable Kafka or PostgreSQL nor a poison record; a person does
(docs/operations.md, "On call"). One ERROR log line "no progress: stalled" marks the moment
a stall begins, and one INFO line "progress again after a stall" its end.

Everything here is synchronous and takes its clock as an argument (seconds, ``time.time`` by
default), so the logic is tested without sleeping.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from .logging import get_logger, redact_text
from .metrics import SECONDS_SINCE_PROGRESS, STALLED

log = get_logger(__name__)

RELAY = "outbox relay"


def consumer_what(group_id: str) -> str:
    """The name a consumer subscription goes by in ``/readyz`` and in the metrics' ``what``."""
    return f"consumer {group_id}"


@dataclass(frozen=True)
class Stall:
    """What is stalled, since when, and why (the last error)."""

    what: str
    since: float  # seconds since the epoch, by the tracker's clock
    seconds: float
    last_error: str | None
    waiting: tuple[str, ...] = ()  # the partitions (``topic[partition]``) or rows that wait
    detail: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "what": self.what,
            "since": dt.datetime.fromtimestamp(self.since, dt.UTC).isoformat(),
            "seconds_without_progress": round(self.seconds, 1),
            "last_error": self.last_error,
            "waiting": list(self.waiting),
            **self.detail,
        }


class ProgressTracker:
    """Whether one piece of work makes progress (module docstring). ``failed`` after every
    attempt that did not commit while work waits, ``progressed`` after one that did or when
    nothing waits."""

    def __init__(
        self,
        service: str,
        what: str,
        *,
        stall_after_s: float,
        clock: Callable[[], float] = time.time,
        detail: dict[str, Any] | None = None,
        metrics: bool = True,
    ) -> None:
        self.service = service
        self.what = what
        self.stall_after_s = stall_after_s
        self.detail = dict(detail or {})
        self._clock = clock
        self._since: float | None = None  # when work started waiting without progress
        self._error: str | None = None
        self._waiting: set[str] = set()
        self._reported = False  # the stall was logged
        if metrics:
            # Computed at each scrape, so the gauges are current even when nothing calls in.
            STALLED.labels(service, what).set_function(lambda: 1.0 if self.stalled() else 0.0)
            SECONDS_SINCE_PROGRESS.labels(service, what).set_function(self.seconds_without_progress)

    def now(self) -> float:
        """The tracker's clock."""
        return self._clock()

    @property
    def waiting_since(self) -> float | None:
        """When work started waiting without progress; None when nothing waits."""
        return self._since

    # -- what happened
    def failed(self, error: str, *, waiting: Iterable[str] = (), since: float | None = None) -> None:
        """An attempt did not commit while work waits. ``waiting`` names what waits (it replaces
        what was named before; nothing: unchanged). ``since``: when that attempt began (a batch
        that spent a while in retries counts from its start); else now."""
        now = self._clock()
        start = now if since is None else min(since, now)
        if self._since is None or start < self._since:
            self._since = start
        self._error = redact_text(error)[:2000]
        if waiting:
            self._waiting = set(waiting)
        self.stalled()  # logs the moment the stall begins

    def progressed(self) -> None:
        """Work was committed, or nothing waits: not stalled."""
        if self._reported:
            log.info(
                "progress again after a stall",
                what=self.what,
                stalled_for_s=round(self._clock() - (self._since or self._clock()), 1),
            )
        self._since, self._error, self._waiting, self._reported = None, None, set(), False

    def forget(self, waiting: Iterable[str]) -> None:
        """These partitions are no longer this replica's (a rebalance): what waited on them is
        another consumer's now. Once none of what waited is left, nothing waits here."""
        gone = set(waiting)
        if self._since is None or not (self._waiting & gone):
            return
        self._waiting -= gone
        if not self._waiting:
            self.progressed()

    # -- what it says
    def seconds_without_progress(self) -> float:
        """How long work has waited without progress; 0 when nothing waits."""
        return 0.0 if self._since is None else max(0.0, self._clock() - self._since)

    def stalled(self) -> Stall | None:
        """The stall, if work has waited without progress for ``stall_after_s`` or more."""
        if self._since is None:
            return None
        seconds = self._clock() - self._since
        if seconds < self.stall_after_s:
            return None
        stall = Stall(self.what, self._since, seconds, self._error, tuple(sorted(self._waiting)), dict(self.detail))
        if not self._reported:
            self._reported = True
            log.error(
                "no progress: stalled",
                what=self.what,
                seconds_without_progress=round(seconds, 1),
                stall_after_s=self.stall_after_s,
                waiting=list(stall.waiting)[:20],
                last_error=self._error,
            )
        return stall


def stalls(trackers: Iterable[ProgressTracker]) -> list[Stall]:
    """The stalls among ``trackers``."""
    return [s for t in trackers if (s := t.stalled()) is not None]


def partitions_of(records: Iterable[Any]) -> set[str]:
    """``topic[partition]`` of each record (anything with ``topic`` and ``partition``)."""
    return {f"{r.topic}[{r.partition}]" for r in records}
