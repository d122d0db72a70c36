"""structlog configuration: JSON lines with bound context, and NHS numbers redacted.

Anything that looks like an NHS number (ten digits, optionally grouped 3-3-4) is
replaced wherever it appears in a log line, whether or not its check digit is valid:
a near-miss is still personal data.

Outages stay readable: :class:`RateLimiter` lets a repeated message through at most once
per interval, with the count of the repeats it held back (``suppressed``); on the handler,
:class:`RepeatFilter` does the same for any warning or error line repeated exactly, whoever
logs it. The Kafka
client's own lines (aiokafka retries every 100 ms while a broker is away) are limited the
same way, and its transient metadata errors, which it recovers from by itself (no leader
yet for a partition just created, a coordinator that moved), are lowered: INFO while the
service starts, WARNING afterwards. Only real faults are logged as errors.
"""

from __future__ import annotations

import logging
import sys
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable, MutableMapping
from typing import Any

import structlog
from aiokafka import errors as kafka_errors

from .redaction import NHS_NUMBER_LIKE as NHS_NUMBER_LIKE
from .redaction import REDACTED, redact_text


def _redact(value: Any) -> Any:
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, int) and not isinstance(value, bool) and 10**9 <= abs(value) < 10**10:
        return REDACTED
    if isinstance(value, dict):
        return {k: _redact(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_redact(v) for v in value]
    if isinstance(value, BaseException):
        return redact_text(f"{type(value).__name__}: {value}")
    return value


def redact_nhs_numbers(_: Any, __: str, event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """structlog processor: redact NHS-number-like values everywhere in the event."""
    for key in list(event_dict):
        event_dict[key] = _redact(event_dict[key])
    return event_dict


class _RedactingFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return redact_text(super().format(record))


REPEAT_EVERY_S = 30.0
"""How often a repeated message is let through by default."""


class RateLimiter:
    """Lets the first of a run of repeated messages through, then at most one every
    ``every_s`` seconds, each with how many repeats were held back since the last one.

    Keys are whatever identifies "the same message" (the event and the error's type, say);
    only the ``max_keys`` most recently seen are remembered."""

    def __init__(
        self, every_s: float = REPEAT_EVERY_S, *, max_keys: int = 1024, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.every_s = every_s
        self._max_keys = max_keys
        self._clock = clock
        self._seen: OrderedDict[Hashable, list[float]] = OrderedDict()  # key -> [let through at, held back]

    def hit(self, key: Hashable) -> int | None:
        """None: hold this one back. Otherwise let it through: the number held back since the
        last one let through (0 for the first)."""
        now = self._clock()
        entry = self._seen.get(key)
        if entry is not None and now - entry[0] < self.every_s:
            entry[1] += 1
            return None
        held = 0 if entry is None else int(entry[1])
        self._seen[key] = [now, 0]
        self._seen.move_to_end(key)
        while len(self._seen) > self._max_keys:
            self._seen.popitem(last=False)
        return held

    def log(self, logger: Any, level: str, event: str, *, key: Hashable = None, **fields: Any) -> bool:
        """Log ``event`` through a structlog logger unless it repeats too soon; a line let
        through after repeats carries ``suppressed=<count>``. ``level`` is a logger method:
        "warning", "error", "exception"... Returns whether it was logged."""
        held = self.hit((event, key))
        if held is None:
            return False
        if held:
            fields["suppressed"] = held
        getattr(logger, level)(event, **fields)
        return True


# The Kafka client's errors that it recovers from by itself: leadership and coordinators
# moving (a partition just created has no leader for a moment, a broker restarts).
TRANSIENT_KAFKA_ERRORS: tuple[type[Exception], ...] = (
    kafka_errors.NotLeaderForPartitionError,
    kafka_errors.LeaderNotAvailableError,
    kafka_errors.ReplicaNotAvailableError,
    kafka_errors.GroupCoordinatorNotAvailableError,
    kafka_errors.NotCoordinatorForGroupError,
    kafka_errors.GroupLoadInProgressError,
    kafka_errors.RebalanceInProgressError,
    kafka_errors.NotControllerError,
    kafka_errors.StaleMetadata,
)
# Transient only while the service starts: a topic created a moment ago may not be in
# every broker's metadata yet. Later, a topic that is not found is a real fault.
_STARTING_KAFKA_ERRORS: tuple[type[Exception], ...] = (kafka_errors.UnknownTopicOrPartitionError,)
_STARTING_KAFKA_MESSAGES = frozenset(
    {
        "Topic %s not found in cluster metadata",
        "Topic %s is not available during auto-create initialization",
    }
)
_KAFKA_CLIENT_LOGGERS = ("aiokafka", "kafka")


def _kafka_error_in(args: Any) -> type[Exception] | None:
    for arg in args if isinstance(args, tuple) else ():
        if isinstance(arg, kafka_errors.KafkaError):
            return type(arg)
        if isinstance(arg, type) and issubclass(arg, kafka_errors.KafkaError):
            return arg
    return None


class KafkaClientFilter(logging.Filter):
    """On the handler: lowers the Kafka client's transient errors (see the module's
    docstring) and lets each of its repeated lines through at most once every ``every_s``
    seconds, with ``suppressed`` counting the repeats held back. Other loggers pass as they are."""

    def __init__(
        self,
        *,
        every_s: float = REPEAT_EVERY_S,
        starting_s: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__()
        self._limiter = RateLimiter(every_s, clock=clock)
        self._clock = clock
        self._starting_until = clock() + starting_s

    def _lower(self, record: logging.LogRecord) -> None:
        if record.levelno <= logging.INFO:
            return
        starting = self._clock() < self._starting_until
        error = _kafka_error_in(record.args)
        if starting and (
            record.msg in _STARTING_KAFKA_MESSAGES
            or (error is not None and issubclass(error, TRANSIENT_KAFKA_ERRORS + _STARTING_KAFKA_ERRORS))
        ):
            level = logging.INFO
        elif error is not None and issubclass(error, TRANSIENT_KAFKA_ERRORS):
            level = logging.WARNING
        else:
            return
        if level < record.levelno:
            record.levelno, record.levelname = level, logging.getLevelName(level)

    def filter(self, record: logging.LogRecord) -> bool:
        if not record.name.startswith(_KAFKA_CLIENT_LOGGERS):
            return True
        self._lower(record)
        if record.levelno < logging.getLogger().getEffectiveLevel():
            return False
        held = self._limiter.hit((record.name, record.levelno, str(record.msg)))
        if held is None:
            return False
        if held:
            record.suppressed = held
        return True


_OWN_HANDLER_LOGGERS = ("faststream",)
_NOT_THE_MESSAGE = frozenset({"timestamp", "_record", "_from_structlog", "suppressed"})


class RepeatFilter(logging.Filter):
    """On the handler, for every logger: a warning or error line that repeats *exactly* (the
    same logger, level and message with the same fields, the time apart) passes at most once
    every ``every_s`` seconds; the one let through after repeats carries ``suppressed``, the
    count held back. What an outage does to a service (the same "database unavailable" or
    "Kafka not taking records" line from every retry loop) becomes one line per interval;
    lines that differ in any field (one per dead-lettered record, say) all pass. INFO and
    DEBUG lines are left alone."""

    def __init__(
        self,
        *,
        every_s: float = REPEAT_EVERY_S,
        level: int = logging.WARNING,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__()
        self._limiter = RateLimiter(every_s, clock=clock)
        self._level = level

    @staticmethod
    def _key(record: logging.LogRecord) -> Hashable:
        msg = record.msg
        if isinstance(msg, dict):  # a structlog line: its event and fields
            body = repr(sorted((str(k), repr(v)) for k, v in msg.items() if k not in _NOT_THE_MESSAGE))
        else:
            try:
                body = record.getMessage()
            except Exception:  # a bad format string: its template is the message
                body = str(msg)
            if record.exc_info and record.exc_info[0] is not None:
                body += f"|{record.exc_info[0].__name__}: {record.exc_info[1]}"
        return (record.name, record.levelno, body)

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < self._level:
            return True
        held = self._limiter.hit(self._key(record))
        if held is None:
            return False
        if held:
            if isinstance(record.msg, dict):
                record.msg["suppressed"] = held
            else:
                record.suppressed = held
        return True


def configure_logging(
    service: str,
    level: str = "INFO",
    fmt: str = "json",
    *,
    repeat_every_s: float = REPEAT_EVERY_S,
    starting_s: float = 60.0,
) -> None:
    """Configure structlog and the standard library (aiokafka, faststream, uvicorn) alike.

    The Kafka client's lines go through :class:`KafkaClientFilter`: transient metadata errors
    are INFO for ``starting_s`` seconds, WARNING afterwards, and a repeated line appears at
    most once every ``repeat_every_s`` seconds. Every other logger's warnings and errors go
    through :class:`RepeatFilter`: an exact repeat appears at most once every
    ``repeat_every_s`` seconds, with the count of those held back."""
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.format_exc_info,
        structlog.stdlib.ExtraAdder(allow=("suppressed",)),
        redact_nhs_numbers,
    ]
    renderer: Any = (
        structlog.processors.JSONRenderer() if fmt == "json" else structlog.dev.ConsoleRenderer(colors=False)
    )
    structlog.configure(
        # A line below the level is dropped first, before any processor runs: handlers log each
        # event they handle at DEBUG, so at INFO those lines cost almost nothing.
        processors=[structlog.stdlib.filter_by_level, *shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=False,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter)
    handler.addFilter(KafkaClientFilter(every_s=repeat_every_s, starting_s=starting_s))
    handler.addFilter(RepeatFilter(every_s=repeat_every_s))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for noisy in ("aiokafka", "kafka"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
    # FastStream gives its logger a plain stderr handler of its own and stops it propagating:
    # its lines would escape the JSON format, the redaction and the repeat filter.
    import faststream  # noqa: F401  (its logger is set up on import: do that first)

    for own in _OWN_HANDLER_LOGGERS:
        lib = logging.getLogger(own)
        lib.handlers[:] = []
        lib.propagate = True
    structlog.contextvars.clear_contextvars()
    structlog.contextvars.bind_contextvars(service=service)


def get_logger(name: str | None = None) -> structlog.stdlib.BoundLogger:
    return structlog.get_logger(name)  # type: ignore[no-any-return]
