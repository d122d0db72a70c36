"""Create Homeward's Kafka topics: the ``init`` step of docker-compose.yml.

The topics are exactly ``homeward.contracts.topics.declared_topics()`` (through
``homeward.kit.topics.Topics``, so ``HOMEWARD_KAFKA_TOPIC_NAMESPACE`` applies), plus one
``partner.<ODS>.events`` topic for each ODS code in ``HOMEWARD_INIT_PARTNERS``. The broker
does not auto-create topics, so a new partner is onboarded by re-running this step with its
code added. It only creates what is missing, so it is safe to run again at any time::

    docker-compose run --rm -e HOMEWARD_INIT_PARTNERS=RYG,8HV48 init

Databases are not touched here (PostgreSQL's own init script creates one database and role
per service) and nor are schemas: each service applies its own migrations when it starts.
In Kubernetes, Strimzi's ``KafkaTopic`` resources (deploy/base/kafka/topics.yaml) take this
script's place.
"""

from __future__ import annotations

import asyncio
import sys
import time

from homeward.contracts.topics import TopicSpec, partner_of, partner_topic
from homeward.kit.kafka import TopicsRefused, ensure_topics
from homeward.kit.settings import KafkaSettings
from homeward.kit.topics import Topics
from pydantic_settings import BaseSettings, SettingsConfigDict


class InitSettings(BaseSettings):
    """What the init step reads from the environment (``HOMEWARD_INIT_*``)."""

    model_config = SettingsConfigDict(env_prefix="HOMEWARD_INIT_", extra="ignore")

    partners: str = ""  # comma-separated ODS codes, e.g. "RYG,8HV48"
    replication_factor: int = 1  # 1 for the single compose broker
    wait_s: float = 120.0  # how long to keep retrying while Kafka is not reachable yet


def partner_codes(raw: str) -> tuple[str, ...]:
    """ODS codes from a comma-separated list, upper-cased and de-duplicated in order."""
    codes = tuple(dict.fromkeys(p.strip().upper() for p in raw.split(",") if p.strip()))
    bad = [c for c in codes if partner_of(partner_topic(c)) is None]
    if bad:
        raise ValueError(f"HOMEWARD_INIT_PARTNERS: {', '.join(bad)} is not an ODS code (3 to 9 letters or digits)")
    return codes


def wanted_topics(init: InitSettings, kafka: KafkaSettings) -> list[TopicSpec]:
    """The declared topics (namespaced as the services will see them) and the partners' topics."""
    return Topics(kafka.topic_namespace).declared(partner_codes(init.partners))


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
        created = asyncio.run(create(init, kafka))
    except Exception as exc:
        print(f"init: failed: {exc}", file=sys.stderr)
        return 1
    existing = len(specs) - len(created)
    print(f"init: {len(specs)} topics declared; created {len(created)}, {existing} already existed")
    for name in created:
        print(f"init: created {name}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
