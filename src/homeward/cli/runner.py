"""The main job: the native stack, the five services (the ingress and the four it feeds) as separate processes, the
scenario through Kafka, then the outcome on the terminal and on a status page."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import yaml
from homeward.contracts.topics import SERVICES as SERVICE_NAMES
from homeward.kit.settings import KafkaSettings
from rich.console import Console
from rich.table import Table

from homeward.scenario import Scenario, ScenarioConfig, generate

from .formatting import pounds

console = Console()

SERVICES = SERVICE_NAMES  # the ingress first: it is the only reader of the partner topics
PORTS = {"ingress": 8005, "referrals": 8001, "placements": 8002, "budget": 8003, "notifications": 8004}
DASHBOARD_PORT = 8080
STAFF_PORT = 8090  # the staff view (homeward.staff), HOMEWARD_STAFF_HTTP_PORT
ROLES = ("case_manager", "clinical_lead", "finance_lead", "bed_manager", "oap_lead")


def repo_root() -> Path:
    here = Path(__file__).resolve()
    for parent in here.parents:
        if (parent / "pyproject.toml").exists() and (parent / "services").is_dir():
            return parent
    return Path.cwd()


@dataclass
class RunPaths:
    root: Path

    @property
    def run(self) -> Path:
        return self.root / ".local" / "run"

    @property
    def logs(self) -> Path:
        return self.root / ".local" / "logs"

    def pid(self, name: str) -> Path:
        return self.run / f"{name}.pid"


def service_env(
    stack_env: dict[str, str],
    paths: RunPaths,
    as_of: dt.date,
    scheduler_s: float = 3600.0,
    ports: dict[str, int] = PORTS,
) -> dict[str, str]:
    """The services' environment for a replay "as of" ``as_of``. Their jobs run once at start
    and then when ``run_jobs`` says, after the history is in (``scheduler_s`` is long): a job
    run half-way through the replay would judge "as of today" a history it has only partly read,
    chasing a review of a person whose discharge it had not read yet, say."""
    from homeward.devstack.secrets import ensure_auth, ensure_secrets

    env = dict(os.environ)
    for name, key in ensure_secrets().items():  # the checkout's keys (.local/secrets/), unless set
        env.setdefault(name, key)
    for name, value in ensure_auth().items():  # staff tokens: the local key's JWKS, unless set
        env.setdefault(name, value)
    env.update(stack_env)
    env["HOMEWARD_CLOCK"] = f"{as_of.isoformat()}T12:00:00Z"
    env.setdefault("HOMEWARD_LOG_FORMAT", "json")
    reference = str(paths.run / "reference.yaml")
    for svc in SERVICES:
        prefix = f"HOMEWARD_{svc.upper()}_"
        env[prefix + "HTTP_PORT"] = str(ports[svc])
        env[prefix + "SCHEDULER_INTERVAL_S"] = str(scheduler_s)
    env["HOMEWARD_PLACEMENTS_REFERENCE_DATA"] = reference
    env["HOMEWARD_REFERRALS_REFERENCE_DATA"] = reference
    env["HOMEWARD_NOTIFICATIONS_SMTP_HOST"] = stack_env.get("HOMEWARD_SMTP_HOST", "127.0.0.1")
    env["HOMEWARD_NOTIFICATIONS_SMTP_PORT"] = stack_env.get("HOMEWARD_SMTP_PORT", "1025")
    return env


def _alive(pid: int) -> bool:
    """Whether the process still runs. A service started by this process becomes a zombie when
    it exits, until reaped: reap it here, and count any zombie as ended."""
    with contextlib.suppress(ChildProcessError):
        if os.waitpid(pid, os.WNOHANG)[0] == pid:
            return False
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return True
    return state != "Z"


MAIN = "main"  # the `homeward run` process that waits for Ctrl-C


def stop_services(root: Path | None = None, timeout: float = 30.0) -> int:
    """SIGTERM each service (they finish their batch and drain the outbox), then wait."""
    paths = RunPaths(root or repo_root())
    stopped = 0
    pids: list[tuple[Path, int]] = []
    for name in (MAIN, *SERVICES, "dashboard", "staff"):
        f = paths.pid(name)
        if not f.exists():
            continue
        try:
            pid = int(f.read_text().strip())
        except ValueError:
            f.unlink(missing_ok=True)
            continue
        if pid == os.getpid():
            continue
        if _alive(pid):
            os.kill(pid, signal.SIGTERM)
            pids.append((f, pid))
        else:
            f.unlink(missing_ok=True)
    deadline = time.monotonic() + timeout
    for f, pid in pids:
        while _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.2)
        if _alive(pid):
            os.kill(pid, signal.SIGKILL)
        f.unlink(missing_ok=True)
        stopped += 1
    return stopped


def start_process(name: str, args: list[str], env: dict[str, str], paths: RunPaths) -> int:
    paths.run.mkdir(parents=True, exist_ok=True)
    paths.logs.mkdir(parents=True, exist_ok=True)
    log = (paths.logs / f"{name}.log").open("ab")
    proc = subprocess.Popen(
        args,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
        cwd=paths.root,
    )
    paths.pid(name).write_text(str(proc.pid))
    return proc.pid


def start_services(
    env: dict[str, str], paths: RunPaths, own: Mapping[str, Mapping[str, str]] | None = None
) -> dict[str, int]:
    """Start every service with ``env``, plus its ``own`` variables (its Kafka user, say)."""
    stop_services(paths.root)
    own = own or {}
    return {
        svc: start_process(svc, [sys.executable, "-m", f"homeward.{svc}"], {**env, **own.get(svc, {})}, paths)
        for svc in SERVICES
    }


def wait_ready(paths: RunPaths, timeout: float = 180.0, ports: dict[str, int] = PORTS) -> None:
    deadline = time.monotonic() + timeout
    pending = set(SERVICES)
    while pending and time.monotonic() < deadline:
        for svc in sorted(pending):
            pid_file = paths.pid(svc)
            if pid_file.exists() and not _alive(int(pid_file.read_text())):
                tail = (paths.logs / f"{svc}.log").read_text(errors="replace")[-2000:]
                raise RuntimeError(f"the {svc} service exited during start; its log ends:\n{tail}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"http://127.0.0.1:{ports[svc]}/readyz", timeout=2).status_code == 200:
                    pending.discard(svc)
        time.sleep(0.5)
    if pending:
        raise RuntimeError(f"not ready after {timeout:.0f}s: {', '.join(sorted(pending))} (see .local/logs/)")


def recipients_for(sc: Scenario) -> list[dict[str, Any]]:
    """One member of staff per role per commissioner (invented addresses)."""
    out = []
    for c in sc.reference["commissioners"]:
        for role in ROLES:
            out.append(
                {
                    "email": f"{role.replace('_', '.')}@{c['code'].lower()}.nhs.invalid",
                    "org": c["code"],
                    "role": role,
                    "name": f"{role.replace('_', ' ').title()} ({c['code']})",
                }
            )
    return out


def service_subscriptions() -> dict[str, Any]:
    """What each service reads, from its own wiring (``entrypoints.app.SUBSCRIPTIONS``)."""
    import importlib

    return {svc: importlib.import_module(f"homeward.{svc}.entrypoints.app").SUBSCRIPTIONS for svc in SERVICES}


def expected_reads(topic_names: list[str], namespace: str = "", group_prefix: str = "") -> dict[str, list[str]]:
    """Consumer group -> the topics it must have read: the partner topics that exist for a
    partner subscription, the named internal topics otherwise."""
    from homeward.contracts.topics import partner_of
    from homeward.kit.service import consumer_groups
    from homeward.kit.topics import Topics

    topics = Topics(namespace)
    partners = sorted(t for t in topic_names if t.startswith(namespace) and partner_of(t[len(namespace) :]))
    out: dict[str, list[str]] = {}
    for svc, subscriptions in service_subscriptions().items():
        for group, sub in consumer_groups(f"{group_prefix}homeward-{svc}", subscriptions):
            out[group] = partners if sub.partners else [topics.internal(s) for s in sub.services]
    return out


async def consumer_lag(kafka: KafkaSettings, namespace: str = "", group_prefix: str = "") -> int:
    """Messages not yet read, over every service's consumer groups and every topic each must
    read. A partition a group has not committed on yet counts from its beginning, so a topic
    created after the services started is waited for too."""
    from aiokafka import AIOKafkaConsumer, TopicPartition
    from homeward.kit.kafka import client_options, make_admin

    admin = make_admin(kafka)
    await admin.start()
    consumer = AIOKafkaConsumer(group_id=None, **client_options(kafka))
    await consumer.start()
    try:
        wanted = expected_reads(list(await admin.list_topics()), namespace, group_prefix)
        # Topics created since this client started: aiokafka has no public call that refreshes
        # the metadata partitions_for_topic reads (consumer.topics() fills a separate copy).
        await consumer._client.force_metadata_update()
        lag = 0
        for group, names in wanted.items():
            tps = [TopicPartition(t, p) for t in names for p in sorted(consumer.partitions_for_topic(t) or ())]
            if not tps:
                continue
            committed = await admin.list_consumer_group_offsets(group)
            ends = await consumer.end_offsets(tps)
            starts = await consumer.beginning_offsets(tps)
            for tp in tps:
                meta = committed.get(tp)
                done = meta.offset if meta is not None and meta.offset >= 0 else starts[tp]
                lag += max(0, ends[tp] - done)
        return lag
    finally:
        await consumer.stop()
        await admin.close()


def wait_settled(
    kafka: KafkaSettings,
    quiet_checks: int = 4,
    interval: float = 3.0,
    timeout: float = 600.0,
    namespace: str = "",
    group_prefix: str = "",
) -> bool:
    """Wait until no group has lag for several checks in a row (jobs run in between); False
    if that did not happen before ``timeout``."""
    deadline = time.monotonic() + timeout
    quiet = 0
    with console.status("waiting for the services to finish the work") as status:
        while time.monotonic() < deadline and quiet < quiet_checks:
            lag = asyncio.run(consumer_lag(kafka, namespace, group_prefix))
            quiet = quiet + 1 if lag == 0 else 0
            status.update(f"waiting for the services to finish the work (lag {lag})")
            time.sleep(interval)
    return quiet >= quiet_checks


def ops_headers() -> dict[str, str]:
    """The main job speaks to the services as ops (admin jobs, the overview figures), with a
    short-lived token it signs with the checkout's local key (docs/staff-access.md)."""
    from .access import local_token

    return {"Authorization": f"Bearer {local_token('HOMEWARD', 'ops')}"}


