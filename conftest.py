"""Fixtures shared by every service's tests that need more than one service.

``ingress`` runs the real ingress service in-process, on the test's own topic namespace and
its own database, so a test that sends partner events on ``partner.<ODS>.events`` exercises
the real path: partner topic → ingress (validated, authorised, de-duplicated once) →
``homeward.ingress.v1`` → the service under test. Its HTTP server (the front door,
``POST /events``) listens on a port of its own; ``ingress_factory(**settings)`` starts one with
other settings (a small rate limit, say).
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import asyncpg
import pytest
from homeward.ingress.entrypoints.app import build_definition
from homeward.ingress.settings import IngressSettings
from homeward.kit.service import ServiceRuntime
from homeward.kit.testing import Infra, KafkaProbe


@contextlib.asynccontextmanager
async def running_ingress(infra: Infra, kafka: KafkaProbe, **overrides: Any) -> AsyncIterator[ServiceRuntime]:
    """The real ingress on its own database and the probe's namespace; ``overrides`` are
    IngressSettings fields. Its HTTP server listens on a free port (``http_port=0``)."""
    name = f"t_ingress_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(infra.postgres_admin_dsn)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    await kafka.create()
    settings = IngressSettings(
        **{
            "database_url": infra.postgres_admin_dsn.rpartition("/")[0] + "/" + name,
            "http_port": 0,
            "batch_timeout_ms": 50,
            "outbox_poll_interval_s": 0.2,
            "scheduler_interval_s": 3600,
            # Its own group per namespace: test runs sharing the broker must not share offsets.
            "consumer_group": f"{kafka.topics.namespace}homeward-ingress",
            "kafka": kafka.service_settings("ingress").model_copy(update={"metadata_max_age_ms": 1000}),
            **overrides,
        }
    )
    runtime = ServiceRuntime(build_definition(settings))
    await runtime.start()
    try:
        yield runtime
    finally:
        await runtime.stop()
        admin = await asyncpg.connect(infra.postgres_admin_dsn)
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()


@pytest.fixture
async def ingress(infra: Infra, kafka: KafkaProbe) -> AsyncIterator[ServiceRuntime]:
    async with running_ingress(infra, kafka) as runtime:
        yield runtime


@pytest.fixture
def ingress_factory(
    infra: Infra, kafka: KafkaProbe
) -> Callable[..., contextlib.AbstractAsyncContextManager[ServiceRuntime]]:
    """``async with ingress_factory(http_rate_burst=2) as runtime:`` the ingress with other settings."""

    def start(**overrides: Any) -> contextlib.AbstractAsyncContextManager[ServiceRuntime]:
        return running_ingress(infra, kafka, **overrides)

    return start
