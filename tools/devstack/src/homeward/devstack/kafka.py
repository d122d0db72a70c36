"""Apache Kafka 4.1 in KRaft combined mode (one JVM: broker + controller), secured.

The jars come from Maven Central through ``stack/kafka/pom.xml``; the broker runs as
``java -cp '.local/kafka/lib/*' kafka.Kafka .local/kafka/config/server.properties``.

Every client authenticates with SASL/SCRAM-SHA-512 on the client listener, and the
StandardAuthorizer refuses whatever no ACL allows (``homeward.contracts.access`` is the
policy). The KRaft controller listener, on loopback, uses SASL/PLAIN: Kafka does not support
SCRAM there. The credentials of the admin, ops and each service are made when the storage is
formatted (``--add-scram``) and kept in ``.local/kafka/credentials.json`` (mode 0600); partners'
are made later by ``homeward partner add``.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import functools
import json
import logging
import os
import re
import shutil
import threading
import time
import uuid
from collections.abc import Coroutine, Iterable, Iterator
from pathlib import Path
from typing import Any, TypeVar

from homeward.contracts.access import ADMIN, OPS, service_principal
from homeward.contracts.topics import SERVICES, TopicSpec

from .config import StackConfig
from .errors import StackError
from .proc import (
    Log,
    live_pid,
    port_open,
    port_taken_error,
    run,
    sha256_of,
    sibling_root,
    spawn_detached,
    tail,
    terminate,
)
from .status import ComponentStatus

T = TypeVar("T")

_LIB_MARKER = ".homeward-complete"
SIBLING_SUFFIX = "/.local/kafka/config/server.properties"


# ---- async plumbing -------------------------------------------------------------
def run_async(coro: Coroutine[Any, Any, T]) -> T:
    """asyncio.run, also when called from code that already has a running loop."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["value"] = asyncio.run(coro)
        except BaseException as exc:  # re-raised in the caller's thread
            box["error"] = exc

    thread = threading.Thread(target=target, name="homeward-devstack", daemon=True)
    thread.start()
    thread.join()
    if "error" in box:
        raise box["error"]
    return box["value"]  # type: ignore[no-any-return]


@contextlib.contextmanager
def quiet_aiokafka() -> Iterator[None]:
    """aiokafka logs every refused connection while the broker boots; hush it meanwhile."""
    logger = logging.getLogger("aiokafka")
    before = logger.level
    logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        logger.setLevel(before)


# ---- prerequisites ---------------------------------------------------------------
@functools.lru_cache(maxsize=1)
def java_binary() -> str:
    java_home = os.environ.get("JAVA_HOME")
    if java_home and (Path(java_home) / "bin" / "java").is_file():
        java = str(Path(java_home) / "bin" / "java")
    else:
        found = shutil.which("java")
        if not found:
            raise StackError(
                "Java not found: Kafka 4.1 needs a Java 17+ runtime",
                hint="apt-get install -y openjdk-17-jre-headless",
            )
        java = found
    out = run([java, "-version"], timeout=60).stdout
    match = re.search(r'version "(\d+)(?:\.(\d+))?', out)
    if match:
        major = int(match.group(1))
        if major == 1 and match.group(2):
            major = int(match.group(2))
        if major < 17:
            raise StackError(
                f"{java} is Java {major}; Kafka 4.1 needs Java 17 or newer",
                hint="apt-get install -y openjdk-17-jre-headless, and put it first on PATH or set JAVA_HOME",
            )
    return java


def _libs_complete(cfg: StackConfig) -> bool:
    marker = cfg.kafka_lib / _LIB_MARKER
    try:
        return marker.read_text().strip() == sha256_of(cfg.kafka_pom)
    except OSError:
        return False


_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
_MAVEN_BOILERPLATE = ("re-run maven", "for more information", "[help 1] http", "-> [help 1]$")


