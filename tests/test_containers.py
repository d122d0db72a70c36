"""Homeward in containers, for real: the image built from ./Dockerfile and linted, smoke-tested,
and the end-to-end scenario run with every service started from it; the integration tests of
the kit and of notifications on testcontainers; docker-compose.yml run up and down with a
scenario. tests/test_compose.py checks what the files say; this checks that they work.

``scripts/containers/prepare.sh`` makes what these tests need, once per session (cached
between sessions): it installs podman, runc, mmdebstrap and the linters where they are missing,
builds the image (on docker where its daemon answers, else podman from a local base image),
the CI-only stand-ins of the Kafka, PostgreSQL and MailDev images (podman), and starts podman's
Docker-compatible socket. Where it cannot (no root, no apt), the tests fail with its message:
they never skip. docs/operations.md, "Containers in CI", says how to run each part by hand.

The native stack's host ports are never taken: services from the image use free ports, the
compose run and testcontainers use free host ports of their own.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import os
import re
import secrets
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import yaml
from homeward.contracts.access import service_principal
from homeward.kit.auth import LocalSigner
from homeward.testing import Infra, free_port, scratch_database

from homeward.cli.runner import SERVICES, recipients_for
from homeward.scenario import ScenarioConfig, generate

from .e2e import oracle

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = ROOT / "scripts" / "containers"
SERVICE_MODULES = ("contracts", "kit", *SERVICES)

# The first test also waits for prepare.sh, which on a fresh machine installs and builds for minutes.
pytestmark = [pytest.mark.containers, pytest.mark.timeout(1800)]


@dataclass(frozen=True)
class Prepared:
    engine: str  # docker or podman
    image: str
    env: dict[str, str]  # DOCKER_HOST and the images of Kafka, PostgreSQL and MailDev, where made

    def run(self, *args: str, timeout: float = 120, check: bool = False) -> subprocess.CompletedProcess[str]:
        return subprocess.run([self.engine, *args], capture_output=True, text=True, timeout=timeout, check=check)


def _tail(text: str, n: int = 4000) -> str:
    return text[-n:]


@pytest.fixture(scope="session")
def prepared() -> Iterator[Prepared]:
    try:
        out = subprocess.run([str(SCRIPTS / "prepare.sh")], capture_output=True, text=True, timeout=1800, check=False)
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"scripts/containers/prepare.sh did not finish in {exc.timeout:.0f}s", pytrace=False)
    if out.returncode != 0:
        pytest.fail(
            f"scripts/containers/prepare.sh failed (exit {out.returncode}):\n{_tail(out.stderr)}", pytrace=False
        )
    values = dict(line.split("=", 1) for line in out.stdout.splitlines() if re.match(r"[A-Z_]+=", line))
    env = {k: v for k, v in values.items() if k not in ("ENGINE", "HOMEWARD_IMAGE")}
    # podman reads the project's own settings (scripts/containers/env.sh), for every call here.
    if values["ENGINE"] == "podman":
        os.environ.setdefault("CONTAINERS_CONF", str(ROOT / "containers" / "podman" / "containers.conf"))
        os.environ.setdefault("CONTAINERS_STORAGE_CONF", str(ROOT / "containers" / "podman" / "storage.conf"))
    yield Prepared(values["ENGINE"], values["HOMEWARD_IMAGE"], env)
    # podman's socket, if prepare.sh started it (it leaves one it found running alone).
    subprocess.run([str(SCRIPTS / "podman-service.sh"), "stop"], capture_output=True, timeout=60, check=False)


def nested_pytest(args: list[str], env: dict[str, str], timeout: float) -> subprocess.CompletedProcess[str]:
    """Another pytest session, so that its infra fixture chooses afresh (testcontainers, say)."""
    return subprocess.run(
        [sys.executable, "-m", "pytest", *args, "-q", "-p", "no:cacheprovider"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def passed(result: subprocess.CompletedProcess[str]) -> int:
    last = [line for line in result.stdout.splitlines() if line.strip()][-1:]
    assert result.returncode == 0, _tail(result.stdout + result.stderr, 8000)
    assert last and " passed" in last[0] and "failed" not in last[0] and "error" not in last[0], last
    return int(last[0].split(" passed")[0].split()[-1])


# ---- the image ------------------------------------------------------------------------------
def test_hadolint_passes_the_dockerfile_and_would_flag_a_bad_one(prepared: Prepared, tmp_path: Path) -> None:
    hadolint = ROOT / ".local" / "containers" / "tools" / "bin" / "hadolint"
    ok = subprocess.run([str(hadolint), str(ROOT / "Dockerfile")], capture_output=True, text=True, check=False)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:latest\nRUN apt-get install curl\n")
    flagged = subprocess.run([str(hadolint), str(bad)], capture_output=True, text=True, check=False)
    assert flagged.returncode != 0
    assert "DL3007" in flagged.stdout  # the latest tag


def test_image_without_a_service_says_how_to_name_one(prepared: Prepared) -> None:
    r = prepared.run("run", "--rm", prepared.image)
    assert r.returncode != 0
    assert "name a service" in r.stdout + r.stderr
    for service in (*SERVICES, "init"):
        assert service in r.stdout + r.stderr


def test_image_runs_as_an_unprivileged_user_with_a_health_check(prepared: Prepared) -> None:
    r = prepared.run("run", "--rm", "--entrypoint", "id", prepared.image, check=True)
    assert r.stdout.startswith("uid=10001(homeward) gid=10001(homeward)"), r.stdout
    inspect = prepared.run("image", "inspect", "--format", "{{json .Config}}", prepared.image, check=True)
    config = json.loads(inspect.stdout)
    assert config["User"] == "10001:10001"
    # Kept only in the docker format (podman build --format docker): OCI images have no HEALTHCHECK.
    health = prepared.run("image", "inspect", "--format", "{{json .Config.Healthcheck}}", prepared.image, check=True)
    assert json.loads(health.stdout)["Test"] == ["CMD", "python", "/app/bin/healthcheck.py", "/healthz"]


def test_image_imports_every_service_and_has_no_build_tools(prepared: Prepared) -> None:
    modules = ", ".join(f"homeward.{m}" for m in SERVICE_MODULES)
    code = f"import {modules}, homeward.cli.main, homeward.kit.access, confluent_kafka; print('imported')"
    r = prepared.run("run", "--rm", "--entrypoint", "python", prepared.image, "-c", code)
    assert r.returncode == 0 and "imported" in r.stdout, r.stdout + r.stderr
    for tool in ("pip", "uv", "gcc"):
        which = prepared.run("run", "--rm", "--entrypoint", "sh", prepared.image, "-c", f"command -v {tool}")
        assert which.returncode != 0, f"{tool} is in the image: {which.stdout}"
    cli = prepared.run("run", "--rm", prepared.image, "homeward", "--help")
    assert cli.returncode == 0 and "partner" in cli.stdout, cli.stdout + cli.stderr


async def test_a_service_from_the_image_is_ready_healthy_and_stops_cleanly(prepared: Prepared, infra: Infra) -> None:
    """Referrals from the image on the host's network, against the native stack, as its own
    Kafka user: /readyz answers ready, the image's HEALTHCHECK passes, and SIGTERM exits 0."""
    from homeward.testing import KafkaProbe, new_namespace

    probe = KafkaProbe(infra, new_namespace())
    await probe.create()
    await probe.grant_services()
    name = f"homeward-smoke-{secrets.token_hex(3)}"
    signer = LocalSigner.generate()
    port = free_port()
    try:
        async with scratch_database(infra, "t_image") as database:
            env = {
                **infra.kafka_env(service_principal("referrals")),
                "HOMEWARD_KAFKA_TOPIC_NAMESPACE": probe.topics.namespace,
                "HOMEWARD_REFERRALS_DATABASE_URL": database,
                "HOMEWARD_REFERRALS_HTTP_PORT": str(port),
                "HOMEWARD_REFERRALS_CONSUMER_GROUP": f"{probe.topics.namespace}homeward-referrals",
                "HOMEWARD_PATIENT_REF_KEY": os.environ["HOMEWARD_PATIENT_REF_KEY"],
                # It listens on every interface, so it starts only with staff sign-in configured.
                "HOMEWARD_AUTH_ISSUER": signer.issuer,
                "HOMEWARD_AUTH_JWKS": json.dumps(signer.jwks()),
            }
            args = ["run", "--detach", f"--name={name}", "--network=host"]
            args += [f"--env={k}={v}" for k, v in env.items()]
            started = await asyncio.to_thread(prepared.run, *args, prepared.image, "referrals", check=False)
            assert started.returncode == 0, started.stderr

            async def ready() -> bool:
                async with httpx.AsyncClient() as client:
                    with contextlib.suppress(httpx.HTTPError):
                        return (await client.get(f"http://127.0.0.1:{port}/readyz", timeout=2)).status_code == 200
                return False

            for _ in range(240):
                if await ready():
                    break
                state = await asyncio.to_thread(prepared.run, "inspect", "--format", "{{.State.Running}}", name)
                assert state.stdout.strip() == "true", (await asyncio.to_thread(prepared.run, "logs", name)).stderr
                await asyncio.sleep(0.5)
            else:
                pytest.fail(f"not ready: {_tail((await asyncio.to_thread(prepared.run, 'logs', name)).stderr)}")
            if prepared.engine == "podman":  # podman runs health checks on demand where systemd is absent
                health = await asyncio.to_thread(prepared.run, "healthcheck", "run", name)
                assert health.returncode == 0, health.stdout + health.stderr
            stopped = await asyncio.to_thread(prepared.run, "stop", "--time=30", name, timeout=90)
            assert stopped.returncode == 0, stopped.stderr
            code = await asyncio.to_thread(prepared.run, "inspect", "--format", "{{.State.ExitCode}}", name)
            assert code.stdout.strip() == "0", (await asyncio.to_thread(prepared.run, "logs", name)).stderr
    finally:
        await asyncio.to_thread(prepared.run, "rm", "--force", name)
        await probe.revoke_services()
        await probe.delete_topics()
        await probe.close()


