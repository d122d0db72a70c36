"""Wiring: the budget service's handlers, subscriptions, job, routes and published events."""

from __future__ import annotations

import functools

from homeward.contracts.events import AmountHeld, BudgetThresholdBreached, InvoiceVarianceFound
from homeward.contracts.plausibility import load_bounds
from homeward.kit.db import service_migrations
from homeward.kit.service import ServiceDefinition, Subscription
from homeward.kit.topics import Topics

from ..adapters.postgres import PgBudgetUnitOfWork
from ..handlers import HANDLERS
from ..ports import Config
from ..settings import BudgetSettings
from .http import build_routes
from .jobs import SERVICE, accrual_job, thresholds_job

MIGRATIONS = service_migrations(__file__)
# What the service reads; the main job uses it to know when all of it has been read.
SUBSCRIPTIONS = [Subscription(services=["ingress"]), Subscription(services=["placements"])]


def build_config(settings: BudgetSettings) -> Config:
    return Config(
        thresholds_percent=tuple(sorted(set(settings.thresholds_percent))),
        threshold_rearm_margin_percent=settings.threshold_rearm_margin_percent,
        invoice_tolerance_pence=settings.invoice_tolerance_pence,
        invoice_tolerance_percent=settings.invoice_tolerance_percent,
        delegations=dict(settings.delegations),
        rate_bounds=load_bounds(settings.rate_bounds),
    )


def build_definition(settings: BudgetSettings | None = None) -> ServiceDefinition:
    settings = settings or BudgetSettings()
    config = build_config(settings)
    topics = Topics(settings.kafka.topic_namespace)
    return ServiceDefinition(
        name=SERVICE,
        settings=settings,
        migrations=MIGRATIONS,
        handlers=HANDLERS,
        unit_of_work=functools.partial(PgBudgetUnitOfWork, config=config),
        subscriptions=SUBSCRIPTIONS,
        jobs=[accrual_job(topics, config, settings.accrual_batch_size), thresholds_job(topics, config)],
        routes=build_routes,
        publishes=[BudgetThresholdBreached, InvoiceVarianceFound, AmountHeld],
        one_batch_at_a_time=True,
    )
