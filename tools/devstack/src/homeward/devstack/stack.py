"""The whole stack: start what is not running, stop everything, report."""

from __future__ import annotations

import http.client
import os
import shutil
import sys
import time
import urllib.request
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from homeward.contracts.access import ADMIN, service_principal
from homeward.contracts.topics import DLQ_RETENTION_DAYS, SERVICES, TopicSpec, partner_of, partner_topic
from homeward.contracts.topics import declared_topics as contract_topics

from . import kafka, mail, postgres
from .config import PARTNERS_VAR, StackConfig, parse_partners
from .errors import StackError
from .proc import Log, file_lock, port_open, port_taken_error
from .secrets import ensure_auth, read_auth
from .status import ComponentStatus


def _stderr(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


DLQ_RETENTION_VAR = "HOMEWARD_DLQ_RETENTION_DAYS"


def declared_topics(partners: tuple[str, ...] = ()) -> list[TopicSpec]:
    """The declared topics, dead-letter retention from ``$HOMEWARD_DLQ_RETENTION_DAYS``."""
    raw = os.environ.get(DLQ_RETENTION_VAR, "").strip()
    try:
        days = float(raw) if raw else DLQ_RETENTION_DAYS
    except ValueError:
        raise StackError(f"{DLQ_RETENTION_VAR}={raw!r} is not a number of days") from None
    return contract_topics(partners, dlq_retention_days=days)


@dataclass(frozen=True)
class StackInfo:
    """Addresses of the running stack (all on loopback) and its Kafka users' credentials."""

    kafka_bootstrap: str
    postgres_admin_dsn: str
    smtp_host: str
    smtp_port: int
    mail_web_url: str
    service_database_urls: Mapping[str, str] = field(default_factory=dict, hash=False)
    kafka_users: Mapping[str, str] = field(default_factory=dict, hash=False, repr=False)
    # HOMEWARD_AUTH_*: the local staff sign-in key's issuer, audience and JWKS, once made.
    auth: Mapping[str, str] = field(default_factory=dict, hash=False)

    @classmethod
    def from_config(cls, cfg: StackConfig) -> StackInfo:
        return cls(
            kafka_bootstrap=cfg.kafka_bootstrap,
            postgres_admin_dsn=cfg.pg_admin_dsn,
            smtp_host=cfg.host,
            smtp_port=cfg.smtp_port,
            mail_web_url=cfg.mail_web_url,
            service_database_urls={s: cfg.service_dsn(s) for s in SERVICES},
            kafka_users=kafka.load_credentials(cfg) or {},
            auth=read_auth(cfg),
        )

    def kafka_env(self, user: str = ADMIN) -> dict[str, str]:
        """The HOMEWARD_KAFKA_* variables that connect as one of the stack's users."""
        return dict(self.kafka_settings(user).as_env())

    def kafka_settings(self, user: str = ADMIN, namespace: str = "") -> Any:
        """KafkaSettings connecting as one of the stack's users (the admin: the operator)."""
        from homeward.kit.settings import KafkaSettings

        if user not in self.kafka_users:
            raise StackError(f"the stack has no Kafka user {user}", hint="homeward-stack up makes them")
        return KafkaSettings.scram(self.kafka_bootstrap, user, self.kafka_users[user], namespace)

    def service_env(self, service: str) -> dict[str, str]:
        """What a service needs to run on the stack as itself: its Kafka user and database, and
        how to verify staff tokens (HOMEWARD_AUTH_*)."""
        return {
            **self.kafka_env(service_principal(service)),
            f"HOMEWARD_{service.upper()}_DATABASE_URL": self.service_database_urls[service],
            **self.auth,
        }

    @property
    def mail_api_url(self) -> str:
        """MailDev's REST endpoint listing received messages as JSON."""
        return f"{self.mail_web_url}/email"

    def database_url(self, service: str) -> str:
        return self.service_database_urls[service]

    def as_env(self) -> dict[str, str]:
        env = {
            # The operator's connection: tests and the homeward CLI act as the admin; services
            # are given their own users (service_env).
            **(
                self.kafka_env(ADMIN)
                if ADMIN in self.kafka_users
                else {"HOMEWARD_KAFKA_BOOTSTRAP_SERVERS": self.kafka_bootstrap}
            ),
            "HOMEWARD_POSTGRES_ADMIN_DSN": self.postgres_admin_dsn,
            "HOMEWARD_SMTP_HOST": self.smtp_host,
            "HOMEWARD_SMTP_PORT": str(self.smtp_port),
            "HOMEWARD_MAIL_WEB_URL": self.mail_web_url,
            **self.auth,
        }
        for service, url in self.service_database_urls.items():
            env[f"HOMEWARD_{service.upper()}_DATABASE_URL"] = url
        return env


def stack_info(root: Path | None = None) -> StackInfo:
    """The addresses the stack uses (whether or not it runs)."""
    return StackInfo.from_config(StackConfig.load(root))


def _partners(partners: tuple[str, ...] | list[str] | None) -> tuple[str, ...]:
    if partners is None:
        codes = parse_partners(os.environ.get(PARTNERS_VAR))
        source = f"${PARTNERS_VAR}"
    else:
        codes = parse_partners(",".join(partners))
        source = "--partner"
    bad = [c for c in codes if partner_of(partner_topic(c)) is None]
    if bad:
        raise StackError(
            f"{source}: {', '.join(bad)} is not an ODS code (3 to 9 letters or digits)",
            hint="give ODS codes such as RXA or 8HV48, comma separated in the variable",
        )
    return codes


def _shared(cfg: StackConfig, say: Log) -> dict[str, Path]:
    """Parts already served on our ports by another checkout's homeward stack.

    Two checkouts on one machine (a developer's and CI's fresh clone, say) use the same
    ports; the second one uses the parts the first one started instead of failing on a
    taken port. They are the same programs with the same dev credentials.
    """
    shared: dict[str, Path] = {}
    for name, part in (("kafka", kafka), ("postgres", postgres), ("mail", mail)):
        if part.running_pid(cfg):
            continue
        other = part.sibling(cfg)
        if other is not None:
            shared[name] = other
            say(f"{name}: using the one already running from {other} (same ports)")
    return shared


def _preflight(cfg: StackConfig, shared: dict[str, Path]) -> None:
    """Fail on a taken port before spending minutes on downloads."""
    checks = []
    if "kafka" not in shared and not kafka.running_pid(cfg):
        checks += [
            (cfg.kafka_port, "Kafka broker", "HOMEWARD_STACK_KAFKA_PORT"),
            (cfg.controller_port, "Kafka KRaft controller", "HOMEWARD_STACK_KAFKA_CONTROLLER_PORT"),
        ]
    if "postgres" not in shared and not postgres.running_pid(cfg):
        checks.append((cfg.pg_port, "PostgreSQL", "HOMEWARD_STACK_POSTGRES_PORT"))
    if "mail" not in shared and not mail.running_pid(cfg):
        checks += [
            (cfg.smtp_port, "SMTP (mail server)", "HOMEWARD_STACK_SMTP_PORT"),
            (cfg.web_port, "mail web UI", "HOMEWARD_STACK_MAIL_WEB_PORT"),
        ]
    for port, what, var in checks:
        if port_open(cfg.host, port):
            raise port_taken_error(what, port, var)


def _raise_first(errors: list[BaseException]) -> None:
    if not errors:
        return
    if len(errors) == 1:
        raise errors[0]
    stack_errors = [e for e in errors if isinstance(e, StackError)]
    if len(stack_errors) == len(errors):
        raise StackError(
            f"{len(errors)} parts of the stack failed:",
            details="\n\n".join(e.render() for e in stack_errors),
        )
    raise errors[0]


def ensure_up(
    root: Path | None = None,
    *,
    partners: tuple[str, ...] | list[str] | None = None,
    log: Log | None = None,
) -> StackInfo:
    """Start whatever part of the stack is not running, wait until it answers, then make
    sure the declared Kafka topics and the per-service databases exist.

    Idempotent and safe to call from several processes at once (a file lock
    serialises them). ``partners`` defaults to ``$HOMEWARD_STACK_PARTNERS``.
    """
    say: Log = log or _stderr
    cfg = StackConfig.load(root)
    wanted_partners = _partners(partners)
    cfg.local.mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()
    with file_lock(cfg.lock_file, say):
        shared = _shared(cfg, say)
        _preflight(cfg, shared)
        parts = {"kafka": kafka, "postgres": postgres, "mail": mail}
        own = [part for name, part in parts.items() if name not in shared]
        with ThreadPoolExecutor(max_workers=3, thread_name_prefix="devstack-prepare") as pool:
            futures = [pool.submit(part.prepare, cfg, say) for part in own]
        _raise_first([e for f in futures if (e := f.exception()) is not None])

        # Kafka first: its JVM boots while PostgreSQL and MailDev start.
        started = [name for name, part in parts.items() if part in own and part.start(cfg, say)]
        mail.wait_ready(cfg, say, shared="mail" in shared)
        postgres.provision(cfg, say)
        kafka.wait_ready(cfg, say, shared="kafka" in shared)
        created = kafka.ensure_topics(cfg, declared_topics(wanted_partners))
        if created:
            say(f"kafka: created topics {', '.join(created)}")
        kafka.apply_acls(cfg)
        if started:
            say(f"stack: started {', '.join(started)} in {time.monotonic() - t0:.1f}s")
        ensure_auth(cfg)  # the local staff sign-in key (homeward token) and the JWKS services verify with
    return StackInfo.from_config(cfg)


def create_partner_topics(partners: list[str], root: Path | None = None) -> list[str]:
    """Create ``partner.<ODS>.events`` for each partner (and any missing declared topic)."""
    cfg = StackConfig.load(root)
    if not (kafka.running_pid(cfg) or kafka.sibling(cfg)) or not port_open(cfg.host, cfg.kafka_port):
        raise StackError("Kafka is not running", hint="start it first: homeward-stack up")
    specs: list[TopicSpec] = declared_topics(_partners(partners))
    return kafka.ensure_topics(cfg, specs)


def homeward_topics(names: list[str], namespace: str = "") -> list[str]:
    """The topics Homeward owns among ``names``: partner topics, internal and dead-letter topics."""
    ours = {t.name for t in declared_topics()}
    out = []
    for name in names:
        if not name.startswith(namespace):
            continue
        bare = name[len(namespace) :]
        if partner_of(bare) is not None or bare in ours:
            out.append(name)
    return sorted(out)


MAIL_CLEAR_TIMEOUT_S = 120.0


def _delete_all_mail(web_url: str, timeout: float) -> None:
    """``DELETE /email/all``: MailDev empties its in-memory list at once and removes the files
    behind it; the answer does not depend on how many messages it held."""
    request = urllib.request.Request(f"{web_url}/email/all", method="DELETE")
    with urllib.request.urlopen(request, timeout=timeout) as resp:  # loopback only
        resp.read()


def _empty_dir(path: Path) -> None:
    if path.exists():
        shutil.rmtree(path)
    path.mkdir(parents=True, exist_ok=True)


def clear_mail(cfg: StackConfig, say: Log, *, timeout: float = MAIL_CLEAR_TIMEOUT_S, shared: bool = False) -> str:
    """Delete every stored message without ever listing them (a national replay leaves over
    100,000, and listing them takes MailDev longer than any sensible timeout). Asks MailDev's
    delete-all endpoint first; if that fails, or MailDev is not healthy afterwards, restarts
    our MailDev on an empty store. ``shared``: the MailDev is another checkout's, which we may
    not restart. Returns how it was emptied."""
    try:
        _delete_all_mail(cfg.mail_web_url, timeout)
        mail.wait_ready(cfg, say, timeout=10, shared=shared)
        return "deleted"
    except (OSError, http.client.HTTPException, StackError) as exc:
        reason = exc.message if isinstance(exc, StackError) else str(exc)
        problem = f"MailDev did not empty its store through DELETE /email/all ({reason})"
    if shared:
        raise StackError(
            problem,
            hint="it is not this checkout's MailDev to restart: stop it where it was started "
            "(homeward-stack down there), then run this again",
        )
    say(f"mail: {problem}; restarting MailDev with an empty store")
    mail.stop(cfg, say)
    _empty_dir(cfg.mail_store)
    mail.start(cfg, say)
    mail.wait_ready(cfg, say, timeout=60)
    return "restarted empty"


def reset(root: Path | None = None, *, partners: tuple[str, ...] = (), log: Log | None = None) -> StackInfo:
    """Start the stack if needed, then empty it: delete Homeward's topics (partner, internal,
    dead-letter; never another namespace's), drop and recreate the service databases, and
    delete the stored mail. The main job does this so every run starts from nothing.
    ``partners``' topics are created along with the declared ones.

    Everything that can fail without harm is done first (the partner codes, listing the
    topics, reaching PostgreSQL, MailDev answering); then the mail, the step most likely to
    be slow, is emptied (with a fallback); only then are topics and databases destroyed."""
    say: Log = log or _stderr
    wanted = tuple(sorted({*_partners(None), *_partners(list(partners))}))
    info = ensure_up(root, log=say)
    cfg = StackConfig.load(root)
    with file_lock(cfg.lock_file, say):
        shared_mail = mail.running_pid(cfg) is None and mail.sibling(cfg) is not None
        doomed = homeward_topics(kafka.list_topics(cfg))
        postgres.provision(cfg, say)
        mail.wait_ready(cfg, say, timeout=30, shared=shared_mail)
        how = clear_mail(cfg, say, shared=shared_mail)
        kafka.delete_topics(cfg, doomed)
        postgres.recreate_databases(cfg, {postgres.role_name(s): postgres.role_name(s) for s in SERVICES})
        kafka.ensure_topics(cfg, declared_topics(wanted))
    say(f"stack: reset ({len(doomed)} topics, {len(SERVICES)} databases, stored mail {how})")
    return info


def down(root: Path | None = None, *, wipe: bool = False, log: Log | None = None) -> list[str]:
    """Stop everything this stack started; ``wipe`` also deletes its data (not the downloads)."""
    say: Log = log or _stderr
    cfg = StackConfig.load(root)
    if not cfg.local.exists():
        return []
    stopped = []
    with file_lock(cfg.lock_file, say):
        if mail.stop(cfg, say):
            stopped.append("mail")
        if kafka.stop(cfg, say):
            stopped.append("kafka")
        if postgres.stop(cfg, say):
            stopped.append("postgres")
        for name, part in (("kafka", kafka), ("postgres", postgres), ("mail", mail)):
            other = part.sibling(cfg)
            if other is not None:
                say(f"{name}: left running; it belongs to {other} (stop it there: homeward-stack down)")
        if wipe:
            for path in (cfg.kafka_data, cfg.kafka_dir / "cluster.id", cfg.pg_dir, cfg.mail_store):
                if path.is_dir():
                    shutil.rmtree(path)
                elif path.exists():
                    path.unlink()
            say(f"wiped Kafka data, the PostgreSQL cluster and stored mail under {cfg.local}")
    return stopped


def status(root: Path | None = None) -> list[ComponentStatus]:
    cfg = StackConfig.load(root)
    return [kafka.status(cfg), postgres.status(cfg), mail.status(cfg)]
