"""Wiring: settings, reference data, review policy, handlers, subscriptions, jobs and routes."""

from __future__ import annotations

from typing import Any

from homeward.contracts.events import (
    PatientRepatriated,
    PlacementClosed,
    PlacementRateChanged,
    PlacementRegistered,
    ReviewDueSoon,
    ReviewOverdue,
)
from homeward.kit.db import service_migrations
from homeward.kit.reference import load_reference
from homeward.kit.service import ServiceDefinition, Subscription
from homeward.kit.topics import Topics

from ..adapters.policy_file import load_policy
from ..adapters.repository import PgPlacementRepository, PlacementRepository
from ..handlers import Context, PlacementHandlers
from ..settings import PlacementsSettings
from .http import build_routes
from .jobs import SERVICE, jobs

MIGRATIONS = service_migrations(__file__)
# What the service reads; the main job uses it to know when all of it has been read.
SUBSCRIPTIONS = [Subscription(services=["ingress"]), Subscription(services=["referrals"])]


PUBLISHES = (
    PlacementRegistered,
    PlacementRateChanged,
    PlacementClosed,
    ReviewDueSoon,
    ReviewOverdue,
    PatientRepatriated,
)


def build_context(settings: PlacementsSettings) -> Context:
    return Context(
        reference=load_reference(settings.reference_data),
        policy=load_policy(settings.review_policy_path()),
        patient_ref_key=settings.common.patient_ref_key.get_secret_value(),
        repatriation_window_days=settings.repatriation_window_days,
    )


def build_definition(settings: PlacementsSettings | None = None) -> ServiceDefinition:
    settings = settings or PlacementsSettings()
    topics = Topics(settings.kafka.topic_namespace)

    def repository_for(uow: Any) -> PlacementRepository:
        return PgPlacementRepository(uow.conn, dlq_topic=topics.dlq(SERVICE), origin_topic=topics.internal("ingress"))

    handlers = PlacementHandlers(build_context(settings), repository_for)
    return ServiceDefinition(
        name=SERVICE,
        settings=settings,
        migrations=MIGRATIONS,
        handlers=handlers.mapping(),
        subscriptions=SUBSCRIPTIONS,
        jobs=jobs(topics, settings.park_expiry_days),
        routes=build_routes,
        publishes=PUBLISHES,
    )