def _maven_errors(output: str) -> str:
    """Maven's own error lines, without colour codes and its generic advice."""
    lines = [_ANSI.sub("", ln).rstrip() for ln in output.splitlines()]
    errors = [
        ln
        for ln in lines
        if ln.startswith("[ERROR]")
        and ln.strip() != "[ERROR]"
        and not any(b in ln.lower() for b in _MAVEN_BOILERPLATE[:3])
    ]
    return "\n".join((errors or [ln for ln in lines if ln.strip()])[-15:])


def kafka_version(cfg: StackConfig) -> str:
    match = re.search(r"<kafka.version>([^<]+)</kafka.version>", cfg.kafka_pom.read_text())
    return match.group(1) if match else "?"


def fetch_libs(cfg: StackConfig, log: Log) -> None:
    """Copy the Kafka jars from Maven Central into .local/kafka/lib, unless already there."""
    if _libs_complete(cfg):
        return
    mvn = shutil.which("mvn")
    if not mvn:
        raise StackError(
            "Maven (mvn) not found: it fetches the Kafka jars from Maven Central",
            hint="apt-get install -y maven",
        )
    partial = cfg.kafka_dir / "lib.partial"
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    log(f"kafka: downloading Kafka {kafka_version(cfg)} jars from Maven Central (first run only)...")
    argv = [
        mvn,
        "-q",
        "-B",
        "-U",  # retry artifacts whose earlier download failed (Maven caches failures)
        "-Dstyle.color=never",
        "-f",
        str(cfg.kafka_pom),
        "dependency:copy-dependencies",
        f"-DoutputDirectory={partial}",
    ]
    try:
        result = run(argv, cwd=cfg.root, timeout=900)
    except Exception as exc:
        raise StackError(f"could not run Maven: {exc}", hint="check that `mvn -v` works") from exc
    jars = list(partial.glob("*.jar"))
    if result.returncode != 0 or not any(j.name.startswith("kafka_2.13-") for j in jars):
        quoted = _maven_errors(result.stdout) or "(mvn printed nothing)"
        raise StackError(
            f"Maven could not download the Kafka jars (exit code {result.returncode}):",
            details=quoted,
            hint="check that Maven Central is reachable (proxy/mirror settings in ~/.m2/settings.xml), then rerun; "
            f"command: {' '.join(argv)}",
        )
    shutil.rmtree(cfg.kafka_lib, ignore_errors=True)
    partial.rename(cfg.kafka_lib)
    (cfg.kafka_lib / _LIB_MARKER).write_text(sha256_of(cfg.kafka_pom) + "\n")
    log(f"kafka: {len(jars)} jars in {cfg.kafka_lib}")


# ---- credentials ------------------------------------------------------------------
# The KRaft controller's own PLAIN user (the broker and controller in this JVM talk as it).
CONTROLLER_USER = "kraft"
MECHANISM = "SCRAM-SHA-512"
SECURED_MARKER = ".homeward-sasl"


def stack_users() -> list[str]:
    """The SCRAM users made at format time: the admin, ops and one per service."""
    return [ADMIN, OPS, *(service_principal(s) for s in SERVICES)]


def load_credentials(cfg: StackConfig) -> dict[str, str] | None:
    """The stack's users and passwords: this checkout's, or those of the checkout whose broker
    already serves our port (a shared stack). None before the first format."""
    for path in (cfg.kafka_credentials, *([] if (other := sibling(cfg)) is None else [_sibling_credentials(other)])):
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if isinstance(data, dict) and ADMIN in data:
            return {str(k): str(v) for k, v in data.items()}
    return None


def _sibling_credentials(root: Path) -> Path:
    return root / ".local" / "kafka" / "credentials.json"


def credentials(cfg: StackConfig) -> dict[str, str]:
    found = load_credentials(cfg)
    if found is None:
        raise StackError(
            f"no Kafka credentials in {cfg.kafka_credentials}",
            hint="start the stack first: homeward-stack up (it makes them when it formats Kafka's storage)",
        )
    return found


