"""Wiring: the one place that builds the real dependencies and the service definition."""

from __future__ import annotations

from homeward.contracts.events import (
    LocalCapacityChanged,
    LocalCapacityUnavailable,
    ReferralTriaged,
    ReferralWaitBreached,
)
from homeward.kit.db import service_migrations
from homeward.kit.reference import load_reference
from homeward.kit.service import ServiceDefinition, Subscription

from ..adapters.postgres import pg_repositories
from ..handlers import Dependencies, build_handlers
from ..settings import ReferralsSettings
from . import http
from .jobs import SERVICE, capacity_job, wait_breach_job

MIGRATIONS = service_migrations(__file__)
# What the service reads; the main job uses it to know when all of it has been read.
SUBSCRIPTIONS = [Subscription(services=["ingress"]), Subscription(services=["placements"])]


def build_definition(settings: ReferralsSettings | None = None) -> ServiceDefinition:
    settings = settings or ReferralsSettings()
    deps = Dependencies(
        repositories=lambda uow: pg_repositories(uow.conn),
        reference=load_reference(settings.reference_data),
        # Unset, the runtime refuses to start (naming the variable) before any handler runs.
        patient_ref_key=key.get_secret_value() if (key := settings.common.patient_ref_key) else "",
    )
    return ServiceDefinition(
        name=SERVICE,
        settings=settings,
        migrations=MIGRATIONS,
        handlers=build_handlers(deps),
        subscriptions=SUBSCRIPTIONS,
        jobs=[wait_breach_job(settings), capacity_job(settings)],
        routes=lambda pool, clock: http.routes(pool, clock, settings.wait_thresholds_hours),
        publishes=[ReferralTriaged, LocalCapacityUnavailable, ReferralWaitBreached, LocalCapacityChanged],
    )
