"""The Kafka connection of the ``homeward`` commands: who the command speaks as.

``HOMEWARD_KAFKA_*`` in the environment decide, as for the services. Without SASL settings there,
on a machine running the native dev stack, a command uses the stack's own user for its role:
the admin (the operator: topics, credentials, ACLs, the scenario replay) or ops (dead letters,
lag). ``--bootstrap`` overrides only the servers.
"""

from __future__ import annotations

import os

from homeward.contracts.access import ADMIN
from homeward.kit.settings import KafkaSettings


def kafka_settings(bootstrap: str | None = None, *, role: str = ADMIN) -> KafkaSettings:
    overrides: dict[str, str] = {"bootstrap_servers": bootstrap} if bootstrap else {}
    if any(os.environ.get(f"HOMEWARD_KAFKA_{v}") for v in ("SECURITY_PROTOCOL", "SASL_USERNAME")):
        return KafkaSettings(**overrides)  # type: ignore[arg-type]
    try:
        from homeward.devstack import kafka as stack_kafka
        from homeward.devstack.config import StackConfig

        cfg = StackConfig.load()
        users = stack_kafka.load_credentials(cfg)
    except Exception:  # not in a checkout with a native stack
        users = None
    if not users or role not in users:
        return KafkaSettings(**overrides)  # type: ignore[arg-type]
    return KafkaSettings.scram(bootstrap or cfg.kafka_bootstrap, role, users[role])
