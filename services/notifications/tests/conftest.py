"""Fixtures for the notifications tests (helpers live in notifications_support.py)."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from homeward.contracts.vocab import Role
from homeward.notifications.domain.model import DefaultRoute
from notifications_support import FakeMailer, InMemoryStore, SmtpServer


@pytest.fixture
def store() -> InMemoryStore:
    return InMemoryStore(
        routes=[
            DefaultRoute("ReviewOverdue", Role.CASE_MANAGER, 1, None),
            DefaultRoute("ReviewOverdue", Role.CLINICAL_LEAD, 2, None),
            DefaultRoute("ReviewDueSoon", Role.CASE_MANAGER, 1, None),
            DefaultRoute("PlacementRegistered", Role.OAP_LEAD, 1, None),
            DefaultRoute("BudgetThresholdBreached", Role.FINANCE_LEAD, 1, None),
        ]
    )


@pytest.fixture
def mailer() -> FakeMailer:
    return FakeMailer()


@pytest.fixture
def smtp_server() -> Iterator[SmtpServer]:
    server = SmtpServer()
    server.start()
    yield server
    with contextlib.suppress(Exception):
        server.stop()


@pytest.fixture
def stopped_smtp_server() -> Iterator[SmtpServer]:
    server = SmtpServer()
    yield server
    with contextlib.suppress(Exception):
        server.stop()