def run_jobs(ports: dict[str, int] = PORTS) -> dict[str, Any]:
    """Run every service's scheduled jobs now (the replay runs with long intervals, so that
    'as of' alerts are computed once the history is in, not half-way through it)."""
    out: dict[str, Any] = {}
    headers = ops_headers()
    for svc in SERVICES:
        r = httpx.post(f"http://127.0.0.1:{ports[svc]}/admin/run-jobs", headers=headers, timeout=600)
        r.raise_for_status()
        out[svc] = r.json()["ran"]
    return out


def settle(
    kafka: KafkaSettings, ports: dict[str, int] = PORTS, rounds: int = 2, namespace: str = "", group_prefix: str = ""
) -> bool:
    """Wait for the replay to be consumed, then run the jobs and wait for their consequences.
    False if some wait ran out of time."""
    settled = wait_settled(kafka, namespace=namespace, group_prefix=group_prefix)
    for _ in range(rounds):
        run_jobs(ports)
        settled = wait_settled(kafka, namespace=namespace, group_prefix=group_prefix) and settled
    return settled


def fetch_summary(
    sc_commissioners: list[str],
    as_of: dt.date,
    ports: dict[str, int] = PORTS,
    headers: dict[str, str] | None = None,
) -> dict[str, Any]:
    """The overview figures (no patient references), read as ops unless ``headers`` say who."""
    headers = headers if headers is not None else ops_headers()

    def get(svc: str, path: str, **params: Any) -> Any:
        try:
            r = httpx.get(f"http://127.0.0.1:{ports[svc]}{path}", params=params, headers=headers, timeout=30)
            return r.json() if r.status_code == 200 else {"error": r.status_code}
        except httpx.HTTPError as exc:
            return {"error": str(exc)}

    fy_start = as_of.year if as_of.month >= 4 else as_of.year - 1
    fy = f"{fy_start}-{(fy_start + 1) % 100:02d}"
    return {
        "as_of": as_of.isoformat(),
        "financial_year": fy,
        "placements": get("placements", "/summary", as_of=as_of.isoformat()),
        "positions": {
            c: get("budget", f"/positions/{c}", financial_year=fy, as_of=as_of.isoformat()) for c in sc_commissioners
        },
        "notifications": get("notifications", "/summary"),
        "referrals": get("referrals", "/summary"),
    }


