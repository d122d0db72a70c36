"""Wiring: the budget service's handlers, subscriptions, job, routes and published events."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from homeward.contracts.events import BudgetThresholdBreached, InvoiceVarianceFound
from homeward.kit.consumer import UnitOfWork
from homeward.kit.service import ServiceDefinition, Subscription
from homeward.kit.topics import Topics

from ..adapters.postgres import PgBudgetRepository
from ..handlers import Handlers, Rules
from ..settings import BudgetSettings
from .http import build_routes
from .jobs import SERVICE, accrual_job


def migrations_dir() -> Path:
    """The SQL migrations: packaged beside the code in a wheel, ``services/budget/migrations`` in the source tree."""
    packaged = Path(__file__).resolve().parents[1] / "migrations"
    return packaged if packaged.is_dir() else Path(__file__).resolve().parents[4] / "migrations"


def rules_from(settings: BudgetSettings) -> Rules:
    return Rules(
        thresholds_percent=tuple(sorted(set(settings.thresholds_percent))),
        invoice_tolerance_pence=settings.invoice_tolerance_pence,
        invoice_tolerance_percent=settings.invoice_tolerance_percent,
    )


def _repository(uow: UnitOfWork[Any]) -> PgBudgetRepository:
    return PgBudgetRepository(uow.conn)


def build_definition(settings: BudgetSettings | None = None) -> ServiceDefinition:
    settings = settings or BudgetSettings()
    rules = rules_from(settings)
    topics = Topics(settings.kafka.topic_namespace)
    return ServiceDefinition(
        name=SERVICE,
        settings=settings,
        migrations=migrations_dir(),
        handlers=Handlers(_repository, rules).mapping(),
        subscriptions=[Subscription(partners=True), Subscription(services=["placements"])],
        jobs=[accrual_job(topics, rules, settings.accrual_batch_size)],
        routes=build_routes,
        publishes=[BudgetThresholdBreached, InvoiceVarianceFound],
    )
