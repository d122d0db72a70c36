"""Containers and deployment agree with the code.

docker-compose.yml, the Dockerfile and the Kubernetes manifests in deploy/ name settings,
ports, hosts and topics; the code defines them. These tests read both sides: every
``HOMEWARD_*`` variable must be a field of the settings class that reads it, ports must be
the services' own, the Kafka and PostgreSQL addresses must point at the services that
provide them, and the topics created must be exactly the declared list. Renaming a setting
in code (or in a file here) makes them fail. Kafka security is checked the same way: the
broker authenticates every client and authorises only what ``homeward.contracts.access`` grants,
each service signs in as its own principal, and the Strimzi KafkaUsers state exactly that policy.

No Docker engine or Kubernetes cluster is needed: ``docker-compose config`` (Debian's
docker-compose, installed by scripts/bootstrap.sh) validates and resolves the compose file.
"""

from __future__ import annotations

import functools
import http.server
import importlib
import importlib.util
import os
import re
import shutil
import subprocess
import threading
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from types import ModuleType
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml
from homeward.contracts.access import ADMIN, OPS, Grant, homeward_grants, partner_grants, service_principal
from homeward.contracts.topics import (
    DAY_MS,
    DLQ_RETENTION_DAYS,
    SERVICES,
    dead_letter_topic,
    declared_topics,
    internal_topic,
    partner_topic,
)
from homeward.kit.auth import AuthSettings
from homeward.kit.service import Subscription, consumer_groups
from homeward.kit.settings import CommonSettings, KafkaSettings, ServiceSettings
from homeward.kit.topics import Topics
from pydantic import BaseModel
from pydantic_settings import BaseSettings, SettingsConfigDict

ROOT = Path(__file__).resolve().parents[1]
COMPOSE_FILE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"
DEPLOY = ROOT / "deploy"
BASE = DEPLOY / "base"
INIT_SCRIPT = DEPLOY / "init" / "init_topics.py"
ENTRYPOINT = DEPLOY / "docker" / "entrypoint.sh"
HEALTHCHECK = DEPLOY / "docker" / "healthcheck.py"
PG_INIT = DEPLOY / "postgres" / "init-databases.sh"
USERS = BASE / "kafka" / "users.yaml"

# Read by the image's entry point and health check (deploy/docker/), not by a settings class.
IMAGE_VARIABLES = {"HOMEWARD_SERVICE"}
# Where the image puts the init module (Dockerfile COPY; entrypoint.sh `init`).
IMAGE_INIT_PATH = "/app/deploy/init/init_topics.py"


# ---- helpers --------------------------------------------------------------------------
def load_path(path: Path, name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@functools.cache
def init_module() -> ModuleType:
    return load_path(INIT_SCRIPT, "homeward_deploy_init_topics")


def service_settings(service: str) -> type[ServiceSettings]:
    """The ServiceSettings subclass defined in ``homeward.<service>.settings``."""
    name = f"homeward.{service}.settings"
    try:
        module = importlib.import_module(name)
    except ModuleNotFoundError as exc:
        pytest.fail(f"{name} does not exist ({exc}); the {service} service must define its settings there")
    found = [
        value
        for value in vars(module).values()
        if isinstance(value, type)
        and issubclass(value, ServiceSettings)
        and value is not ServiceSettings
        and value.__module__ == module.__name__
    ]
    assert len(found) == 1, f"{name} should define exactly one ServiceSettings subclass, found {found}"
    cls = found[0]
    prefix = cls.model_config.get("env_prefix")
    assert prefix == f"HOMEWARD_{service.upper()}_", f"{cls.__name__} reads {prefix}*, not HOMEWARD_{service.upper()}_*"
    return cls


def _is_plain_field(cls: type[BaseSettings], field: str) -> bool:
    info = cls.model_fields.get(field)
    if info is None:
        return False
    annotation = info.annotation
    # A nested settings object (ServiceSettings.kafka, .common) is not one variable.
    return not (isinstance(annotation, type) and issubclass(annotation, BaseModel))


def unknown_variables(
    names: Iterable[str], scopes: Mapping[str, type[BaseSettings]], *, skip: tuple[str, ...] = ()
) -> list[str]:
    """The names that no settings class reads: each name belongs to the class of its longest
    matching prefix, and the rest of the name must be one of that class's fields."""
    prefixes = sorted(scopes, key=len, reverse=True)
    unknown = []
    for name in names:
        if name in IMAGE_VARIABLES or (skip and name.startswith(skip)):
            continue
        prefix = next((p for p in prefixes if name.startswith(p)), None)
        if prefix is None or not _is_plain_field(scopes[prefix], name[len(prefix) :].lower()):
            unknown.append(name)
    return unknown


SHARED_SCOPES: dict[str, type[BaseSettings]] = {
    "HOMEWARD_KAFKA_": KafkaSettings,
    "HOMEWARD_AUTH_": AuthSettings,  # staff sign-in (homeward.kit.auth)
    "HOMEWARD_": CommonSettings,
}


def subscriptions(service: str) -> list[Subscription]:
    """What the service consumes, from its own wiring (``entrypoints/app.py``)."""
    module = importlib.import_module(f"homeward.{service}.entrypoints.app")
    subs = getattr(module, "SUBSCRIPTIONS", None)
    assert subs is not None, f"homeward.{service}.entrypoints.app defines no SUBSCRIPTIONS"
    return list(subs)


def consumed_topics(service: str) -> tuple[set[str], bool]:
    """(the named topics the service reads, whether it reads the partner topics by pattern)."""
    names: set[str] = set()
    partners = False
    for sub in subscriptions(service):
        named, pattern = sub.resolve(Topics(""))
        names |= set(named)
        partners = partners or pattern is not None
    return names, partners


def own_prefixes() -> tuple[str, ...]:
    return tuple(f"HOMEWARD_{s.upper()}_" for s in SERVICES)


def service_scopes(service: str) -> dict[str, type[BaseSettings]]:
    return {**SHARED_SCOPES, f"HOMEWARD_{service.upper()}_": service_settings(service)}


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """No HOMEWARD_* variable of the test session leaks into a settings object built here."""
    for name in list(os.environ):
        if name.startswith("HOMEWARD_"):
            monkeypatch.delenv(name)
    return monkeypatch


def apply_env(monkeypatch: pytest.MonkeyPatch, env: Mapping[str, Any]) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, "" if value is None else str(value))


# ---- docker-compose -------------------------------------------------------------------
def compose_binary() -> str:
    binary = shutil.which("docker-compose")
    if binary is None:
        pytest.fail("docker-compose is not installed; scripts/bootstrap.sh installs it (Debian package docker-compose)")
    return binary