def print_summary(s: dict[str, Any], mail_url: str) -> None:
    p = s["placements"]
    console.rule(f"[bold]Homeward, as of {s['as_of']}")
    console.print(
        f"Active placements: [bold]{p.get('active_out_of_area', '?')}[/] out of area, "
        f"[bold]{p.get('active_in_area', '?')}[/] in area"
    )
    console.print(f"Overdue reviews: [bold]{p.get('overdue_reviews', '?')}[/]")
    console.print(f"Repatriations: [bold]{p.get('repatriations', '?')}[/]")
    table = Table(title=f"Budget positions, financial year {s['financial_year']}", title_justify="left")
    table.add_column("Commissioner")
    for heading in ("Allocated", "Spent", "Forecast", "Headroom", "Savings"):
        table.add_column(heading, justify="right")
    for c, pos in s["positions"].items():
        table.add_row(
            c,
            *(
                pounds(pos.get(k))
                for k in (
                    "allocated_pence",
                    "spent_pence",
                    "forecast_outturn_pence",
                    "headroom_pence",
                    "savings_year_pence",
                )
            ),
        )
    console.print(table)
    console.print(
        "  (forecast: spent + committed to 31 March; savings: memo savings from people brought home, this year)"
    )
    n = s["notifications"]
    emails = n.get("emails") or {}
    kinds = emails.get("by_kind") or {}
    console.print(
        f"Emails sent: [bold]{emails.get('sent', '?')}[/] "
        f"({(kinds.get('alert') or {}).get('sent', 0)} alerts due from today on, "
        f"{(kinds.get('digest') or {}).get('sent', 0)} daily digests; "
        f"pending {emails.get('pending', '?')}, failed {emails.get('failed', '?')})"
    )
    console.print(
        f"Alerts suppressed: [bold]{n.get('suppressed', '?')}[/] (about actions long past: recorded, not emailed)"
    )
    console.print(f"Staff emails: [link]{mail_url}[/]    Status page: http://127.0.0.1:{DASHBOARD_PORT}/")


