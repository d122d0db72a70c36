"""Wiring: the ingress's service definition."""

from __future__ import annotations

from homeward.contracts.events import INBOUND
from homeward.kit.db import service_migrations
from homeward.kit.service import ServiceDefinition, Subscription

from ..handlers import SERVICE, build_handlers
from ..settings import IngressSettings

MIGRATIONS = service_migrations(__file__)
# The ingress is the only reader of the partner topics; the main job waits on it too.
SUBSCRIPTIONS = [Subscription(partners=True)]


def build_definition(settings: IngressSettings | None = None) -> ServiceDefinition:
    settings = settings or IngressSettings()
    return ServiceDefinition(
        name=SERVICE,
        settings=settings,
        migrations=MIGRATIONS,
        handlers=build_handlers(),
        subscriptions=SUBSCRIPTIONS,
        publishes=list(INBOUND),
    )