# The Kafka passwords docker-compose.yml requires (${KAFKA_PASSWORD_<WHO>:?...}, no defaults):
# the admin's, ops' and each service's, as an operator's .env file would give them.
COMPOSE_PASSWORDS = {f"KAFKA_PASSWORD_{who.upper()}": f"test-{who}-secret" for who in ("admin", "ops", *SERVICES)}
# The keys the file requires (it has no default for them), as an operator's .env would give them.
COMPOSE_KEYS = {
    "HOMEWARD_PATIENT_REF_KEY": "k" * 43,
    "HOMEWARD_NHS_NUMBER_KEY": "n" * 43,
    "HOMEWARD_AUTH_ISSUER": "https://login.example.nhs.uk",
    "HOMEWARD_AUTH_JWKS": "https://login.example.nhs.uk/jwks.json",
}


def run_compose(
    *args: str, passwords: Mapping[str, str] = COMPOSE_PASSWORDS, keys: Mapping[str, str] = COMPOSE_KEYS
) -> subprocess.CompletedProcess[str]:
    # A clean environment: the file's own defaults, not whatever this shell exports, and the
    # required passwords and keys.
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": os.environ.get("HOME", "/tmp"),
        **passwords,
        **keys,
    }
    return subprocess.run(
        [compose_binary(), "-f", str(COMPOSE_FILE), *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@functools.cache
def compose() -> dict[str, Any]:
    """The compose file as docker-compose resolves it (anchors merged, ${VAR:-default} filled)."""
    result = run_compose("config")
    assert result.returncode == 0, result.stderr
    return yaml.safe_load(result.stdout)


def compose_service(name: str) -> dict[str, Any]:
    services = compose()["services"]
    assert name in services, f"docker-compose.yml has no service {name!r}"
    return services[name]


def compose_env(name: str) -> dict[str, str]:
    env = compose_service(name).get("environment") or {}
    if isinstance(env, list):  # KEY=VALUE form
        env = dict(item.split("=", 1) for item in env)
    return {k: "" if v is None else str(v) for k, v in env.items()}


def published_ports(service: dict[str, Any]) -> list[tuple[int, int]]:
    """(host, container) pairs, from either the short or the long port syntax."""
    pairs = []
    for port in service.get("ports") or []:
        if isinstance(port, dict):
            pairs.append((int(port["published"]), int(port["target"])))
        else:
            host, _, container = str(port).rpartition(":")
            pairs.append((int(host.rpartition(":")[2] or container), int(container)))
    return pairs


def kafka_listeners(env: Mapping[str, str]) -> dict[str, tuple[str, int]]:
    """Listener name -> (host, port) from KAFKA_ADVERTISED_LISTENERS."""
    out = {}
    for item in env["KAFKA_ADVERTISED_LISTENERS"].split(","):
        name, _, address = item.partition("://")
        host, _, port = address.rpartition(":")
        out[name] = (host, int(port))
    return out


def image_server_properties(env: Mapping[str, str]) -> dict[str, str]:
    """server.properties as the apache/kafka image writes it from the environment
    (kafka.docker.KafkaDockerWrapper): each KAFKA_* variable, KAFKA_ removed, lower case,
    "_" -> ".", then "..." -> "-" and ".." -> "_"."""
    excluded = {"KAFKA_VERSION", "KAFKA_HEAP_OPTS", "KAFKA_LOG4J_OPTS", "KAFKA_OPTS", "KAFKA_JMX_OPTS"}
    excluded |= {"KAFKA_JVM_PERFORMANCE_OPTS", "KAFKA_GC_LOG_OPTS", "KAFKA_JMX_HOSTNAME"}
    excluded |= {"KAFKA_LOG4J_ROOT_LOGLEVEL", "KAFKA_LOG4J_LOGGERS", "KAFKA_TOOLS_LOG4J_LOGLEVEL"}
    props = {}
    for name, value in env.items():
        if name.startswith("KAFKA_") and name not in excluded:
            key = name.replace("KAFKA_", "").lower().replace("_", ".").replace("...", "-").replace("..", "_")
            props[key] = value
    return props


def listener_mechanisms(props: Mapping[str, str], listener: str) -> set[str]:
    """The SASL mechanisms a listener accepts."""
    raw = props.get(f"listener.name.{listener.lower()}.sasl.enabled.mechanisms") or props.get(
        "sasl.enabled.mechanisms", "GSSAPI"
    )
    return {m.strip() for m in raw.split(",")}


def jaas_options(jaas: str) -> dict[str, str]:
    return dict(re.findall(r'([\w-]+)="([^"]*)"', jaas))


def test_compose_config_is_valid() -> None:
    result = run_compose("config", "-q")
    assert result.returncode == 0, f"docker-compose config -q failed:\n{result.stderr}"


def test_compose_requires_every_kafka_password() -> None:
    for name in COMPOSE_PASSWORDS:
        without = {k: v for k, v in COMPOSE_PASSWORDS.items() if k != name}
        result = run_compose("config", "-q", passwords=without)
        assert result.returncode != 0 and name in result.stderr, f"docker-compose.yml runs without {name}"


def test_compose_kafka_authenticates_every_client_and_allows_only_acls() -> None:
    env = compose_env("kafka")
    props = image_server_properties(env)
    assert props["authorizer.class.name"] == "org.apache.kafka.metadata.authorizer.StandardAuthorizer"
    assert props["allow.everyone.if.no.acl.found"] == "false"
    assert props["super.users"] == f"User:{ADMIN}", "the admin, and only it, is a super user"
    protocols = dict(p.split(":") for p in props["listener.security.protocol.map"].split(","))
    listeners = [item.partition("://")[0] for item in props["listeners"].split(",")]
    assert set(listeners) == set(protocols)
    assert props["controller.listener.names"] in listeners
    for listener in listeners:
        assert protocols[listener] in ("SASL_PLAINTEXT", "SASL_SSL"), f"{listener} takes unauthenticated clients"
        # The image's start script wants a JAAS file (KAFKA_OPTS) once a listener name says SSL or SASL_.
        assert "SSL" not in listener and "SASL_" not in listener, listener
        for mechanism in listener_mechanisms(props, listener):
            jaas = props.get(f"listener.name.{listener.lower()}.{mechanism.lower()}.sasl.jaas.config")
            assert jaas, f"{listener} accepts {mechanism} but has no JAAS configuration for it"
            if mechanism == "PLAIN":
                # PLAIN users are only those the JAAS line names: the admin alone.
                users = {k[len("user_") :] for k in jaas_options(jaas) if k.startswith("user_")}
                assert users == {ADMIN}, f"{listener} accepts PLAIN users {users}"
    # The services' and the host's listeners take SCRAM-SHA-512 only; the controller's is PLAIN
    # (Kafka supports no SCRAM there), as is the broker's own, which the admin uses.
    advertised = kafka_listeners(env)
    for listener, (host, _) in advertised.items():
        if host != "kafka" or listener == props["inter.broker.listener.name"]:
            continue
        assert listener_mechanisms(props, listener) == {"SCRAM-SHA-512"}, listener
    assert props["sasl.mechanism.controller.protocol"] == "PLAIN"
    assert listener_mechanisms(props, props["controller.listener.names"]) == {"PLAIN"}
    assert props["inter.broker.listener.name"] in advertised, "the admin's listener must be advertised"
    assert not [
        p
        for p in published_ports(compose_service("kafka"))
        if p[1] == advertised[props["inter.broker.listener.name"]][1]
    ], "the PLAIN listener is not published to the host"


def test_compose_kafka_health_check_signs_in() -> None:
    (kind, command) = compose_service("kafka")["healthcheck"]["test"]
    assert kind == "CMD-SHELL"
    assert "--command-config" in command and "sasl.mechanism=PLAIN" in command
    props = image_server_properties(compose_env("kafka"))
    listener = props["inter.broker.listener.name"]
    host, port = kafka_listeners(compose_env("kafka"))[listener]
    assert f"--bootstrap-server {host}:{port}" in command
    # The client reads the broker's own JAAS line (its username and password) from the environment.
    assert f"$KAFKA_LISTENER_NAME_{listener}_PLAIN_SASL_JAAS_CONFIG" in command.replace("$$", "$")
    assert "sasl.jaas.config" in command


@pytest.mark.parametrize("missing", sorted(COMPOSE_KEYS))
def test_compose_refuses_to_run_without_each_key(missing: str) -> None:
    """No key has a default: the public development key is gone from the file."""
    result = run_compose("config", "-q", keys={k: v for k, v in COMPOSE_KEYS.items() if k != missing})
    assert result.returncode != 0
    assert missing in result.stderr
    assert "development-key" not in COMPOSE_FILE.read_text()


def test_compose_runs_infrastructure_with_health_checks_and_volumes() -> None:
    kafka = compose_service("kafka")
    assert kafka["image"].startswith("apache/kafka:")
    env = compose_env("kafka")
    assert set(env["KAFKA_PROCESS_ROLES"].split(",")) == {"broker", "controller"}, "KRaft combined mode"
    assert env["KAFKA_AUTO_CREATE_TOPICS_ENABLE"] == "false", "topics come from the init step only"
    assert env["KAFKA_GROUP_INITIAL_REBALANCE_DELAY_MS"] == "0"
    assert env["KAFKA_NODE_ID"] and env["KAFKA_CONTROLLER_QUORUM_VOTERS"].startswith(f"{env['KAFKA_NODE_ID']}@kafka:")
    assert compose_service("postgres")["image"].startswith("postgres:")
    assert compose_service("mail")["image"].startswith("maildev/maildev:")
    declared_volumes = set(compose().get("volumes") or {})
    for name in ("kafka", "postgres", "mail"):
        service = compose_service(name)
        assert service.get("healthcheck", {}).get("test") not in (None, ["NONE"]), f"{name} has no health check"
        mounted = {str(v).split(":", 1)[0] if isinstance(v, str) else v.get("source") for v in service["volumes"]}
        assert mounted & declared_volumes, f"{name} keeps its data in no named volume"


def test_compose_postgres_creates_one_database_and_role_per_service() -> None:
    postgres = compose_service("postgres")
    mounts = [str(v) if isinstance(v, str) else f"{v['source']}:{v['target']}" for v in postgres["volumes"]]
    assert any(
        m.split(":")[0].endswith("deploy/postgres/init-databases.sh") and "/docker-entrypoint-initdb.d/" in m
        for m in mounts
    ), mounts
    listed = re.search(r"HOMEWARD_DB_SERVICES:-([^}]*)\}", PG_INIT.read_text())
    assert listed is not None and set(listed.group(1).split()) == set(SERVICES)
    pg_env = compose_env("postgres")
    for service in SERVICES:
        url = urlsplit(compose_env(service)[f"HOMEWARD_{service.upper()}_DATABASE_URL"])
        role = f"homeward_{service}"
        assert (url.hostname, url.port, url.username, url.path) == ("postgres", 5432, role, f"/{role}"), url
        assert url.password == pg_env[f"DB_PASSWORD_{service.upper()}"], f"{service}: password differs from postgres'"


def test_compose_runs_every_service_on_its_own_port() -> None:
    built = {name for name, spec in compose()["services"].items() if "build" in spec}
    assert built == {*SERVICES, "init"}, "every service of homeward.contracts.topics.SERVICES, and only those"
    ports = [port for service in SERVICES for port in published_ports(compose_service(service))]
    assert len(set(ports)) == len(ports) == len(SERVICES), ports


@pytest.mark.parametrize("service", SERVICES)
def test_compose_service_has_health_check_and_start_conditions(service: str) -> None:
    spec = compose_service(service)
    assert spec["image"] == compose_service("init")["image"], "services and init run the same image"
    test = spec.get("healthcheck", {}).get("test")
    assert test and test != ["NONE"], f"{service} has no health check"
    conditions = {name: dep.get("condition") for name, dep in spec["depends_on"].items()}
    assert conditions.get("kafka") == "service_healthy"
    assert conditions.get("postgres") == "service_healthy"
    assert conditions.get("init") == "service_completed_successfully"
    if service == "notifications":
        assert conditions.get("mail") == "service_healthy"


@pytest.mark.parametrize("service", [*SERVICES, "init"])
def test_compose_shared_variables_are_kit_settings(service: str, clean_env: pytest.MonkeyPatch) -> None:
    env = compose_env(service)
    assert all(name.startswith("HOMEWARD_") for name in env), f"{service}: not a Homeward setting: {sorted(env)}"
    skip = (*own_prefixes(), "HOMEWARD_INIT_")
    assert unknown_variables(env, SHARED_SCOPES, skip=skip) == []
    if "HOMEWARD_SERVICE" in env:
        assert env["HOMEWARD_SERVICE"] == service
    apply_env(clean_env, env)
    kafka = KafkaSettings()  # the values parse, not only the names
    if service != "init":
        CommonSettings()
    # The bootstrap address is one of the kafka service's listeners for containers, not the
    # host's, and the client speaks that listener's protocol and one of its SASL mechanisms.
    listeners = kafka_listeners(compose_env("kafka"))
    props = image_server_properties(compose_env("kafka"))
    protocols = dict(p.split(":") for p in props["listener.security.protocol.map"].split(","))
    (listener,) = [
        name for name, address in listeners.items() if f"{address[0]}:{address[1]}" == kafka.bootstrap_servers
    ]
    assert listeners[listener][0] == "kafka", f"{service} is given the host's listener"
    assert kafka.security_protocol == protocols[listener] == "SASL_PLAINTEXT"
    assert kafka.sasl_mechanism in listener_mechanisms(props, listener)
    assert kafka.sasl_username and kafka.sasl_password and kafka.sasl_password.get_secret_value()
    if service == "init":
        # The admin, before any SCRAM credential exists: PLAIN on the broker's own listener.
        assert (kafka.sasl_username, listener) == (ADMIN, props["inter.broker.listener.name"])
        jaas = jaas_options(props[f"listener.name.{listener.lower()}.plain.sasl.jaas.config"])
        assert (
            kafka.sasl_password.get_secret_value() == jaas[f"user_{ADMIN}"] == COMPOSE_PASSWORDS["KAFKA_PASSWORD_ADMIN"]
        )
    else:
        assert kafka.sasl_mechanism == "SCRAM-SHA-512"
        assert kafka.sasl_username == service_principal(service) != ADMIN, f"{service} must sign in as itself"
        assert kafka.sasl_password.get_secret_value() == COMPOSE_PASSWORDS[f"KAFKA_PASSWORD_{service.upper()}"]


def test_compose_each_service_is_its_own_kafka_principal(clean_env: pytest.MonkeyPatch) -> None:
    """No two services share a user or a password, none is the admin, and the init step creates
    each service's credential with the password the service is given."""
    users = {s: compose_env(s)["HOMEWARD_KAFKA_SASL_USERNAME"] for s in SERVICES}
    passwords = {s: compose_env(s)["HOMEWARD_KAFKA_SASL_PASSWORD"] for s in SERVICES}
    assert users == {s: service_principal(s) for s in SERVICES}
    assert ADMIN not in users.values() and OPS not in users.values()
    assert len(set(passwords.values())) == len(SERVICES)
    apply_env(clean_env, compose_env("init"))
    module = init_module()
    made = module.credentials(module.InitSettings(), KafkaSettings())
    assert set(made) == {ADMIN, *homeward_grants()}, "the admin, ops and every service"
    for service in SERVICES:
        assert made[service_principal(service)] == passwords[service], service
    assert made[ADMIN] != made[OPS] and made[OPS] not in passwords.values()


@pytest.mark.parametrize("service", SERVICES)
def test_compose_service_variables_are_the_service_settings(service: str, clean_env: pytest.MonkeyPatch) -> None:
    env = compose_env(service)
    others = tuple(p for p in own_prefixes() if p != f"HOMEWARD_{service.upper()}_")
    assert not [n for n in env if n.startswith(others)], f"{service} is given another service's settings"
    assert unknown_variables(env, service_scopes(service)) == []
    apply_env(clean_env, env)
    settings = service_settings(service)()
    assert settings.http_host == "0.0.0.0", "a service in a container must listen beyond loopback"
    assert published_ports(compose_service(service)) == [(settings.http_port, settings.http_port)]
    assert settings.database_url == env[f"HOMEWARD_{service.upper()}_DATABASE_URL"]


def test_compose_notifications_send_to_the_mail_catcher(clean_env: pytest.MonkeyPatch) -> None:
    env = compose_env("notifications")
    apply_env(clean_env, env)
    settings: Any = service_settings("notifications")()
    assert settings.smtp_host == "mail"
    assert int(settings.smtp_port) == int(compose_env("mail")["MAILDEV_SMTP_PORT"])


def test_compose_init_creates_exactly_the_declared_topics(clean_env: pytest.MonkeyPatch) -> None:
    init = compose_service("init")
    assert init.get("command") == ["init"]
    assert 'exec python /app/deploy/init/init_topics.py "$@"' in ENTRYPOINT.read_text()
    assert f"deploy/init/init_topics.py {IMAGE_INIT_PATH}" in DOCKERFILE.read_text()
    env = compose_env("init")
    module = init_module()
    assert unknown_variables(env, {"HOMEWARD_KAFKA_": KafkaSettings, "HOMEWARD_INIT_": module.InitSettings}) == []
    apply_env(clean_env, env)
    settings = module.InitSettings()
    assert settings.replication_factor == 1, "one broker in compose"
    wanted = module.wanted_topics(settings, KafkaSettings())
    assert [(t.name, t.partitions, t.retention_ms) for t in wanted] == [
        (t.name, t.partitions, t.retention_ms) for t in declared_topics()
    ]
    dlq = {t.name: t.retention_ms for t in wanted if t.name.startswith("homeward.dlq.")}
    assert set(dlq.values()) == {DLQ_RETENTION_DAYS * DAY_MS} and len(dlq) == len(SERVICES), dlq


def test_compose_init_applies_the_access_policy(clean_env: pytest.MonkeyPatch) -> None:
    module = init_module()
    # Every principal of the policy has a password variable, and only those.
    assert set(module.password_fields()) == set(homeward_grants())
    assert set(module.password_fields().values()) == {
        f for f in module.InitSettings.model_fields if f.startswith("password_")
    }
    apply_env(clean_env, compose_env("init"))
    settings = module.InitSettings()
    assert settings.manage_access, "compose's init step makes the credentials and ACLs"
    assert module.wanted_grants(KafkaSettings()) == homeward_grants()
    assert module.wanted_grants(KafkaSettings(topic_namespace="t1.")) == homeward_grants("t1.")
    clean_env.delenv("HOMEWARD_INIT_PASSWORD_BUDGET")
    with pytest.raises(ValueError, match="HOMEWARD_INIT_PASSWORD_BUDGET"):
        module.credentials(module.InitSettings(), KafkaSettings())


def test_init_dead_letter_retention_is_configurable() -> None:
    module = init_module()
    kafka = KafkaSettings()
    for days, expected in ((30, 30 * DAY_MS), (0, -1)):
        wanted = module.wanted_topics(module.InitSettings(dlq_retention_days=days), kafka)
        dlq = [t for t in wanted if t.name in {dead_letter_topic(s) for s in SERVICES}]
        assert len(dlq) == len(SERVICES) and {t.retention_ms for t in dlq} == {expected}, days
    # DLQ_RETENTION_DAYS, HOMEWARD_DLQ_RETENTION_DAYS in the shell, reaches the init step.
    assert re.search(
        r"HOMEWARD_INIT_DLQ_RETENTION_DAYS: \$\{HOMEWARD_DLQ_RETENTION_DAYS:-(\d+)\}", COMPOSE_FILE.read_text()
    )
    assert compose_env("init")["HOMEWARD_INIT_DLQ_RETENTION_DAYS"] == str(DLQ_RETENTION_DAYS)


def test_init_adds_partner_topics_and_honours_the_namespace() -> None:
    module = init_module()
    wanted = module.wanted_topics(module.InitSettings(partners=" ryg, 8HV48,RYG "), KafkaSettings())
    assert [t.name for t in wanted] == [t.name for t in declared_topics(("RYG", "8HV48"))]
    spaced = module.wanted_topics(module.InitSettings(), KafkaSettings(topic_namespace="t1."))
    assert [t.name for t in spaced] == ["t1." + t.name for t in declared_topics()]
    with pytest.raises(ValueError, match="not an ODS code"):
        module.partner_codes("RYG,x")


# ---- the checker itself, against the kit's settings (no service code needed) -------------
def test_a_renamed_setting_is_caught() -> None:
    class RenamedKafka(BaseSettings):
        model_config = SettingsConfigDict(env_prefix="HOMEWARD_KAFKA_")
        brokers: str = ""  # was bootstrap_servers
        security_protocol: str = "PLAINTEXT"
        sasl_mechanism: str = ""
        sasl_username: str = ""
        sasl_password: str = ""

    class Demo(ServiceSettings):
        model_config = SettingsConfigDict(env_prefix="HOMEWARD_DEMO_")

    env = compose_env("placements")
    scopes: dict[str, type[BaseSettings]] = {
        "HOMEWARD_KAFKA_": RenamedKafka,
        "HOMEWARD_AUTH_": AuthSettings,
        "HOMEWARD_": CommonSettings,
    }
    assert unknown_variables(env, scopes, skip=own_prefixes()) == ["HOMEWARD_KAFKA_BOOTSTRAP_SERVERS"]
    demo = {"HOMEWARD_DEMO_HTTP_PORT": "1", "HOMEWARD_DEMO_DATABASE_URL": "x", "HOMEWARD_DEMO_KAFKA": "x"}
    demo |= {"HOMEWARD_DEMO_HTTP_PROT": "1", "HOMEWARD_LOG_LEVELS": "x", "HOMEWARD_SERVICE": "demo"}
    assert unknown_variables(demo, {**SHARED_SCOPES, "HOMEWARD_DEMO_": Demo}) == [
        "HOMEWARD_DEMO_KAFKA",
        "HOMEWARD_DEMO_HTTP_PROT",
        "HOMEWARD_LOG_LEVELS",
    ]


# ---- the image ------------------------------------------------------------------------
def dockerfile_stages() -> list[list[str]]:
    """Instructions (continuation lines joined), grouped by FROM."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    stages: list[list[str]] = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line.upper().startswith("FROM "):
            stages.append([])
        if stages:
            stages[-1].append(line)
    return stages


def dockerfile_env() -> dict[str, str]:
    env = {}
    for stage_line in dockerfile_stages()[-1]:
        if stage_line.upper().startswith("ENV "):
            env.update(dict(re.findall(r"(\w+)=(\S+)", stage_line)))
    return env


def test_image_is_multi_stage_non_root_with_health_check_and_no_build_tools() -> None:
    stages = dockerfile_stages()
    assert len(stages) >= 2, "multi-stage build"
    final = stages[-1]
    args = {m.group(1): m.group(2) for m in re.finditer(r"^ARG (\w+)=(\S+)", DOCKERFILE.read_text(), re.M)}
    base = final[0].split()[1]
    base = re.sub(r"\$\{(\w+)\}", lambda m: args.get(m.group(1), m.group(0)), base)
    assert base.startswith("python:3.11-slim"), base
    users = [line.split()[1] for line in final if line.upper().startswith("USER ")]
    assert users and users[-1].split(":")[0] == "10001", "runs as uid 10001"
    assert any(line.upper().startswith("HEALTHCHECK ") and "/healthz" in line for line in final)
    assert any(line.upper().startswith("ENTRYPOINT ") and "entrypoint.sh" in line for line in final)
    runs = " ".join(line for line in final if line.upper().startswith("RUN "))
    for tool in ("apt-get install", "gcc", "build-essential", "pip install", "uv ", "uv=="):
        assert tool not in runs, f"the final stage installs {tool!r}"
    copied = [line for line in final if line.upper().startswith("COPY --FROM")]
    assert copied and all("/app/.venv" in line for line in copied), "only the virtualenv comes from the builder"
    assert "--no-dev" in " ".join(stages[0]) and "--frozen" in " ".join(stages[0])
    ignored = set(ROOT.joinpath(".dockerignore").read_text().split())
    assert {".git", ".venv", ".local", ".env"} <= ignored, "compose's .env holds the Kafka passwords"


def test_image_has_the_kit_admin_extra_for_the_init_step() -> None:
    """The init step sets credentials and ACLs with homeward.kit.access (confluent-kafka, the kit's
    ``admin`` extra). The image syncs the root package, which depends on every service and on
    ``homeward-kit[admin]``, so it brings it; the build imports it to be sure. The test support
    (homeward-testing, with pytest) is no dependency of the root, so it stays out of the image."""
    import tomllib

    root = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert "homeward-kit[admin]" in root["project"]["dependencies"]
    kit = tomllib.loads((ROOT / "libs" / "kit" / "pyproject.toml").read_text())
    assert any(d.startswith("confluent-kafka") for d in kit["project"]["optional-dependencies"]["admin"])
    builder = " ".join(dockerfile_stages()[0])
    syncs = [m for line in dockerfile_stages()[0] for m in re.findall(r"uv sync ([^&]*)", line)]
    assert syncs and all("--package homeward " in s + " " for s in syncs) and "--no-install-workspace" not in syncs[-1]
    assert not any("--all-packages" in s for s in syncs), "every package would bring the test support in"
    names = {re.split(r"[\[<>=~ ;]", d, maxsplit=1)[0] for d in root["project"]["dependencies"]}
    services = {f"homeward-{s}" for s in ("ingress", "referrals", "placements", "budget", "notifications")}
    assert services <= names and "homeward-testing" not in names and "pytest" not in names
    assert re.search(r"python -c \"import [^\"]*\bconfluent_kafka\b", builder), "the build checks confluent_kafka"
    assert re.search(r"python -c \"import [^\"]*\bhomeward\.kit\.access\b", builder)
    init = INIT_SCRIPT.read_text()
    assert "from homeward.kit.access import KafkaAccess" in init


def test_image_shared_variables_are_kit_settings() -> None:
    assert (
        unknown_variables(
            [n for n in dockerfile_env() if n.startswith("HOMEWARD_")], SHARED_SCOPES, skip=own_prefixes()
        )
        == []
    )


@pytest.mark.parametrize("service", SERVICES)
def test_image_service_variables_are_the_service_settings(service: str) -> None:
    names = [n for n in dockerfile_env() if n.startswith(f"HOMEWARD_{service.upper()}_")]
    assert names, f"the image sets nothing for {service} (its HTTP host must be 0.0.0.0)"
    assert unknown_variables(names, service_scopes(service)) == []
    assert dockerfile_env().get(f"HOMEWARD_{service.upper()}_HTTP_HOST") == "0.0.0.0"


def test_image_installs_and_exposes_every_service(clean_env: pytest.MonkeyPatch) -> None:
    on_disk = {p.parent.name for p in ROOT.glob("services/*/pyproject.toml")}
    assert on_disk == set(SERVICES), "services/ and homeward.contracts.topics.SERVICES disagree"
    builder = " ".join(dockerfile_stages()[0])
    copied = set(re.findall(r"COPY services/(\w+)/pyproject\.toml services/\1/", builder))
    assert copied == set(SERVICES), "the builder resolves the dependencies of every service's pyproject.toml"
    check = re.search(r'python -c "import ([^"]+)"', builder)
    assert check is not None, "the builder imports the installed packages"
    imported = {name.strip() for name in check.group(1).split(",")}
    assert {f"homeward.{s}" for s in SERVICES} <= imported
    exposed = {
        int(port) for line in dockerfile_stages()[-1] if line.upper().startswith("EXPOSE ") for port in line.split()[1:]
    }
    assert exposed == {service_settings(s)().http_port for s in SERVICES}


@pytest.fixture
def fake_python(tmp_path: Path) -> Path:
    """A `python` and a `homeward` on PATH that print how they were called."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name in ("python", "homeward"):
        stub = bin_dir / name
        stub.write_text(f'#!/bin/sh\necho "{name} $*"\n')
        stub.chmod(0o755)
    return bin_dir


@pytest.mark.parametrize(
    ("args", "service_env", "expected"),
    [
        (["placements"], None, "python -m homeward.placements"),
        ([], "budget", "python -m homeward.budget"),
        (["init"], "referrals", f"python {IMAGE_INIT_PATH}"),
        (["homeward", "emit", "x.json"], "notifications", "homeward emit x.json"),
    ],
)
def test_entrypoint_runs_the_named_service(
    fake_python: Path, args: list[str], service_env: str | None, expected: str
) -> None:
    env = {"PATH": f"{fake_python}:/usr/bin:/bin"}
    if service_env:
        env["HOMEWARD_SERVICE"] = service_env
    result = subprocess.run(["sh", str(ENTRYPOINT), *args], env=env, capture_output=True, text=True, check=False)
    assert (result.returncode, result.stdout.strip()) == (0, expected), result.stderr


@pytest.mark.parametrize("service", SERVICES)
def test_entrypoint_runs_every_service(fake_python: Path, service: str) -> None:
    env = {"PATH": f"{fake_python}:/usr/bin:/bin"}
    for args, service_env in (([service], None), ([], service)):
        if service_env:
            env["HOMEWARD_SERVICE"] = service_env
        result = subprocess.run(["sh", str(ENTRYPOINT), *args], env=env, capture_output=True, text=True, check=False)
        assert (result.returncode, result.stdout.strip()) == (0, f"python -m homeward.{service}"), result.stderr


def test_entrypoint_without_a_service_says_how_to_name_one(fake_python: Path) -> None:
    result = subprocess.run(
        ["sh", str(ENTRYPOINT)],
        env={"PATH": f"{fake_python}:/usr/bin:/bin"},
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 64 and "HOMEWARD_SERVICE" in result.stderr


@pytest.fixture
def status_server() -> Iterator[int]:
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200 if self.path == "/healthz" else 503)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


def test_healthcheck_probes_the_service_port(status_server: int, monkeypatch: pytest.MonkeyPatch) -> None:
    module = load_path(HEALTHCHECK, "homeward_deploy_healthcheck")
    monkeypatch.setattr(module, "http_port", lambda service: status_server)
    monkeypatch.setenv("HOMEWARD_SERVICE", "placements")
    assert module.current_service() == "placements"
    assert module.main(["healthcheck.py"]) == 0
    assert module.main(["healthcheck.py", "/readyz"]) == 1
    monkeypatch.setattr(module, "current_service", lambda: None)
    assert module.main(["healthcheck.py"]) == 0, "a container running no service has nothing to check"


def test_healthcheck_knows_every_service_and_its_port(clean_env: pytest.MonkeyPatch) -> None:
    module = load_path(HEALTHCHECK, "homeward_deploy_healthcheck")
    assert tuple(module.SERVICES) == SERVICES
    for service in SERVICES:
        assert module.http_port(service) == service_settings(service)().http_port
        clean_env.setenv("HOMEWARD_SERVICE", service)
        assert module.current_service() == service


# ---- Kubernetes (deploy/) -------------------------------------------------------------
@functools.cache
def manifests() -> list[dict[str, Any]]:
    docs = []
    for path in sorted(DEPLOY.rglob("*.yaml")) + sorted(DEPLOY.rglob("*.yml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc is not None:
                assert isinstance(doc, dict), f"{path}: not a mapping"
                doc.setdefault("__path__", str(path.relative_to(ROOT)))
                docs.append(doc)
    return docs


def base_resources() -> list[dict[str, Any]]:
    """What deploy/base/kustomization.yaml applies (not the templates next to it)."""
    kustomization = yaml.safe_load((BASE / "kustomization.yaml").read_text())
    docs = []
    for entry in kustomization["resources"]:
        path = BASE / entry
        assert path.is_file(), f"kustomization lists {entry}, which does not exist"
        docs += [d for d in yaml.safe_load_all(path.read_text()) if d]
    return docs


def of_kind(kind: str, docs: list[dict[str, Any]] | None = None) -> list[dict[str, Any]]:
    return [d for d in (docs if docs is not None else base_resources()) if d.get("kind") == kind]


def deployment(service: str) -> dict[str, Any]:
    found = [d for d in of_kind("Deployment") if d["metadata"]["name"] == service]
    assert len(found) == 1, f"no Deployment {service}"
    return found[0]


def container_env_names(container: dict[str, Any]) -> list[str]:
    names = [e["name"] for e in container.get("env", [])]
    config_maps = {c["metadata"]["name"]: c.get("data", {}) for c in of_kind("ConfigMap")}
    for source in container.get("envFrom", []):
        ref = source.get("configMapRef")
        assert ref is not None, "envFrom takes ConfigMaps only (Secrets go through env, one by one)"
        assert ref["name"] in config_maps, f"envFrom names a ConfigMap {ref['name']} that is not in the base"
        names += list(config_maps[ref["name"]])
    return names


def test_every_manifest_parses_and_every_kustomization_lists_existing_files() -> None:
    assert manifests()
    for kustomization in DEPLOY.rglob("kustomization.yaml"):
        for entry in yaml.safe_load(kustomization.read_text()).get("resources", []):
            assert (kustomization.parent / entry).exists(), f"{kustomization}: {entry} does not exist"
    listed = {(BASE / e).resolve() for e in yaml.safe_load((BASE / "kustomization.yaml").read_text())["resources"]}
    orphans = [p for p in BASE.rglob("*.yaml") if p.resolve() not in listed and p.name != "kustomization.yaml"]
    assert all(".example." in p.name for p in orphans), f"files in deploy/base applied by nothing: {orphans}"


def test_every_deployment_has_probes_and_resources() -> None:
    deployments = of_kind("Deployment", manifests())
    assert {d["metadata"]["name"] for d in deployments} >= set(SERVICES)
    for d in deployments:
        for c in d["spec"]["template"]["spec"]["containers"]:
            where = f"{d['metadata']['name']}/{c['name']}"
            assert c.get("livenessProbe", {}).get("httpGet", {}).get("path") == "/healthz", where
            assert c.get("readinessProbe", {}).get("httpGet", {}).get("path") == "/readyz", where
            for part in ("requests", "limits"):
                assert {"cpu", "memory"} <= set(c.get("resources", {}).get(part, {})), f"{where}: resources.{part}"


def test_base_runs_every_service_once() -> None:
    for kind in ("Deployment", "Service", "HorizontalPodAutoscaler", "PodDisruptionBudget"):
        names = sorted(d["metadata"]["name"] for d in of_kind(kind))
        assert names == sorted(SERVICES), f"{kind}: {names}"
    for service in of_kind("Service"):
        name = service["metadata"]["name"]
        ports = [p["port"] for p in service["spec"]["ports"]]
        assert ports == [service_settings(name)().http_port], f"Service {name}"
        assert service["spec"]["selector"] == deployment(name)["spec"]["selector"]["matchLabels"]


def test_secrets_example_has_each_service_database() -> None:
    docs = [d for d in yaml.safe_load_all((BASE / "secrets.example.yaml").read_text()) if d]
    secrets = {d["metadata"]["name"]: d.get("stringData", {}) for d in docs if d.get("kind") == "Secret"}
    for service in SERVICES:
        (container,) = deployment(service)["spec"]["template"]["spec"]["containers"]
        env = {e["name"]: e for e in container["env"]}
        ref = env[f"HOMEWARD_{service.upper()}_DATABASE_URL"]["valueFrom"]["secretKeyRef"]
        assert ref["name"] == f"homeward-{service}-db" and ref["name"] in secrets, service
        url = urlsplit(secrets[ref["name"]][ref["key"]])
        role = f"homeward_{service}"
        assert (url.username, url.path) == (role, f"/{role}"), url


@pytest.mark.parametrize("service", SERVICES)
def test_deployment_scales_through_its_consumer_group(service: str) -> None:
    hpas = [h for h in of_kind("HorizontalPodAutoscaler") if h["spec"]["scaleTargetRef"]["name"] == service]
    assert len(hpas) == 1, f"{service} has no HorizontalPodAutoscaler"
    assert 2 <= hpas[0]["spec"]["minReplicas"] <= hpas[0]["spec"]["maxReplicas"]
    # A replica beyond a consumed topic's partition count has nothing to read on it. Partner
    # topics are read by pattern: their partitions add up as partners are onboarded.
    named, _ = consumed_topics(service)
    partitions = {t["spec"]["topicName"]: t["spec"]["partitions"] for t in of_kind("KafkaTopic")}
    for topic in named:
        assert hpas[0]["spec"]["maxReplicas"] <= partitions[topic], f"{service} reads {topic}"
    assert "replicas" not in deployment(service)["spec"], "the autoscaler, not the Deployment, owns the count"


def test_deployment_shared_variables_are_kit_settings() -> None:
    for service in SERVICES:
        (container,) = deployment(service)["spec"]["template"]["spec"]["containers"]
        names = container_env_names(container)
        assert all(n.startswith("HOMEWARD_") for n in names), names
        assert unknown_variables(names, SHARED_SCOPES, skip=own_prefixes()) == [], service
        env = {e["name"]: e for e in container["env"]}
        assert env["HOMEWARD_SERVICE"]["value"] == service and container["args"] == [service]
        # The Kafka identity is the service's own KafkaUser, with the Secret Strimzi writes for it.
        user = env["HOMEWARD_KAFKA_SASL_USERNAME"]["value"]
        assert user in {u["metadata"]["name"] for u in of_kind("KafkaUser")}
        assert env["HOMEWARD_KAFKA_SASL_PASSWORD"]["valueFrom"]["secretKeyRef"]["name"] == user == f"homeward-{service}"


@pytest.mark.parametrize("service", SERVICES)
def test_deployment_variables_are_the_service_settings(service: str) -> None:
    (container,) = deployment(service)["spec"]["template"]["spec"]["containers"]
    names = container_env_names(container)
    others = tuple(p for p in own_prefixes() if p != f"HOMEWARD_{service.upper()}_")
    assert not [n for n in names if n.startswith(others)], f"{service} is given another service's settings"
    assert unknown_variables(names, service_scopes(service)) == []
    values = {e["name"]: e.get("value") for e in container["env"]}
    port = int(values.get(f"HOMEWARD_{service.upper()}_HTTP_PORT") or service_settings(service)().http_port)
    assert [p["containerPort"] for p in container["ports"]] == [port]


def test_kafka_cluster_has_three_brokers_and_safe_replication() -> None:
    pools = of_kind("KafkaNodePool")
    brokers = sum(p["spec"]["replicas"] for p in pools if "broker" in p["spec"]["roles"])
    controllers = sum(p["spec"]["replicas"] for p in pools if "controller" in p["spec"]["roles"])
    assert (brokers, controllers) == (3, 3)
    (kafka,) = of_kind("Kafka")
    config = kafka["spec"]["kafka"]["config"]
    assert config["min.insync.replicas"] == 2 and config["default.replication.factor"] == 3
    assert config["auto.create.topics.enable"] is False
    assert {p["metadata"]["labels"]["strimzi.io/cluster"] for p in pools} == {kafka["metadata"]["name"]}


def test_kafka_cluster_authenticates_every_client_and_allows_only_acls() -> None:
    (kafka,) = of_kind("Kafka")
    spec = kafka["spec"]["kafka"]
    for listener in spec["listeners"]:
        assert listener.get("authentication", {}).get("type") == "scram-sha-512", listener["name"]
    # Strimzi's "simple" authorization is Kafka's StandardAuthorizer in KRaft mode.
    assert spec["authorization"] == {"type": "simple", "superUsers": [ADMIN]}
    assert spec["config"]["allow.everyone.if.no.acl.found"] is False
    users = {u["metadata"]["name"]: u["spec"] for u in of_kind("KafkaUser")}
    assert users[ADMIN] == {"authentication": {"type": "scram-sha-512"}}, "the super user needs no ACLs"
    for name, user in users.items():
        assert user["authentication"]["type"] == "scram-sha-512", name


def test_kafka_topics_are_the_declared_topics() -> None:
    topics = {t["spec"]["topicName"]: t["spec"] for t in of_kind("KafkaTopic")}
    declared = {t.name: t for t in declared_topics()}
    assert set(topics) == set(declared)
    for name, spec in topics.items():
        assert spec["partitions"] >= declared[name].partitions, name
        assert spec["replicas"] == 3, name
        retention = spec.get("config", {}).get("retention.ms")
        assert retention == declared[name].retention_ms, name
    for service in SERVICES:
        assert topics[dead_letter_topic(service)]["config"]["retention.ms"] == 14 * DAY_MS == 1209600000


# Strimzi's spelling of an ACL; homeward.contracts.access says "PREFIXED" and upper case.
STRIMZI_PATTERN = {"literal": "LITERAL", "prefix": "PREFIXED"}


def strimzi_grants(user: dict[str, Any]) -> list[Grant]:
    """A KafkaUser's ACLs as homeward.contracts.access grants (one per operation)."""
    grants = []
    for acl in user["spec"].get("authorization", {}).get("acls", []):
        resource = acl["resource"]
        assert acl.get("type", "allow") == "allow" and acl.get("host", "*") == "*", acl
        assert resource["type"] in ("topic", "group"), f"{user['metadata']['name']}: an ACL beyond the policy: {acl}"
        for operation in acl["operations"]:
            grants.append(
                Grant(
                    resource["type"].upper(),  # type: ignore[arg-type]
                    resource["name"],
                    STRIMZI_PATTERN[resource.get("patternType", "literal")],  # type: ignore[arg-type]
                    operation.upper(),  # type: ignore[arg-type]
                )
            )
    return grants


def test_kafka_users_are_exactly_the_access_policy() -> None:
    """users.yaml states homeward.contracts.access.homeward_grants(): every grant, nothing more."""
    users = {u["metadata"]["name"]: u for u in of_kind("KafkaUser")}
    assert set(users) == {ADMIN, *homeward_grants()}
    for principal, wanted in homeward_grants().items():
        found = strimzi_grants(users[principal])
        assert len(found) == len(set(found)), f"{principal}: an ACL is stated twice"
        missing = set(wanted) - set(found)
        extra = set(found) - set(wanted)
        assert not missing and not extra, (
            f"{principal}: missing {sorted(map(repr, missing))}; extra {sorted(map(repr, extra))}"
        )
    assert strimzi_grants(users[ADMIN]) == []


def partner_template() -> dict[str, Any]:
    """The commented partner KafkaUser at the end of users.yaml, uncommented."""
    text = USERS.read_text()
    match = re.search(r"^# BEGIN PARTNER TEMPLATE\n(.*?)^# END PARTNER TEMPLATE$", text, re.S | re.M)
    assert match, "users.yaml has no partner template"
    lines = match.group(1).splitlines()
    assert all(line.startswith("#") for line in lines), "the template is commented out, not applied"
    doc = yaml.safe_load("\n".join(line[2:] for line in lines))
    assert isinstance(doc, dict)
    return doc


@pytest.mark.parametrize("ods", ["RYG", "8HV48"])
def test_partner_kafka_user_template_grants_what_partner_add_grants(ods: str) -> None:
    text = yaml.safe_dump(partner_template()).replace("<ODS>", ods).replace("<ods>", ods.lower())
    user = yaml.safe_load(text)
    assert user["kind"] == "KafkaUser" and user["metadata"]["name"] == ods.lower(), "Kubernetes names are lower case"
    assert user["spec"]["authentication"] == {"type": "scram-sha-512"}
    assert sorted(strimzi_grants(user), key=repr) == sorted(partner_grants(ods), key=repr)
    assert re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", user["metadata"]["name"])


def test_each_service_may_write_only_its_own_topics() -> None:
    users = {u["metadata"]["name"]: u for u in of_kind("KafkaUser")}
    assert set(users) == {f"homeward-{s}" for s in SERVICES} | {OPS, ADMIN}
    for service in SERVICES:
        writes = {
            (acl["resource"]["name"], acl["resource"].get("patternType", "literal"))
            for acl in users[f"homeward-{service}"]["spec"]["authorization"]["acls"]
            if acl["resource"]["type"] == "topic" and {"Write", "All"} & set(acl.get("operations", []))
        }
        own = {(internal_topic(service), "literal"), (dead_letter_topic(service), "literal")}
        # The ingress also puts what partners POST over HTTP onto their own topics.
        assert writes == own | ({("partner.", "prefix")} if service == "ingress" else set()), service


def acl_allows(acls: list[dict[str, Any]], kind: str, name: str, operations: set[str]) -> bool:
    """Whether a Strimzi simple-authorization ACL list grants one of ``operations`` on a resource."""
    for acl in acls:
        resource = acl["resource"]
        if resource["type"] != kind or not ({*operations, "All"} & set(acl.get("operations", []))):
            continue
        if resource.get("patternType", "literal") == "prefix":
            if name.startswith(resource["name"]):
                return True
        elif resource["name"] in (name, "*"):
            return True
    return False


def test_each_service_may_read_only_what_it_subscribes_to() -> None:
    users = {
        u["metadata"]["name"]: u["spec"]["authorization"]["acls"]
        for u in of_kind("KafkaUser")
        if "authorization" in u["spec"]
    }
    # Every declared topic, and partner topics of partners not known when the base was written.
    candidates = [t.name for t in declared_topics()] + [partner_topic("RYG"), partner_topic("Z9Z9Z9Z9Z")]
    partner_readers = set()
    for service in SERVICES:
        acls = users[f"homeward-{service}"]
        named, partners = consumed_topics(service)
        wanted = named | ({partner_topic("RYG"), partner_topic("Z9Z9Z9Z9Z")} if partners else set())
        readable = {t for t in candidates if acl_allows(acls, "topic", t, {"Read"})}
        assert readable == wanted, f"{service} subscribes to {sorted(wanted)}; its KafkaUser reads {sorted(readable)}"
        for group, _ in consumer_groups(f"homeward-{service}", subscriptions(service)):
            assert acl_allows(acls, "group", group, {"Read"}), f"{service} may not use its consumer group {group}"
        if partners:
            partner_readers.add(service)
    assert partner_readers == {"ingress"}, "the ingress is the only reader of the partner topics"
    # Dead letters hold partner records as sent: only ops (and the ingress) may read them.
    dlq_readers = {
        name
        for name, acls in users.items()
        for service in SERVICES
        if acl_allows(acls, "topic", dead_letter_topic(service), {"Read"})
    }
    assert OPS in dlq_readers and dlq_readers <= {OPS, service_principal("ingress")}, dlq_readers


@pytest.mark.parametrize("service", SERVICES)
def test_every_deployment_gets_the_keys_its_service_refuses_to_start_without(service: str) -> None:
    [container] = deployment(service)["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e for e in container.get("env", [])}
    assert "secretKeyRef" in env["HOMEWARD_PATIENT_REF_KEY"]["valueFrom"]
    # Only placements stores NHS numbers: only it gets the key that encrypts them.
    assert ("HOMEWARD_NHS_NUMBER_KEY" in env) == (service == "placements")
    if service == "placements":
        assert env["HOMEWARD_NHS_NUMBER_KEY"]["valueFrom"]["secretKeyRef"]["name"] == "homeward-nhs-number-key"