def _make_credentials(cfg: StackConfig) -> dict[str, str]:
    from homeward.kit.access import new_password

    users = {u: new_password() for u in [*stack_users(), CONTROLLER_USER]}
    cfg.kafka_dir.mkdir(parents=True, exist_ok=True)
    tmp = cfg.kafka_credentials.with_suffix(".tmp")
    tmp.touch(mode=0o600)
    tmp.chmod(0o600)
    tmp.write_text(json.dumps(users, indent=2) + "\n")
    tmp.rename(cfg.kafka_credentials)
    return users


def client_settings(cfg: StackConfig, user: str = ADMIN, namespace: str = "") -> Any:
    """KafkaSettings for one of the stack's users (the admin by default)."""
    from homeward.kit.settings import KafkaSettings

    return KafkaSettings.scram(cfg.kafka_bootstrap, user, credentials(cfg)[user], namespace)


def _admin_options(cfg: StackConfig) -> dict[str, Any]:
    from homeward.kit.kafka import client_options

    return client_options(client_settings(cfg))


def apply_acls(cfg: StackConfig) -> int:
    """Grant the services and ops what homeward.contracts.access says (idempotent)."""
    from homeward.contracts.access import homeward_grants
    from homeward.kit.access import KafkaAccess

    return KafkaAccess(client_settings(cfg)).grant(homeward_grants())


# ---- configuration ----------------------------------------------------------------
def server_properties_path(cfg: StackConfig) -> Path:
    return cfg.kafka_config / "server.properties"


def _jaas(module: str, user: str, password: str, serves: bool = False) -> str:
    """A JAAS line: this JVM signs in as ``user``; ``serves``: it also accepts that user (PLAIN)."""
    accepts = f' user_{user}="{password}"' if serves else ""
    return f'org.apache.kafka.common.security.{module} required username="{user}" password="{password}"{accepts};'


def _server_properties(cfg: StackConfig, users: dict[str, str]) -> str:
    h = cfg.host
    admin, kraft = users[ADMIN], users[CONTROLLER_USER]
    return f"""# Generated by homeward-stack on every `up`; edits are overwritten. Holds secrets (mode 0600).
# Single-node KRaft (broker + controller in one JVM) for local development and tests.
node.id=1
process.roles=broker,controller
controller.quorum.voters=1@{h}:{cfg.controller_port}
listeners=SASL_PLAINTEXT://{h}:{cfg.kafka_port},CONTROLLER://{h}:{cfg.controller_port}
advertised.listeners=SASL_PLAINTEXT://{h}:{cfg.kafka_port}
listener.security.protocol.map=SASL_PLAINTEXT:SASL_PLAINTEXT,CONTROLLER:SASL_PLAINTEXT
controller.listener.names=CONTROLLER
# Clients: SCRAM-SHA-512 only. The broker talks to itself as the admin.
sasl.enabled.mechanisms={MECHANISM}
inter.broker.listener.name=SASL_PLAINTEXT
sasl.mechanism.inter.broker.protocol={MECHANISM}
listener.name.sasl_plaintext.scram-sha-512.sasl.jaas.config={_jaas("scram.ScramLoginModule", ADMIN, admin)}
# The controller listener (loopback): PLAIN, as Kafka supports no SCRAM there.
sasl.mechanism.controller.protocol=PLAIN
listener.name.controller.sasl.enabled.mechanisms=PLAIN
listener.name.controller.plain.sasl.jaas.config={_jaas("plain.PlainLoginModule", CONTROLLER_USER, kraft, True)}
# Nothing is allowed that no ACL allows; the admin and the controller are super users.
authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer
allow.everyone.if.no.acl.found=false
super.users=User:{ADMIN};User:{CONTROLLER_USER}
log.dirs={cfg.kafka_data}
num.partitions=6
default.replication.factor=1
auto.create.topics.enable=false
delete.topic.enable=true
offsets.topic.replication.factor=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
# After a crash (kill -9, machine restart) the new broker incarnation waits for the old
# session to expire before it may register; the default 9 s is needlessly long here.
broker.heartbeat.interval.ms=1000
broker.session.timeout.ms=5000
log.retention.hours=168
"""


