"""A service that cannot start says why, in words an operator can act on."""

import os
import subprocess
import sys
import textwrap

import pytest
from homeward.kit.service import ServiceDefinition, ServiceRuntime, StartupError, Subscription
from homeward.kit.settings import ServiceSettings
from homeward.kit.topics import Topics
from homeward.testing import Infra, KafkaProbe


def _definition(database: str, kafka_settings: object) -> ServiceDefinition:
    settings = ServiceSettings(database_url=database, http_port=0, kafka=kafka_settings)
    return ServiceDefinition(
        name="budget",
        settings=settings,
        migrations=None,
        handlers={},
        subscriptions=[Subscription(partners=True), Subscription(services=["placements"])],
    )


async def test_missing_topics_stop_the_start_with_their_names(infra: Infra, database: str) -> None:
    namespace = "nostart."  # nothing was created in this namespace
    runtime = ServiceRuntime(_definition(database, infra.kafka_settings(namespace)))
    assert runtime.needed_topics() == [
        "nostart.homeward.budget.v1",
        "nostart.homeward.dlq.budget",
        "nostart.homeward.placements.v1",
    ]
    with pytest.raises(StartupError) as caught:
        await runtime.start()
    message = str(caught.value)
    assert "nostart.homeward.budget.v1" in message and "nostart.homeward.placements.v1" in message
    assert "homeward-stack up" in message and "docker compose run --rm init" in message


async def test_with_its_topics_the_service_starts(database: str, kafka: KafkaProbe) -> None:
    runtime = ServiceRuntime(_definition(database, kafka.settings))
    await runtime.start()
    await runtime.stop()


def test_the_process_exits_1_with_one_clear_log_line(infra: Infra, database: str) -> None:
    script = textwrap.dedent(
        f"""
        from homeward.kit.service import ServiceDefinition, Subscription, run
        from homeward.kit.settings import KafkaSettings, ServiceSettings
        kafka = KafkaSettings(topic_namespace="nostart.")  # the connection from HOMEWARD_KAFKA_*
        settings = ServiceSettings(database_url={database!r}, http_port=0, kafka=kafka)
        run(ServiceDefinition(name="budget", settings=settings, migrations=None, handlers={{}},
                              subscriptions=[Subscription(partners=True)]))
        """
    )
    env = {**os.environ, **infra.kafka_env("homeward-budget")}
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, env=env)
    assert done.returncode == 1
    output = done.stdout + done.stderr
    assert "cannot start" in output and Topics("nostart.").internal("budget") in output
    assert "Traceback" not in output