def main_job(*, seed: int, commissioners: int, providers: int, placements: int, as_of: dt.date, detach: bool) -> int:
    from homeward.devstack import StackError, reset

    from .sending import send_scenario

    paths = RunPaths(repo_root())
    sc = generate(
        ScenarioConfig(
            seed=seed, commissioners=commissioners, distant_providers=providers, placements=placements, as_of=as_of
        )
    )
    try:
        console.print("[bold]1/5[/] starting Kafka, PostgreSQL and the mail server, empty (each run starts afresh)")
        stop_services(paths.root)
        # The partners' topics exist before the services start, as the init step would leave them.
        info = reset(partners=tuple(sc.partners))
    except StackError as exc:
        console.print(f"[red]{exc}[/]")
        return 2
    stack_env = info.as_env()
    paths.run.mkdir(parents=True, exist_ok=True)
    (paths.run / "reference.yaml").write_text(yaml.safe_dump(sc.reference, sort_keys=False))
    (paths.run / "recipients.yaml").write_text(yaml.safe_dump(recipients_for(sc), sort_keys=False))
    env = service_env(stack_env, paths, as_of)

    console.print("[bold]2/5[/] starting the ingress and the four services (logs in .local/logs/)")
    start_services(env, paths, {svc: info.service_env(svc) for svc in SERVICES})
    try:
        wait_ready(paths)
    except RuntimeError as exc:
        console.print(f"[red]{exc}[/]")
        stop_services(paths.root)
        return 1
    subprocess.run(
        [sys.executable, "-m", "homeward.notifications", "recipients", "import", str(paths.run / "recipients.yaml")],
        env=env,
        check=False,
        cwd=paths.root,
        stdout=subprocess.DEVNULL,
    )

    console.print(
        f"[bold]3/5[/] playing the Coming Home scenario: {len(sc.events)} events from {len(sc.partners)} partners"
    )
    os.environ.update(stack_env)
    operator = KafkaSettings()  # the admin, from the stack's environment: the replay is the operator's import
    asyncio.run(send_scenario(sc, settings=operator))
    console.print("[bold]4/5[/] letting the services work, then running their schedulers as of the scenario's today")
    settle(operator)
    summary = fetch_summary([c["code"] for c in sc.reference["commissioners"]], as_of)
    (paths.run / "summary.yaml").write_text(yaml.safe_dump(summary, sort_keys=False))
    dash_env = dict(env)
    dash_env["HOMEWARD_DASHBOARD_COMMISSIONERS"] = ",".join(c["code"] for c in sc.reference["commissioners"])
    dash_env["HOMEWARD_DASHBOARD_AS_OF"] = as_of.isoformat()
    dash_env["HOMEWARD_MAIL_WEB_URL"] = info.mail_web_url
    start_process("dashboard", [sys.executable, "-m", "homeward.cli.dashboard"], dash_env, paths)
    start_process(
        "staff", [sys.executable, "-m", "homeward.staff"], {**env, "HOMEWARD_STAFF_HTTP_PORT": str(STAFF_PORT)}, paths
    )
    console.print("[bold]5/5[/] outcome")
    print_summary(summary, info.mail_web_url)
    console.print(
        f"Staff view: http://127.0.0.1:{STAFF_PORT}/ (sign in with: homeward token --org 05A --role case-manager)"
    )
    if detach:
        console.print("Everything keeps running. Stop with `make down`.")
        return 0
    console.print("Running. Ctrl-C stops the services cleanly (`make down` also stops the stack).")
    paths.pid(MAIN).write_text(str(os.getpid()))  # so `homeward stop` or a new run ends this one too
    stop = {"now": False}

    def _stop(*_: Any) -> None:
        stop["now"] = True

    signal.signal(signal.SIGINT, _stop)
    signal.signal(signal.SIGTERM, _stop)
    while not stop["now"]:
        time.sleep(0.5)
    console.print("stopping the services (each finishes its batch and publishes its outbox)")
    stop_services(paths.root)
    paths.pid(MAIN).unlink(missing_ok=True)
    return 0
