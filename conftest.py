"""Fixtures shared by every service's tests that need more than one service.

``ingress`` runs the real ingress service in-process, on the test's own topic namespace and
its own database, so a test that sends partner events on ``partner.<ODS>.events`` exercises
the real path: partner topic → ingress (validated, authorised, de-duplicated once) →
``homeward.ingress.v1`` → the service under test.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import asyncpg
import pytest
from homeward.ingress.entrypoints.app import build_definition
from homeward.ingress.settings import IngressSettings
from homeward.kit.service import ServiceRuntime
from homeward.kit.testing import Infra, KafkaProbe


@pytest.fixture
async def ingress(infra: Infra, kafka: KafkaProbe) -> AsyncIterator[ServiceRuntime]:
    name = f"t_ingress_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(infra.postgres_admin_dsn)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    await kafka.create()
    settings = IngressSettings(
        database_url=infra.postgres_admin_dsn.rpartition("/")[0] + "/" + name,
        http_port=0,
        batch_timeout_ms=50,
        outbox_poll_interval_s=0.2,
        scheduler_interval_s=3600,
        kafka=kafka.settings.model_copy(update={"metadata_max_age_ms": 1000}),
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