def _log4j2_properties(cfg: StackConfig) -> str:
    logs = cfg.kafka_logs

    def rolling(key: str, file: str) -> str:
        return f"""
appender.{key}.type = RollingFile
appender.{key}.name = {key}
appender.{key}.fileName = {logs / file}
appender.{key}.filePattern = {logs / file}.%i
appender.{key}.layout.type = PatternLayout
appender.{key}.layout.pattern = [%d] %p %m (%c)%n
appender.{key}.policies.type = Policies
appender.{key}.policies.size.type = SizeBasedTriggeringPolicy
appender.{key}.policies.size.size = 50MB
appender.{key}.strategy.type = DefaultRolloverStrategy
appender.{key}.strategy.max = 3
"""

    return (
        "# Generated by homeward-stack (Log4j 2 properties format: no YAML jar needed).\n"
        "status = warn\nname = homeward-kafka\n"
        + rolling("server", "server.log")
        + rolling("controller", "controller.log")
        + rolling("statechange", "state-change.log")
        + """
rootLogger.level = INFO
rootLogger.appenderRef.server.ref = server

logger.controller.name = org.apache.kafka.controller
logger.controller.level = INFO
logger.controller.additivity = false
logger.controller.appenderRef.controller.ref = controller

logger.statechange.name = state.change.logger
logger.statechange.level = INFO
logger.statechange.additivity = false
logger.statechange.appenderRef.statechange.ref = statechange

logger.request.name = kafka.request.logger
logger.request.level = WARN

logger.network.name = kafka.network.RequestChannel$
logger.network.level = WARN
"""
    )


def write_config(cfg: StackConfig, users: dict[str, str]) -> None:
    cfg.kafka_config.mkdir(parents=True, exist_ok=True)
    cfg.kafka_logs.mkdir(parents=True, exist_ok=True)
    cfg.kafka_data.mkdir(parents=True, exist_ok=True)
    path = server_properties_path(cfg)
    path.touch(mode=0o600)
    path.chmod(0o600)
    path.write_text(_server_properties(cfg, users))
    (cfg.kafka_config / "log4j2.properties").write_text(_log4j2_properties(cfg))


def new_cluster_id() -> str:
    """A random cluster id in Kafka's form: URL-safe base64 of a UUID, no padding."""
    while True:
        cid = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()
        if not cid.startswith("-"):
            return cid


def _java_base(cfg: StackConfig, java: str) -> list[str]:
    return [
        java,
        f"-Dlog4j2.configurationFile={cfg.kafka_config / 'log4j2.properties'}",
        f"-Dkafka.logs.dir={cfg.kafka_logs}",
        "-Djava.awt.headless=true",
    ]


def format_storage(cfg: StackConfig, java: str, log: Log, users: dict[str, str]) -> None:
    if (cfg.kafka_data / "meta.properties").is_file():
        return
    cluster_id = new_cluster_id()
    log(
        f"kafka: formatting storage in {cfg.kafka_data} (cluster id {cluster_id}), "
        f"with SCRAM users {', '.join(stack_users())}"
    )
    scram = [
        arg for user in stack_users() for arg in ("--add-scram", f"{MECHANISM}=[name={user},password={users[user]}]")
    ]
    argv = [
        *_java_base(cfg, java),
        "-cp",
        f"{cfg.kafka_lib}/*",
        "kafka.tools.StorageTool",
        "format",
        "-t",
        cluster_id,
        "-c",
        str(server_properties_path(cfg)),
        *scram,
    ]
    result = run(argv, cwd=cfg.kafka_dir, timeout=180)
    if result.returncode != 0:
        raise StackError(
            "Kafka storage format failed:",
            details=result.stdout[-3000:],
            hint=f"if {cfg.kafka_data} holds a broken previous install, `homeward-stack down --wipe` and retry",
        )
    (cfg.kafka_dir / "cluster.id").write_text(cluster_id + "\n")
    (cfg.kafka_data / SECURED_MARKER).write_text(f"{MECHANISM} users made at format time\n")


