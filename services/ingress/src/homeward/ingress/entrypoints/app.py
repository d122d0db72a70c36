"""Wiring: the ingress's service definition."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

import asyncpg
from homeward.contracts.events import INBOUND
from homeward.kit.clock import Clock
from homeward.kit.db import service_migrations
from homeward.kit.service import Job, ServiceDefinition, Subscription
from starlette.routing import BaseRoute

from ..adapters import receipts
from ..adapters.postgres import PgIngressUnitOfWork
from ..handlers import HANDLERS, SERVICE
from ..settings import IngressSettings
from .http import FrontDoor

MIGRATIONS = service_migrations(__file__)
# The ingress is the only reader of the partner topics; the main job waits on it too.
SUBSCRIPTIONS = [Subscription(partners=True)]


def receipts_retention(settings: IngressSettings) -> Job:
    """Delete HTTP receipts older than http_receipt_retention_days (0 keeps them)."""

    async def run(pool: asyncpg.Pool, clock: Clock) -> int:  # type: ignore[type-arg]
        if settings.http_receipt_retention_days > 0:
            await receipts.prune(pool, dt.timedelta(days=settings.http_receipt_retention_days))
        return 0  # it emits no events

    return Job("http-receipts-retention", run, interval_s=settings.http_receipt_retention_interval_s)


def build_definition(settings: IngressSettings | None = None) -> ServiceDefinition:
    settings = settings or IngressSettings()
    resolved = settings

    def routes(pool: asyncpg.Pool, clock: Clock) -> Sequence[BaseRoute]:  # type: ignore[type-arg]
        return FrontDoor(pool, resolved, clock=clock).routes()

    return ServiceDefinition(
        name=SERVICE,
        settings=settings,
        migrations=MIGRATIONS,
        handlers=HANDLERS,
        unit_of_work=PgIngressUnitOfWork,
        subscriptions=SUBSCRIPTIONS,
        jobs=[receipts_retention(settings)],
        routes=routes,
        publishes=list(INBOUND),
    )
