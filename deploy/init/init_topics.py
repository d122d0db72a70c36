"""Create Homeward's Kafka topics, credentials and ACLs: the ``init`` step of docker-compose.yml.

The topics are exactly ``homeward.contracts.topics.declared_topics()`` (namespaced by
``HOMEWARD_KAFKA_TOPIC_NAMESPACE``, dead-letter topics kept ``HOMEWARD_INIT_DLQ_RETENTION_DAYS``),
plus one ``partner.<ODS>.events`` topic for each ODS code in ``HOMEWARD_INIT_PARTNERS``. The
broker does not auto-create topics. It only creates what is missing, so it is safe to run
again at any time::

    docker compose run --rm -e HOMEWARD_INIT_PARTNERS=RYG,8HV48 init

The compose broker formats its own storage, so, unlike the native stack, it cannot be given
SCRAM credentials at format time. This step connects as the super user ``homeward-admin``
(SASL/PLAIN, on the broker's listener that only the compose network reaches) and then:

* sets the SCRAM-SHA-512 credentials of the admin, ops and each service, from
  ``HOMEWARD_INIT_PASSWORD_<OPS|SERVICE>`` (the admin's is its own connection's password).
  Setting a credential replaces it, so changing a password in the environment and re-running
  this step rotates it;
* grants the ACLs of ``homeward.contracts.access.homeward_grants()``, the whole policy for the
  services and ops (partners get theirs from ``homeward partner add``). It only adds what is
  missing; ACLs beyond the policy are reported, not deleted.

``HOMEWARD_INIT_MANAGE_ACCESS=false`` skips credentials and ACLs (a cluster whose users someone
else manages). Databases are not touched here (PostgreSQL's own init script creates one database
and role per service) and nor are schemas: each service applies its own migrations when it
starts. In Kubernetes, Strimzi's ``KafkaTopic`` and ``KafkaUser`` resources
(deploy/base/kafka/) take this script's place.
"""

# No `from __future__ import annotations`: pydantic resolves the fields' types when this file
# is loaded by path (tests/test_compose.py), outside sys.modules.
import asyncio
import sys
import time

from homeward.contracts.access import ADMIN, OPS, Grant, homeward_grants, service_principal
from homeward.contracts.topics import (
    DLQ_RETENTION_DAYS,
    SERVICES,
    TopicSpec,
    declared_topics,
    partner_of,
    partner_topic,
)
from homeward.kit.kafka import TopicsRefused, ensure_topics
from homeward.kit.settings import KafkaSettings
from pydantic import SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class InitSettings(BaseSettings):
    """What the init step reads from the environment (``HOMEWARD_INIT_*``)."""

    model_config = SettingsConfigDict(env_prefix="HOMEWARD_INIT_", extra="ignore")

    partners: str = ""  # comma-separated ODS codes, e.g. "RYG,8HV48"
    replication_factor: int = 1  # 1 for the single compose broker
    wait_s: float = 120.0  # how long to keep retrying while Kafka is not reachable yet
    # Dead-letter topics hold partner records as they came (NHS numbers): 0 or less keeps them
    # for ever. Applies to the topics this step creates; see deploy/README.md for existing ones.
    dlq_retention_days: float = DLQ_RETENTION_DAYS
    # Credentials and ACLs (homeward.contracts.access), as the admin this step connects as.
    manage_access: bool = True
    # SCRAM passwords, one per principal: password_<name> for homeward-<name>.
    password_ops: SecretStr | None = None
    password_ingress: SecretStr | None = None
    password_referrals: SecretStr | None = None
    password_placements: SecretStr | None = None
    password_budget: SecretStr | None = None
    password_notifications: SecretStr | None = None


def password_fields() -> dict[str, str]:
    """Principal -> the InitSettings field holding its password (ops and every service)."""
    return {OPS: "password_ops", **{service_principal(s): f"password_{s}" for s in SERVICES}}