# ---- lifecycle ------------------------------------------------------------------
def running_pid(cfg: StackConfig) -> int | None:
    return live_pid(cfg.kafka_pid_file, "kafka.Kafka", str(server_properties_path(cfg)))


def sibling(cfg: StackConfig) -> Path | None:
    """Another checkout whose broker already holds our port (same stack, shared)."""
    return sibling_root(
        cfg.kafka_port, cfg.root, lambda args: args[-1] if "kafka.Kafka" in args else None, SIBLING_SUFFIX
    )


def _secured(cfg: StackConfig) -> bool:
    return (cfg.kafka_data / SECURED_MARKER).is_file() and load_credentials(cfg) is not None


def prepare(cfg: StackConfig, log: Log) -> None:
    """Everything before the broker can start: Java, jars, credentials, config, storage.

    A broker formatted by an older Homeward, without SASL users, cannot be given them
    afterwards: it is stopped and its (development) data is formatted again."""
    pid = running_pid(cfg)
    if pid and _secured(cfg):
        return
    if pid or ((cfg.kafka_data / "meta.properties").is_file() and not _secured(cfg)):
        log("kafka: this broker's storage has no SASL users (made by an older Homeward); formatting it again")
        if pid:
            stop(cfg, log)
        shutil.rmtree(cfg.kafka_data, ignore_errors=True)
        (cfg.kafka_dir / "cluster.id").unlink(missing_ok=True)
    java = java_binary()
    fetch_libs(cfg, log)
    users = load_credentials(cfg) if cfg.kafka_credentials.is_file() else None
    if users is None or not (cfg.kafka_data / "meta.properties").is_file():
        users = _make_credentials(cfg)
    write_config(cfg, users)
    format_storage(cfg, java, log, users)


def start(cfg: StackConfig, log: Log) -> bool:
    """Start the broker unless it already runs; True if it was started."""
    if running_pid(cfg):
        return False
    for port, what, var in (
        (cfg.kafka_port, "Kafka broker", "HOMEWARD_STACK_KAFKA_PORT"),
        (cfg.controller_port, "Kafka KRaft controller", "HOMEWARD_STACK_KAFKA_CONTROLLER_PORT"),
    ):
        if port_open(cfg.host, port):
            raise port_taken_error(what, port, var)
    java = java_binary()
    argv = [
        *_java_base(cfg, java)[:1],
        "-Xms256m",
        f"-Xmx{cfg.kafka_heap}",
        "-XX:+UseG1GC",
        "-XX:MaxGCPauseMillis=20",
        "-XX:InitiatingHeapOccupancyPercent=35",
        "-XX:+ExplicitGCInvokesConcurrent",
        *_java_base(cfg, java)[1:],
        "-cp",
        f"{cfg.kafka_lib}/*",
        "kafka.Kafka",
        str(server_properties_path(cfg)),
    ]
    pid = spawn_detached(argv, cfg.kafka_logs / "kafka.out", cwd=cfg.kafka_dir)
    cfg.kafka_pid_file.write_text(f"{pid}\n")
    log(f"kafka: started (pid {pid}), logs in {cfg.kafka_logs}")
    return True


async def _probe(options: dict[str, Any]) -> bool:
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(**options, client_id="homeward-stack", request_timeout_ms=5000)
    try:
        await asyncio.wait_for(admin.start(), 10)
        info = await asyncio.wait_for(admin.describe_cluster(), 10)
        return bool(info.get("brokers"))
    except Exception:
        return False
    finally:
        with contextlib.suppress(Exception):
            await admin.close()


