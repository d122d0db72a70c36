"""Homeward's native local infrastructure: Kafka 4.1 (KRaft), PostgreSQL 15 and MailDev.

No Docker: Kafka's jars come from Maven Central, PostgreSQL from the Debian packages,
MailDev from npm. All state lives in ``<repo>/.local/``. The CLI is ``homeward-stack``;
tests use :func:`ensure_up`::

    from homeward.devstack import ensure_up

    info = ensure_up()          # starts what is not running, idempotent
    os.environ.update(info.as_env())
"""

from __future__ import annotations

from .config import StackConfig
from .errors import StackError
from .stack import StackInfo, create_partner_topics, down, ensure_up, homeward_topics, reset, stack_info, status
from .status import ComponentStatus

__all__ = [
    "ComponentStatus",
    "StackConfig",
    "StackError",
    "StackInfo",
    "create_partner_topics",
    "down",
    "ensure_up",
    "homeward_topics",
    "reset",
    "stack_info",
    "status",
]
