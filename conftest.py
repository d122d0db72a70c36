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
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from homeward.ingress.entrypoints.app import build_definition
from homeward.ingress.settings import IngressSettings
from homeward.kit.service import ServiceRuntime
from homeward.testing import Infra, KafkaProbe, scratch_database, service_tuning


@contextlib.asynccontextmanager
async def running_ingress(infra: Infra, kafka: KafkaProbe, **overrides: Any) -> AsyncIterator[ServiceRuntime]:
    """The real ingress on its own database and the probe's namespace; ``overrides`` are
    IngressSettings fields. Its HTTP server listens on a free port (``http_port=0``)."""
    async with scratch_database(infra, "t_ingress") as database:
        await kafka.create()
        settings = IngressSettings(
            **{
                "database_url": database,
                **service_tuning(kafka, "ingress"),
                # Its own group per namespace: test runs sharing the broker must not share offsets.
                "consumer_group": f"{kafka.topics.namespace}homeward-ingress",
                **overrides,
            }
        )
        runtime = ServiceRuntime(build_definition(settings))
        await runtime.start()
        try:
            yield runtime
        finally:
            await runtime.stop()


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