@pytest.mark.timeout(1800)
def test_end_to_end_scenario_with_every_service_from_the_image(prepared: Prepared) -> None:
    """The main job's end-to-end tests, oracle and all (register, ledger, emails, dead letters,
    the data-protection scan), with the services started from the image (HOMEWARD_E2E_IMAGE:
    `<engine> run --network host`) against the native stack. The staff view and the measures,
    which run beside the services rather than in them, are tested end to end natively."""
    env = {**os.environ, "HOMEWARD_E2E_IMAGE": prepared.image, "HOMEWARD_E2E_ENGINE": prepared.engine}
    result = nested_pytest(["tests/e2e/test_main_job.py"], env, timeout=1700)
    assert passed(result) >= 10


# ---- testcontainers ---------------------------------------------------------------------------
KIT_ON_TESTCONTAINERS = ("test_consumer", "test_consumer_errors", "test_transient_on_kafka", "test_outbox", "test_uow")


@pytest.mark.timeout(1800)
def test_kit_and_notifications_integration_tests_pass_on_testcontainers(prepared: Prepared) -> None:
    """The kit's tests that cross into Kafka and PostgreSQL (consuming, dead letters, transient
    errors, the outbox relay, the unit of work and parking lot) and the notifications service's
    integration tests, in a session whose Kafka (SASL/SCRAM and ACLs), PostgreSQL and mail
    catcher are testcontainers: the same images as the compose file (the stand-ins where podman
    builds them), Ryuk off. (The kit's other tests run against the native stack in the same CI
    run; running them twice would only add minutes.)"""
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("HOMEWARD_KAFKA_BOOTSTRAP_SERVERS", "HOMEWARD_POSTGRES_ADMIN_DSN")
    }
    env.update(prepared.env)
    env.update({"HOMEWARD_TEST_INFRA": "testcontainers", "TESTCONTAINERS_RYUK_DISABLED": "true"})
    kit = [f"libs/kit/tests/{name}.py" for name in KIT_ON_TESTCONTAINERS]
    result = nested_pytest([*kit, "services/notifications/tests/test_integration.py"], env, 1700)
    assert passed(result) >= 50


