"""The whole system for end-to-end tests: the four services as separate processes on the
real Kafka, PostgreSQL and mail server, each in its own topic namespace and databases so
the run cannot see (or disturb) anything else on the same stack."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
import secrets
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from aiokafka import AIOKafkaProducer
from homeward.contracts.access import service_principal
from homeward.kit.kafka import ensure_topics
from homeward.kit.topics import Topics
from homeward.testing import Infra, KafkaProbe, create_databases, drop_databases, free_port, ops_headers

from homeward.cli.main import send_scenario
from homeward.cli.runner import (
    SERVICES,
    RunPaths,
    recipients_for,
    settle,
    start_process,
    stop_services,
    wait_ready,
)
from homeward.scenario import Scenario, ScenarioConfig, generate

AS_OF = dt.date(2026, 11, 20)


@dataclass
class System:
    scenario: Scenario
    namespace: str
    ports: dict[str, int]
    databases: dict[str, str]
    infra: Infra
    mail_domain: str
    env: dict[str, str]
    logs: Path
    # NHS numbers of the events a partner posted over HTTP (the ingress's POST /events).
    http_nhs_numbers: list[str] = field(default_factory=list)

    def url(self, service: str, path: str) -> str:
        return f"http://127.0.0.1:{self.ports[service]}{path}"

    def get(self, service: str, path: str, who: dict[str, str] | None = None, **params: Any) -> Any:
        """GET as ``who`` (staff_headers; default ops, for the overview figures and admin)."""
        r = httpx.get(self.url(service, path), params=params, headers=who or ops_headers(), timeout=60)
        assert r.status_code == 200, f"{service}{path}: {r.status_code} {r.text[:500]}"
        return r.json()

    def log(self, service: str) -> str:
        return (self.logs / f"{service}.log").read_text(errors="replace")


# What a careless or hostile partner might send, after the scenario: reason -> raw message.
# The services must dead-letter each with its reason and carry on with the valid work.
BAD_INPUT_REASONS = ("malformed-json", "invalid-payload", "unknown-type", "wrong-organisation")


async def _send_bad_input(system: System) -> None:
    from homeward.contracts.events import PlacementMade

    sender, made = next((p, e) for p, e in system.scenario.events if isinstance(e.data, PlacementMade))
    other = next(p for p in system.scenario.partners if p != sender)
    topics = Topics(system.namespace)
    producer = AIOKafkaProducer(acks="all", **system.infra.client_options())  # the test, as the operator
    await producer.start()
    try:
        good = made.to_dict()
        bad_nhs = json.loads(json.dumps(good))
        bad_nhs["id"] = "e2e-bad-nhs"
        bad_nhs["data"]["nhs_number"] = bad_nhs["data"]["nhs_number"][:-1] + str(
            (int(bad_nhs["data"]["nhs_number"][-1]) + 1) % 10
        )
        unknown = {**good, "id": "e2e-unknown", "type": "homeward.PlacementTeleported.v1"}
        reused = json.loads(json.dumps(good))
        reused["data"]["daily_rate_pence"] += 1  # the same id for a different event
        wrong_org = {**good, "id": "e2e-wrong-org", "source": f"urn:nhs:ods:{sender}"}
        sends = [
            (topics.partner(sender), b'{"specversion": "1.0", "id": '),
            (topics.partner(sender), json.dumps(bad_nhs).encode()),
            (topics.partner(sender), json.dumps(unknown).encode()),
            (topics.partner(sender), json.dumps(reused).encode()),
            (topics.partner(other), json.dumps(wrong_org).encode()),  # speaking for someone else
        ]
        for topic, value in sends:
            await producer.send_and_wait(topic, value, key=made.data.placement_id.encode())
    finally:
        await producer.stop()


def _post_over_http(system: System) -> list[str]:
    """A commissioner without a Kafka client refers two people over HTTP, with an API key the
    operator made for it; returns their NHS numbers (not in the scenario)."""
    from homeward.contracts import new_event
    from homeward.contracts.events import ReferralReceived
    from homeward.contracts.identifiers import nhs_numbers_in_test_range
    from homeward.contracts.vocab import AgeBand, BedType, Cohort, Urgency

    commissioner = system.scenario.reference["commissioners"][0]["code"]
    issued = subprocess.run(
        [sys.executable, "-m", "homeward.cli", "partner", "key", "add", commissioner, "--json"]
        + ["--database-url", system.databases["ingress"]],
        env=system.env,
        check=True,
        capture_output=True,
        text=True,
        timeout=120,
    )
    key = json.loads(issued.stdout)["key"]
    taken = {e.data.nhs_number for _, e in system.scenario.events if hasattr(e.data, "nhs_number")}
    numbers = [n for n in nhs_numbers_in_test_range(40, start=700_000) if n not in taken][:2]
    now = dt.datetime.combine(AS_OF, dt.time(9), tzinfo=dt.UTC)
    for n, nhs in enumerate(numbers):
        referral = ReferralReceived(
            referral_id=f"REF-HTTP-{n}",
            nhs_number=nhs,
            commissioner=commissioner,
            bed_type=BedType.PICU,
            cohort=Cohort.MENTAL_HEALTH,
            age_band=AgeBand.ADULT,
            urgency=Urgency.URGENT,
            need_arose_at=now,
        )
        event = new_event(referral, source=f"urn:nhs:ods:{commissioner}", id=f"e2e-http-{n}", time=now)
        r = httpx.post(
            system.url("ingress", "/events"),
            content=json.dumps(event.to_dict()),
            headers={"Authorization": f"Bearer {key}", "Content-Type": "application/cloudevents+json"},
            timeout=60,
        )
        assert r.status_code == 202, r.text
    return numbers


def _service_command(svc: str, env: dict[str, str], work: Path, namespace: str) -> list[str]:
    """How a service is started: as a process of this checkout, or, where HOMEWARD_E2E_IMAGE
    names an image (tests/test_containers.py), as a container of it on the host's network
    (with the engine in HOMEWARD_E2E_ENGINE, podman by default), given only its HOMEWARD_*
    variables and, read-only, the files they name (reference data, the sign-in JWKS)."""
    image = os.environ.get("HOMEWARD_E2E_IMAGE")
    if not image:
        return [sys.executable, "-m", f"homeward.{svc}"]
    engine = os.environ.get("HOMEWARD_E2E_ENGINE", "podman")
    own = {k: v for k, v in sorted(env.items()) if k.startswith("HOMEWARD_")}
    # The run's files and the staff sign-in JWKS (a file of the checkout's .local/secrets).
    files = sorted({v for v in own.values() if v.startswith("/") and Path(v).is_file()})
    return [
        engine,
        "run",
        "--rm",
        "--no-healthcheck",  # readiness is polled by wait_ready, as for processes
        f"--name=homeward-{namespace[:-1]}-{svc}",
        "--network=host",
        *(f"--volume={f}:{f}:ro" for f in files),
        *(f"--env={k}={v}" for k, v in own.items()),
        image,
        svc,
    ]


@pytest.fixture(scope="session")
def system(infra: Infra, tmp_path_factory: pytest.TempPathFactory) -> Iterator[System]:
    namespace = f"e2e{secrets.token_hex(3)}."
    scenario = generate(ScenarioConfig(seed=11, placements=200, as_of=AS_OF, withdrawn_referrals=3))
    work = tmp_path_factory.mktemp("e2e")
    dbs = {svc: f"e2e_{namespace[3:-1]}_{svc}" for svc in SERVICES}
    asyncio.run(create_databases(infra.postgres_admin_dsn, list(dbs.values())))
    base = infra.postgres_admin_dsn.rpartition("/")[0]
    mail_domain = f"{namespace[:-1]}.nhs.invalid"
    (work / "reference.yaml").write_text(yaml.safe_dump(scenario.reference))
    recipients = recipients_for(scenario)
    for r in recipients:
        r["email"] = r["email"].replace(".nhs.invalid", f".{mail_domain}")
    (work / "recipients.yaml").write_text(yaml.safe_dump(recipients))
    ports = {svc: free_port() for svc in SERVICES}
    env = dict(os.environ)
    env.update(
        {
            "HOMEWARD_KAFKA_TOPIC_NAMESPACE": namespace,
            "HOMEWARD_KAFKA_METADATA_MAX_AGE_MS": "2000",
            "HOMEWARD_CLOCK": f"{AS_OF.isoformat()}T12:00:00Z",
            "HOMEWARD_LOG_FORMAT": "json",
            "HOMEWARD_PLACEMENTS_REFERENCE_DATA": str(work / "reference.yaml"),
            "HOMEWARD_REFERRALS_REFERENCE_DATA": str(work / "reference.yaml"),
            "HOMEWARD_NOTIFICATIONS_SMTP_HOST": infra.smtp_host,
            "HOMEWARD_NOTIFICATIONS_SMTP_PORT": str(infra.smtp_port),
        }
    )
    for svc in SERVICES:
        p = f"HOMEWARD_{svc.upper()}_"
        env[p + "DATABASE_URL"] = f"{base}/{dbs[svc]}"
        env[p + "HTTP_PORT"] = str(ports[svc])
        env[p + "CONSUMER_GROUP"] = f"{namespace}homeward-{svc}"
        env[p + "SCHEDULER_INTERVAL_S"] = "3600"  # jobs run when the test says, after the replay
        env[p + "OUTBOX_POLL_INTERVAL_S"] = "0.5"
    paths = RunPaths(work)
    system = System(
        scenario, namespace, ports, {s: f"{base}/{d}" for s, d in dbs.items()}, infra, mail_domain, env, paths.logs
    )
    try:
        # The init step's work (compose's init, `homeward-stack up` for the main job): topics first.
        kafka = infra.kafka_settings(namespace)
        asyncio.run(ensure_topics(kafka, Topics(namespace).declared(tuple(scenario.partners))))
        # Each service runs as its own Kafka user, with the grants the stack gives it, here in
        # this run's namespace.
        probe = KafkaProbe(infra, namespace)
        asyncio.run(probe.grant_services())
        for svc in SERVICES:
            own = {**env, **infra.kafka_env(service_principal(svc))}
            start_process(svc, _service_command(svc, own, work, namespace), own, paths)
        try:
            wait_ready(paths, ports=ports)
        except RuntimeError as exc:
            pytest.fail(str(exc))
        subprocess.run(
            [sys.executable, "-m", "homeward.notifications", "recipients", "import", str(work / "recipients.yaml")],
            env=env,
            check=True,
            capture_output=True,
            timeout=120,
        )
        asyncio.run(send_scenario(scenario, progress=False, settings=kafka))
        asyncio.run(_send_bad_input(system))
        system.http_nhs_numbers = _post_over_http(system)
        assert settle(kafka, ports, namespace=namespace, group_prefix=namespace), (
            "the services did not finish the work in time"
        )
        yield system
    finally:
        stop_services(work)
        asyncio.run(KafkaProbe(infra, namespace).revoke_services())
        asyncio.run(drop_databases(infra.postgres_admin_dsn, list(dbs.values())))