def partner_codes(raw: str) -> tuple[str, ...]:
    """ODS codes from a comma-separated list, upper-cased and de-duplicated in order."""
    codes = tuple(dict.fromkeys(p.strip().upper() for p in raw.split(",") if p.strip()))
    bad = [c for c in codes if partner_of(partner_topic(c)) is None]
    if bad:
        raise ValueError(f"HOMEWARD_INIT_PARTNERS: {', '.join(bad)} is not an ODS code (3 to 9 letters or digits)")
    return codes


def wanted_topics(init: InitSettings, kafka: KafkaSettings) -> list[TopicSpec]:
    """The declared topics (namespaced as the services will see them) and the partners' topics."""
    ns = kafka.topic_namespace
    return [
        TopicSpec(ns + t.name, t.partitions, t.retention_ms, t.purpose)
        for t in declared_topics(partner_codes(init.partners), dlq_retention_days=init.dlq_retention_days)
    ]


def credentials(init: InitSettings, kafka: KafkaSettings) -> dict[str, str]:
    """The SCRAM credentials to set: ops' and each service's, and the admin's own when this step
    connects as the admin. Fails naming every password that is missing."""
    missing = [
        f"HOMEWARD_INIT_{field.upper()}"
        for field in password_fields().values()
        if not (getattr(init, field) and getattr(init, field).get_secret_value())
    ]
    if missing:
        raise ValueError(f"no password for {', '.join(missing)} (or set HOMEWARD_INIT_MANAGE_ACCESS=false)")
    users = {user: getattr(init, field).get_secret_value() for user, field in password_fields().items()}
    if kafka.sasl_username == ADMIN and kafka.sasl_password is not None:
        # The admin signs in with PLAIN here; with SCRAM too it can work from the host's listener.
        users = {ADMIN: kafka.sasl_password.get_secret_value(), **users}
    return users


def wanted_grants(kafka: KafkaSettings) -> dict[str, list[Grant]]:
    return homeward_grants(kafka.topic_namespace)


def apply_access(init: InitSettings, kafka: KafkaSettings) -> tuple[list[str], int, list[str]]:
    """Set the credentials and grant the policy: (users set, ACL bindings asked for, ACLs found
    beyond the policy, as text)."""
    from homeward.kit.access import KafkaAccess  # the kit's admin extra (confluent-kafka)

    users = credentials(init, kafka)
    access = KafkaAccess(kafka)
    for user, password in users.items():
        access.set_password(user, password)
    grants = wanted_grants(kafka)
    count = access.grant(grants)
    extra = [
        f"User:{user} {g.operation} {g.resource} {g.name} ({g.pattern})"
        for user, wanted in grants.items()
        for g in access.acls(user)
        if g not in set(wanted)
    ]
    return list(users), count, extra


async def create(init: InitSettings, kafka: KafkaSettings) -> list[str]:
    """Create the missing topics, retrying until Kafka answers or ``wait_s`` has passed. A
    refusal (say a replication factor above the broker count) fails the step at once."""
    specs = wanted_topics(init, kafka)
    deadline = time.monotonic() + init.wait_s
    while True:
        try:
            return await ensure_topics(kafka, specs, replication=init.replication_factor)
        except TopicsRefused:
            raise
        except Exception as exc:  # the broker may still be starting
            if time.monotonic() >= deadline:
                raise
            print(f"init: Kafka at {kafka.bootstrap_servers} not ready ({exc!r}); retrying", file=sys.stderr)
            await asyncio.sleep(2)


def main() -> int:
    try:
        init = InitSettings()
        kafka = KafkaSettings()
        specs = wanted_topics(init, kafka)
        if init.manage_access:
            credentials(init, kafka)  # fail before touching the broker if a password is missing
        created = asyncio.run(create(init, kafka))
        access = apply_access(init, kafka) if init.manage_access else None
    except Exception as exc:
        print(f"init: failed: {exc}", file=sys.stderr)
        return 1
    existing = len(specs) - len(created)
    print(f"init: {len(specs)} topics declared; created {len(created)}, {existing} already existed")
    for name in created:
        print(f"init: created {name}")
    if access is not None:
        users, count, extra = access
        print(f"init: SCRAM-SHA-512 credentials set for {', '.join(users)}; {count} ACLs granted")
        for line in extra:
            print(f"init: warning: an ACL beyond homeward.contracts.access: {line}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
