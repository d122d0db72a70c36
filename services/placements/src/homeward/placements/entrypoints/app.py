"""Wiring: settings, reference data, review policy, handlers, subscriptions, jobs and routes."""

from __future__ import annotations

import functools

from homeward.contracts.events import (
    AmountHeld,
    PatientRepatriated,
    PlacementAwaitingAgreement,
    PlacementClosed,
    PlacementRateChanged,
    PlacementRegistered,
    RepatriationCorrected,
    ReviewDueSoon,
    ReviewOverdue,
)
from homeward.contracts.plausibility import load_bounds
from homeward.kit.crypto import KeyProblem
from homeward.kit.db import service_migrations
from homeward.kit.reference import load_reference
from homeward.kit.service import Job, ServiceDefinition, Subscription
from homeward.kit.topics import Topics
from pydantic import SecretStr

from ..adapters.patients import PatientKeys, protect_job
from ..adapters.policy_file import load_policy
from ..adapters.repository import PgPlacementsUnitOfWork
from ..handlers import HANDLERS
from ..ports import Config
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
    RepatriationCorrected,
    PlacementAwaitingAgreement,
    AmountHeld,
)


def _secret(value: SecretStr | None) -> str:
    # Unset, the runtime refuses to start (naming the variable) before any handler runs.
    return value.get_secret_value() if value is not None else ""


def build_config(settings: PlacementsSettings) -> Config:
    return Config(
        reference=load_reference(settings.reference_data),
        policy=load_policy(settings.review_policy_path()),
        patient_ref_key=_secret(settings.common.patient_ref_key),
        repatriation_window_days=settings.repatriation_window_days,
        delegations=dict(settings.delegations),
        rate_bounds=load_bounds(settings.rate_bounds),
    )


def build_definition(settings: PlacementsSettings | None = None) -> ServiceDefinition:
    settings = settings or PlacementsSettings()
    topics = Topics(settings.kafka.topic_namespace)

    keys = patient_keys(settings)
    return ServiceDefinition(
        name=SERVICE,
        settings=settings,
        migrations=MIGRATIONS,
        handlers=HANDLERS,
        unit_of_work=functools.partial(PgPlacementsUnitOfWork, config=build_config(settings), keys=keys),
        subscriptions=SUBSCRIPTIONS,
        jobs=[*jobs(topics), *patient_jobs(keys)],
        routes=build_routes,
        publishes=PUBLISHES,
        stores_nhs_numbers=True,
    )


def patient_keys(settings: PlacementsSettings) -> PatientKeys | None:
    """The keys that protect people's identities, or None while they are not configured (the
    runtime then refuses to start, naming the variable)."""
    common = settings.common
    if common.patient_ref_key is None or common.nhs_number_key is None:
        return None
    try:
        return PatientKeys(common.pseudonymiser(), common.nhs_number_cipher())
    except KeyProblem:
        return None


def patient_jobs(keys: PatientKeys | None) -> list[Job]:
    # At start (before consuming) and every five minutes: seal, re-seal and re-key patients.
    return [] if keys is None else [Job("protect-patients", protect_job(keys), interval_s=300, at_start=True)]
