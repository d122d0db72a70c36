"""Wiring: the notifications service as the kit runs it."""

from __future__ import annotations

import functools

from homeward.contracts.events import NotificationFailed, NotificationSent
from homeward.kit.db import service_migrations
from homeward.kit.service import ServiceDefinition, Subscription

from ..adapters.postgres import PgNotificationsUnitOfWork
from ..adapters.templates import JinjaRenderer
from ..domain.alerts import DEFAULT_RESPOND_WITHIN_DAYS, AlertPolicy
from ..domain.timeliness import Timeliness
from ..handlers import HANDLERS
from ..ports import Config, Mailer
from ..settings import NotificationsSettings
from . import http
from .jobs import digest_job, sender_job

SERVICE = "notifications"

MIGRATIONS = service_migrations(__file__)
# What the service reads; the main job uses it to know when all of it has been read.
SUBSCRIPTIONS = [Subscription(services=["placements", "referrals", "budget"])]


def build_config(settings: NotificationsSettings) -> Config:
    return Config(
        policy=AlertPolicy(respond_within_days={**DEFAULT_RESPOND_WITHIN_DAYS, **settings.respond_within_days}),
        timeliness=Timeliness(settings.history_after_days),
    )


def build_definition(
    settings: NotificationsSettings | None = None, *, mailer: Mailer | None = None
) -> ServiceDefinition:
    settings = settings or NotificationsSettings()
    renderer = JinjaRenderer()
    return ServiceDefinition(
        name=SERVICE,
        settings=settings,
        migrations=MIGRATIONS,
        handlers=HANDLERS,
        unit_of_work=functools.partial(PgNotificationsUnitOfWork, config=build_config(settings), renderer=renderer),
        subscriptions=SUBSCRIPTIONS,
        jobs=[sender_job(settings, mailer), digest_job(settings, renderer)],
        routes=http.routes,
        publishes=[NotificationSent, NotificationFailed],
    )
