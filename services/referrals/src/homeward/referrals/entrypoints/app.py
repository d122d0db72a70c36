"""Wiring: the one place that builds the real dependencies and the service definition."""

from __future__ import annotations

import functools

from homeward.contracts.events import (
    LocalCapacityChanged,
    LocalCapacityUnavailable,
    ReferralTriaged,
    ReferralWaitBreached,
)
from homeward.kit.db import service_migrations
from homeward.kit.reference import load_reference
from homeward.kit.service import ServiceDefinition, Subscription
from homeward.kit.uow import UnitOfWorkFactory

from ..adapters.postgres import PgReferralsUnitOfWork
from ..handlers import HANDLERS
from ..ports import Config
from ..settings import ReferralsSettings
from . import http
from .jobs import SERVICE, capacity_job, wait_breach_job

MIGRATIONS = service_migrations(__file__)
# What the service reads; the main job uses it to know when all of it has been read.
SUBSCRIPTIONS = [Subscription(services=["ingress"]), Subscription(services=["placements"])]


def build_config(settings: ReferralsSettings) -> Config:
    return Config(
        reference=load_reference(settings.reference_data),
        # Unset, the runtime refuses to start (naming the variable) before any handler runs.
        patient_ref_key=key.get_secret_value() if (key := settings.common.patient_ref_key) else "",
        wait_thresholds_hours=settings.wait_thresholds_hours,
    )


def unit_of_work_factory(settings: ReferralsSettings) -> UnitOfWorkFactory:
    return functools.partial(PgReferralsUnitOfWork, config=build_config(settings))


def build_definition(settings: ReferralsSettings | None = None) -> ServiceDefinition:
    settings = settings or ReferralsSettings()
    factory = unit_of_work_factory(settings)
    return ServiceDefinition(
        name=SERVICE,
        settings=settings,
        migrations=MIGRATIONS,
        handlers=HANDLERS,
        unit_of_work=factory,
        subscriptions=SUBSCRIPTIONS,
        jobs=[wait_breach_job(settings, factory), capacity_job(settings, factory)],
        routes=lambda pool, clock: http.routes(pool, clock, settings.wait_thresholds_hours),
        publishes=[ReferralTriaged, LocalCapacityUnavailable, ReferralWaitBreached, LocalCapacityChanged],
    )