# ---- docker-compose.yml -----------------------------------------------------------------------
AS_OF = dt.date(2026, 11, 20)
FY = "2026-27"


@dataclass
class Compose:
    prepared: Prepared
    project: str
    env: dict[str, str]
    files: list[Path]

    def __call__(self, *args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
        files = [a for f in self.files for a in ("-f", str(f))]
        return subprocess.run(
            ["docker-compose", "--no-ansi", "-p", self.project, *files, *args],
            cwd=ROOT,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def port(self, variable: str) -> int:
        return int(self.env[variable])


@contextlib.contextmanager
def health_checks_driven(compose: Compose) -> Iterator[None]:
    """podman runs a container's HEALTHCHECK from a systemd timer; where there is no systemd (CI
    here) nothing would ever turn a container healthy, so run them every few seconds, as the
    timer would. Docker, and podman with systemd, need nothing."""
    if compose.prepared.engine != "podman" or Path("/run/systemd/private").exists():
        yield
        return
    stop = threading.Event()

    def drive() -> None:
        label = f"label=com.docker.compose.project={compose.project}"
        while not stop.wait(3):
            names = compose.prepared.run("ps", "--filter", label, "--format", "{{.Names}}").stdout.split()
            for name in names:
                compose.prepared.run("healthcheck", "run", name, timeout=30)

    thread = threading.Thread(target=drive, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=60)


def _host_cli(env: dict[str, str], *args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "homeward.cli", *args], env=env, capture_output=True, text=True, timeout=timeout
    )


@pytest.mark.timeout(1500)
def test_compose_runs_the_system_from_images_and_plays_a_scenario(prepared: Prepared, tmp_path: Path) -> None:
    """`docker-compose up` (on podman's socket where podman is the engine) with the built image,
    every health check, the init step, a scenario sent by each partner with the partner CLI as
    itself, then a position and the staff emails checked against the oracle, and `down -v`."""
    if shutil.which("docker-compose") is None:
        pytest.fail("docker-compose not found: scripts/bootstrap.sh installs it (Debian's docker-compose)")
    passwords = {u: secrets.token_urlsafe(24) for u in ("ADMIN", "OPS", *(s.upper() for s in SERVICES))}
    signer = LocalSigner.generate()  # the staff sign-in's issuer for this compose stack
    ports = {
        "HOMEWARD_STACK_KAFKA_PORT": free_port(),
        "HOMEWARD_STACK_POSTGRES_PORT": free_port(),
        "HOMEWARD_STACK_SMTP_PORT": free_port(),
        "HOMEWARD_STACK_MAIL_WEB_PORT": free_port(),
        **{f"HOMEWARD_COMPOSE_{s.upper()}_PORT": free_port() for s in SERVICES},
    }
    # The compose file's variables only: nothing of this session's own stack or settings.
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HOMEWARD_", "KAFKA_", "DB_PASSWORD_"))}
    env.update(prepared.env)
    env.update({k: str(v) for k, v in ports.items()})
    env.update({f"KAFKA_PASSWORD_{u}": p for u, p in passwords.items()})
    env.update(
        {
            "HOMEWARD_IMAGE": prepared.image,
            "HOMEWARD_PATIENT_REF_KEY": secrets.token_urlsafe(32),
            "HOMEWARD_NHS_NUMBER_KEY": secrets.token_urlsafe(32),
            "POSTGRES_PASSWORD": secrets.token_urlsafe(16),
            "HOMEWARD_AUTH_ISSUER": signer.issuer,
            "HOMEWARD_AUTH_JWKS": json.dumps(signer.jwks()),
        }
    )
    scenario = generate(ScenarioConfig(seed=7, placements=16, as_of=AS_OF))
    reference = tmp_path / "reference.yaml"
    reference.write_text(yaml.safe_dump(scenario.reference))
    override = tmp_path / "override.yml"
    mount = {"volumes": [f"{reference}:/etc/homeward/reference.yaml:ro"]}
    override.write_text(
        yaml.safe_dump(
            {
                "services": {
                    "placements": {
                        **mount,
                        "environment": {"HOMEWARD_PLACEMENTS_REFERENCE_DATA": "/etc/homeward/reference.yaml"},
                    },
                    "referrals": {
                        **mount,
                        "environment": {"HOMEWARD_REFERRALS_REFERENCE_DATA": "/etc/homeward/reference.yaml"},
                    },
                }
            }
        )
    )
    project = f"homeward-ci-{secrets.token_hex(3)}"
    compose = Compose(prepared, project, env, [ROOT / "docker-compose.yml", override])
    try:
        with health_checks_driven(compose):
            up = compose("up", "--no-build", "--detach", timeout=900)
            assert up.returncode == 0, _tail(up.stdout + up.stderr)
            _wait_healthy(compose)
        _play_and_check(compose, scenario, passwords, tmp_path, signer)
    finally:
        logs = compose("logs", "--no-color", "--tail=40", timeout=120)
        down = compose("down", "--volumes", "--timeout", "30", timeout=300)
        leftover = prepared.run("ps", "--all", "--filter", f"label=com.docker.compose.project={project}", "-q")
        volumes = prepared.run("volume", "ls", "-q", "--filter", f"label=com.docker.compose.project={project}")
        print(_tail(logs.stdout, 20000))
    assert down.returncode == 0, down.stdout + down.stderr
    assert leftover.stdout.strip() == "", "compose down left containers"
    assert volumes.stdout.strip() == "", "compose down -v left volumes"


def _wait_healthy(compose: Compose, timeout: float = 300) -> None:
    """Every long-running container healthy, and the init step exited 0."""
    deadline = time.monotonic() + timeout
    wanted = {"kafka", "postgres", "mail", *SERVICES}
    label = f"label=com.docker.compose.project={compose.project}"
    states: dict[str, str] = {}
    while time.monotonic() < deadline:
        key = "com.docker.compose.service"
        service = f'{{{{index .Labels "{key}"}}}}' if compose.prepared.engine == "podman" else f'{{{{.Label "{key}"}}}}'
        out = compose.prepared.run("ps", "--all", "--filter", label, "--format", f"{service} {{{{.Status}}}}").stdout
        states = dict(line.split(" ", 1) for line in out.splitlines() if " " in line)
        healthy = {s for s, status in states.items() if "(healthy)" in status}
        if wanted <= healthy and states.get("init", "").startswith("Exited (0)"):
            return
        time.sleep(3)
    pytest.fail(f"not every container became healthy in {timeout:.0f}s: {states}")


def _play_and_check(
    compose: Compose, scenario: object, passwords: dict[str, str], work: Path, signer: LocalSigner
) -> None:
    from homeward.scenario import Scenario

    assert isinstance(scenario, Scenario)
    bootstrap = f"127.0.0.1:{compose.port('HOMEWARD_STACK_KAFKA_PORT')}"
    clean = {k: v for k, v in os.environ.items() if not k.startswith("HOMEWARD_")}
    admin = {
        **clean,
        "HOMEWARD_KAFKA_BOOTSTRAP_SERVERS": bootstrap,
        "HOMEWARD_KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
        "HOMEWARD_KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
        "HOMEWARD_KAFKA_SASL_USERNAME": "homeward-admin",
        "HOMEWARD_KAFKA_SASL_PASSWORD": passwords["ADMIN"],
    }
    pg = compose.port("HOMEWARD_STACK_POSTGRES_PORT")
    # Staff to email, in a domain of this run's own.
    domain = f"{compose.project}.nhs.invalid"
    recipients = recipients_for(scenario)
    for r in recipients:
        r["email"] = r["email"].replace(".nhs.invalid", f".{domain}")
    (work / "recipients.yaml").write_text(yaml.safe_dump(recipients))
    notifications_db = (
        f"postgresql://homeward_notifications:homeward_notifications@127.0.0.1:{pg}/homeward_notifications"
    )
    imported = subprocess.run(
        [sys.executable, "-m", "homeward.notifications", "recipients", "import", str(work / "recipients.yaml")],
        env={**clean, "HOMEWARD_NOTIFICATIONS_DATABASE_URL": notifications_db},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert imported.returncode == 0, imported.stdout + imported.stderr
    # Each partner is onboarded by the operator (`homeward partner add`), then sends its own
    # events with its own credential (`homeward emit --as`), in the order it made them.
    by_partner: dict[str, list[str]] = {}
    for partner, event in scenario.events:
        by_partner.setdefault(partner, []).append(json.dumps(event.to_dict()))
    for partner, lines in by_partner.items():
        added = _host_cli(admin, "partner", "add", partner, "--json")
        assert added.returncode == 0, added.stdout + added.stderr
        conf = json.loads(added.stdout)
        events = work / f"{partner}.jsonl"
        events.write_text("\n".join(lines) + "\n")
        as_partner = {
            **clean,
            "HOMEWARD_KAFKA_BOOTSTRAP_SERVERS": bootstrap,
            "HOMEWARD_KAFKA_SECURITY_PROTOCOL": conf["security.protocol"],
            "HOMEWARD_KAFKA_SASL_MECHANISM": conf["sasl.mechanism"],
            "HOMEWARD_KAFKA_SASL_USERNAME": conf["sasl.username"],
            "HOMEWARD_KAFKA_SASL_PASSWORD": conf["sasl.password"],
        }
        sent = _host_cli(as_partner, "emit", str(events), "--as", partner, "--json")
        assert sent.returncode == 0, sent.stdout + sent.stderr
    world = oracle.replay(scenario)
    budget = f"http://127.0.0.1:{compose.port('HOMEWARD_COMPOSE_BUDGET_PORT')}"
    commissioner = scenario.reference["commissioners"][0]["code"]
    expected = world.allocations[(commissioner, FY)]
    with_budget = {
        **clean,
        "HOMEWARD_BUDGET_URL": budget,
        "HOMEWARD_TOKEN": signer.token(org=commissioner, role="finance"),
    }

    def position() -> dict[str, object]:
        r = _host_cli(
            with_budget, "position", commissioner, "--financial-year", FY, "--as-of", AS_OF.isoformat(), "--json"
        )
        assert r.returncode == 0, r.stdout + r.stderr
        return json.loads(r.stdout)  # type: ignore[no-any-return]

    # The allocations, to the penny, once the budget service has read them all. (What was spent
    # accrues when the schedulers run as of the scenario's day, which tests/e2e drives; the
    # services here keep the real clock.)
    got: dict[str, object] = {}
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        got = position()
        if got.get("allocated_pence") == expected:
            break
        time.sleep(3)
    assert got.get("allocated_pence") == expected, got
    assert expected > 0
    # Staff emails reach the mail catcher, addressed to the imported recipients only.
    mail_web = f"http://127.0.0.1:{compose.port('HOMEWARD_STACK_MAIL_WEB_PORT')}"
    addresses = {r["email"] for r in recipients}
    mails: list[dict[str, object]] = []
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline and not mails:
        mails = httpx.get(f"{mail_web}/email", timeout=30).json()
        time.sleep(2)
    assert mails, "no email reached the mail catcher"
    to = {t["address"] for m in mails for t in m.get("to", [])}  # type: ignore[attr-defined]
    assert to <= addresses, to - addresses