def wait_ready(cfg: StackConfig, log: Log, timeout: float = 90, *, shared: bool = False) -> None:
    """Wait until the broker answers; ``shared``: it is another checkout's, no pid to watch."""
    deadline = time.monotonic() + timeout
    with quiet_aiokafka():
        while True:
            pid = running_pid(cfg)
            if pid is None and not shared:
                raise StackError(
                    "Kafka exited while starting; last lines of its logs:",
                    details=tail(cfg.kafka_logs / "kafka.out", 15) + "\n" + tail(cfg.kafka_logs / "server.log", 15),
                    hint=f"full logs in {cfg.kafka_logs}",
                )
            if port_open(cfg.host, cfg.kafka_port) and run_async(_probe(_admin_options(cfg))):
                return
            if time.monotonic() > deadline:
                raise StackError(
                    f"Kafka (pid {pid}) did not answer on {cfg.kafka_bootstrap} within {timeout:.0f}s:",
                    details=tail(cfg.kafka_logs / "server.log", 20),
                    hint=f"see {cfg.kafka_logs}; `homeward-stack down` then `up` to retry",
                )
            time.sleep(0.5)


def stop(cfg: StackConfig, log: Log) -> bool:
    pid = running_pid(cfg)
    if pid is None:
        cfg.kafka_pid_file.unlink(missing_ok=True)
        return False
    log(f"kafka: stopping (pid {pid})...")
    terminate(pid, timeout=60, log=log, name="Kafka")
    cfg.kafka_pid_file.unlink(missing_ok=True)
    return True


def status(cfg: StackConfig) -> ComponentStatus:
    pid = running_pid(cfg)
    addr = cfg.kafka_bootstrap
    listening = port_open(cfg.host, cfg.kafka_port)
    if pid and listening:
        return ComponentStatus("kafka", "up", addr, pid)
    if pid:
        return ComponentStatus("kafka", "starting", addr, pid, "process runs but the port does not answer yet")
    other = sibling(cfg) if listening else None
    if other:
        return ComponentStatus("kafka", "up", addr, None, f"shared, from {other}")
    if listening:
        return ComponentStatus("kafka", "foreign", addr, None, "port answers but is not this stack's broker")
    return ComponentStatus("kafka", "down", addr)


# ---- topics ----------------------------------------------------------------------
async def _ensure_topics(options: dict[str, Any], specs: Iterable[TopicSpec]) -> list[str]:
    from aiokafka.admin import AIOKafkaAdminClient
    from homeward.kit.kafka import TopicsRefused, create_missing_topics  # the services' own rule

    admin = AIOKafkaAdminClient(**options, client_id="homeward-stack", request_timeout_ms=30000)
    await admin.start()
    try:
        return await create_missing_topics(admin, list(specs))
    except TopicsRefused as exc:
        raise StackError(str(exc)) from exc
    finally:
        await admin.close()


def ensure_topics(cfg: StackConfig, specs: Iterable[TopicSpec]) -> list[str]:
    """Create the topics that do not exist yet; returns the names created."""
    return run_async(_ensure_topics(_admin_options(cfg), specs))


async def _list_topics(options: dict[str, Any]) -> list[str]:
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(**options, client_id="homeward-stack", request_timeout_ms=10000)
    await admin.start()
    try:
        return sorted(await admin.list_topics())
    finally:
        await admin.close()


def list_topics(cfg: StackConfig) -> list[str]:
    return run_async(_list_topics(_admin_options(cfg)))


async def _delete_topics(options: dict[str, Any], names: list[str], timeout_s: float) -> None:
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(**options, client_id="homeward-stack", request_timeout_ms=30000)
    await admin.start()
    try:
        await admin.delete_topics(names, timeout_ms=30000)
        # Deletion finishes in the background; a topic of the same name cannot be created
        # until the broker has forgotten the old one.
        deadline = time.monotonic() + timeout_s
        while set(names) & set(await admin.list_topics()):
            if time.monotonic() > deadline:
                left = sorted(set(names) & set(await admin.list_topics()))
                raise StackError("Kafka did not finish deleting topics:", details="\n".join(left))
            await asyncio.sleep(0.2)
    finally:
        await admin.close()


def delete_topics(cfg: StackConfig, names: list[str], timeout_s: float = 60) -> None:
    """Delete the topics and wait until the broker no longer lists them."""
    if names:
        run_async(_delete_topics(_admin_options(cfg), names, timeout_s))
