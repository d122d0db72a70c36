"""The HTTP front door: ``POST /events`` takes CloudEvents over HTTP for partners that cannot
run a Kafka client, and ``GET /openapi.json`` describes it.

A request goes through, in this order (each step's refusal is one RFC 9457 problem):

1. the API key (``Authorization: Bearer <key>`` or ``X-API-Key``) names the partner: else 401;
2. the partner's token bucket has a token: else 429 with ``Retry-After``;
3. the Content-Type names a CloudEvents content mode: else 415;
4. the body is at most ``http_max_request_bytes``, by Content-Length and as streamed: else 413;
5. every event meets the contracts (400), may be sent by this partner (403) and does not use
   one id for two events (409): the same checks as the Kafka path, all or nothing;
6. the partner's topic exists (else 503: an event is never queued for a topic Kafka lacks);
7. one transaction writes a receipt per new (source, id) and queues the event for
   ``partner.<ODS>.events`` in the outbox, which the relay publishes with the kit's
   idempotent acks=all producer, in structured mode, keyed by the entity. An id seen before
   with the same content is a resend (200, nothing queued); with other content, 409.

202 means the event is committed to the ingress's database and will be on the partner topic
shortly; from there the ingress reads it like any other partner record, so HTTP and Kafka
events share everything downstream.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg
from homeward.contracts import FieldProblem
from homeward.kit.clock import Clock, SystemClock
from homeward.kit.http import PublicRoute
from homeward.kit.kafka import make_admin
from homeward.kit.logging import get_logger
from homeward.kit.settings import KafkaSettings
from homeward.kit.topics import Topics
from homeward.kit.uow import unit_of_work
from prometheus_client import Counter
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute

from ..adapters import keys
from ..adapters.postgres import PgIngressUnitOfWork
from ..domain.admission import Admitted, admit
from ..domain.binding import PROBLEM_TYPE, Mode, Problem, mode_of, parse_request
from ..domain.keys import key_id_of
from ..domain.ratelimit import TokenBuckets
from ..ports import SERVICE, IngressUnitOfWork, Recorded, ReusedIds
from ..settings import IngressSettings
from ..views import BatchReceipt, Receipt
from .openapi import document

log = get_logger(__name__)

HTTP_ANSWERS = Counter(
    "homeward_ingress_http_answers_total", "Answers of the ingress's POST /events, by status", ["status"]
)
WWW_AUTHENTICATE = 'Bearer realm="homeward"'
_OTHER_METHODS = ["GET", "PUT", "PATCH", "DELETE", "OPTIONS"]
_UNAVAILABLE_STATES = ("08", "40", "53", "57", "58")  # connection, transaction rollback, resources, operator


def problem_response(problem: Problem) -> Response:
    return JSONResponse(problem.body(), status_code=problem.status, headers=problem.headers, media_type=PROBLEM_TYPE)


def _unavailable(detail: str) -> Problem:
    return Problem(503, "unavailable", detail, headers={"Retry-After": "5"})


def _is_outage(exc: BaseException) -> bool:
    if isinstance(exc, asyncpg.PostgresError):
        return str(getattr(exc, "sqlstate", "") or "")[:2] in _UNAVAILABLE_STATES
    return isinstance(exc, OSError | TimeoutError | asyncpg.InterfaceError | asyncpg.PostgresConnectionError)


class PartnerTopics:
    """Which partner topics exist. The outbox publishes in order and stops at a record Kafka
    cannot take for a reason that may pass, such as a missing topic, so an event for a topic
    that is not there would hold up everything the ingress publishes after it: the front door
    refuses (503) to queue one. The list is trusted for ``max_age_s``; a topic not on it is
    looked up again at most every ``recheck_s`` (so a new partner's topic is found at once)."""

    def __init__(
        self,
        list_topics: Callable[[], Awaitable[set[str]]],
        *,
        max_age_s: float = 60.0,
        recheck_s: float = 2.0,
        now: Callable[[], float] = time.monotonic,
    ) -> None:
        self._list = list_topics
        self.max_age_s = max_age_s
        self.recheck_s = recheck_s
        self._now = now
        self._names: set[str] = set()
        self._at: float | None = None
        self._failed_at: float | None = None
        self._error: Exception | None = None
        self._lock = asyncio.Lock()

    def _age(self) -> float:
        return float("inf") if self._at is None else self._now() - self._at

    def _recent_failure(self, topic: str) -> bool:
        """While Kafka could not be listed a moment ago: a known topic still counts (the outbox
        keeps the event until Kafka is back); for an unknown one the error is raised again."""
        if self._failed_at is None or self._now() - self._failed_at >= self.recheck_s:
            return False
        if topic in self._names:
            return True
        assert self._error is not None
        raise self._error

    async def exists(self, topic: str) -> bool:
        if topic in self._names and self._age() < self.max_age_s:
            return True
        if self._age() < self.recheck_s:  # listed a moment ago
            return topic in self._names
        if self._recent_failure(topic):
            return True
        async with self._lock:  # one lookup at a time; the others wait for its answer
            if self._age() < self.recheck_s:
                return topic in self._names
            if self._recent_failure(topic):
                return True
            try:
                names = await self._list()
            except Exception as exc:
                self._failed_at, self._error = self._now(), exc
                if topic in self._names:
                    return True
                raise
            self._names, self._at, self._failed_at, self._error = names, self._now(), None, None
        return topic in self._names


def kafka_topic_lister(settings: KafkaSettings, timeout_s: float = 10.0) -> Callable[[], Awaitable[set[str]]]:
    async def list_topics() -> set[str]:
        admin = make_admin(settings)
        try:
            await asyncio.wait_for(admin.start(), timeout_s)
            return set(await asyncio.wait_for(admin.list_topics(), timeout_s))
        finally:
            with contextlib.suppress(Exception):
                await admin.close()

    return list_topics


def presented_key(request: Request) -> str | None:
    auth = request.headers.get("authorization", "").strip()
    scheme, _, token = auth.partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    api_key = request.headers.get("x-api-key", "").strip()
    return api_key or None


class FrontDoor:
    def __init__(
        self,
        pool: asyncpg.Pool,  # type: ignore[type-arg]
        settings: IngressSettings,
        *,
        partner_topics: PartnerTopics | None = None,
        buckets: TokenBuckets | None = None,
        clock: Clock | None = None,
    ) -> None:
        self.pool = pool
        self.clock = clock or SystemClock()
        self.settings = settings
        self.topics = Topics(settings.kafka.topic_namespace)
        self.partner_topics = partner_topics or PartnerTopics(
            kafka_topic_lister(settings.kafka),
            max_age_s=settings.http_topic_cache_s,
            recheck_s=settings.http_topic_recheck_s,
        )
        self.buckets = buckets or TokenBuckets(settings.http_rate_per_s, settings.http_rate_burst)
        self._openapi: dict[str, Any] | None = None

    def routes(self) -> list[BaseRoute]:
        # Partners' routes: they sign in with their API keys (step 1 above), never with a staff
        # token, so the kit's staff sign-in leaves them alone (PublicRoute). The OpenAPI document
        # describes the partner API and is public like docs/partner-guide.md.
        return [
            PublicRoute("/events", self.post_events, methods=["POST"]),
            PublicRoute("/events", self.other_method, methods=_OTHER_METHODS),
            PublicRoute("/openapi.json", self.openapi, methods=["GET"]),
        ]

    # ---- endpoints -----------------------------------------------------------------------
    async def openapi(self, _: Request) -> Response:
        if self._openapi is None:
            self._openapi = document()
        return JSONResponse(self._openapi)

    async def other_method(self, request: Request) -> Response:
        return problem_response(
            Problem(
                405,
                "method-not-allowed",
                f"{request.method} is not allowed on /events: POST one event, or a batch",
                headers={"Allow": "POST"},
            )
        )

    async def post_events(self, request: Request) -> Response:
        try:
            response = await self._post(request)
        except Problem as problem:
            response = problem_response(problem)
        except Exception as exc:
            if _is_outage(exc):
                log.warning("POST /events: the database is unavailable", error=f"{type(exc).__name__}: {exc}")
                response = problem_response(_unavailable("The ingress's database is unavailable; try again shortly"))
            else:
                log.exception("POST /events failed unexpectedly")
                response = problem_response(
                    Problem(500, "internal-error", "Homeward could not handle this request; it has been logged")
                )
        HTTP_ANSWERS.labels(str(response.status_code)).inc()
        return response

    # ---- the steps -----------------------------------------------------------------------
    async def _post(self, request: Request) -> Response:
        ods = await self._authenticate(request)
        wait = self.buckets.take(ods)
        if wait > 0:
            retry = max(1, int(wait + 0.999))
            raise Problem(
                429,
                "rate-limited",
                f"{ods} may send {self.settings.http_rate_per_s:g} requests a second (bursts of "
                f"{self.settings.http_rate_burst}); try again in {retry} s",
                headers={"Retry-After": str(retry)},
            )
        mode = mode_of(request.headers.get("content-type"))
        body = await self._body(request)
        events = admit(ods, parse_request(mode, request.headers, body))
        topic = self.topics.partner(ods)
        try:
            exists = await self.partner_topics.exists(topic)
        except Exception as exc:
            log.warning("cannot list Kafka topics", error=f"{type(exc).__name__}: {exc}")
            raise _unavailable("Kafka cannot be reached to check your topic; try again shortly") from exc
        if not exists:
            log.warning("a partner sent over HTTP but its topic does not exist", ods=ods, topic=topic)
            raise _unavailable(
                f"{ods}'s topic {topic} does not exist yet, so nothing can be accepted for it; "
                "Homeward's operators create it (the init step, or the KafkaTopic resources)"
            )
        try:
            async with unit_of_work(self.pool, PgIngressUnitOfWork, SERVICE, self.clock, self.topics) as uow:
                assert isinstance(uow, IngressUnitOfWork)
                recorded = await uow.receipts.record(topic, ods, events, key_id_of(presented_key(request) or ""))
        except ReusedIds as exc:
            raise Problem(
                409,
                "conflicting-duplicate",
                "An event with this id was accepted before with different content; nothing was accepted. "
                "Each new event needs a new id (a resend keeps the id and the content)",
                errors=[FieldProblem(a.where + "id", "already used for a different event") for a in exc.events],
                reason="conflicting-duplicate",
            ) from None
        return self._answer(mode, events, recorded)

    async def _authenticate(self, request: Request) -> str:
        presented = presented_key(request)
        if presented is None:
            raise Problem(
                401,
                "unauthenticated",
                "Send your API key as 'Authorization: Bearer <key>' or 'X-API-Key: <key>'",
                headers={"WWW-Authenticate": WWW_AUTHENTICATE},
            )
        ods = await keys.organisation_of(self.pool, presented)
        if ods is None:
            raise Problem(
                401,
                "unauthenticated",
                "The API key is not valid, or it was revoked",
                headers={"WWW-Authenticate": WWW_AUTHENTICATE + ', error="invalid_token"'},
            )
        return ods

    async def _body(self, request: Request) -> bytes:
        limit = self.settings.http_max_request_bytes
        too_large = Problem(413, "too-large", f"A request may carry at most {limit} bytes; send fewer events at once")
        declared = request.headers.get("content-length")
        if declared is not None and declared.strip().isdigit() and int(declared) > limit:
            raise too_large
        chunks: list[bytes] = []
        size = 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise too_large
            chunks.append(chunk)
        return b"".join(chunks)

    def _answer(self, mode: Mode, events: list[Admitted], recorded: Recorded) -> Response:
        first_copy: dict[tuple[str, str], int] = {}
        receipts = []
        for a in events:
            first = first_copy.setdefault(a.ident, a.index)
            status = "accepted" if a.ident in recorded.new and first == a.index else "duplicate"
            receipts.append(Receipt(id=a.event.id, source=a.event.source, type=a.event.type, status=status))
        code = 202 if recorded.new else 200
        answer = receipts[0] if mode is not Mode.BATCH else BatchReceipt.of(receipts)
        return JSONResponse(answer.model_dump(mode="json"), status_code=code)
