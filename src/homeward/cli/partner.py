"""`homeward partner`: what partner organisations need to reach Homeward.

``homeward partner key ...`` manages the API keys of the ingress's HTTP front door
(``POST /events``, docs/partner-guide.md "Sending over HTTP"). Each key speaks for one ODS
code. Keys live in the ingress's database, only as sha256 digests: a key is printed once, when
it is made (``add``, ``rotate``), and never again; ``list`` shows key ids and states only.

``rotate`` makes a new key, prints it, and only then revokes the partner's older keys: at once
by default, or with ``--grace 24h`` at the end of that window, so the partner can switch over
without a gap. ``revoke`` stops keys at once.

The database is the one the ingress uses: ``--database-url``, else
``HOMEWARD_INGRESS_DATABASE_URL`` (as the services read it), else the native dev stack's
ingress database. The ingress must have run once there (it applies its migrations).

``homeward partner add|rotate|remove ODS`` manage the partner's Kafka identity, ``User:<ODS>``
(SASL/SCRAM-SHA-512), as the operator (``homeward-admin``; see homeward.cli.connect):

* ``add`` creates the partner's topic ``partner.<ODS>.events`` (if missing), a SCRAM credential
  with a random secret and the ACLs that let it write and describe that topic and nothing else,
  then prints the client settings, the secret this once only;
* ``rotate`` gives the partner a new secret: the old one stops working;
* ``remove`` deletes the credential and the ACLs. The topic and what it holds are kept.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import re
from collections.abc import Awaitable, Callable
from typing import Annotated, Any, TypeVar

import asyncpg
import typer
from rich.console import Console
from rich.table import Table

partner_app = typer.Typer(
    help="Partner organisations: their Kafka identity (add, rotate, remove) and API keys for HTTP (key).",
    no_args_is_help=True,
)
key_app = typer.Typer(
    help="API keys for the ingress's HTTP front door (POST /events); each speaks for one ODS code.",
    no_args_is_help=True,
)
partner_app.add_typer(key_app, name="key")

console = Console()
err = Console(stderr=True)
T = TypeVar("T")

DatabaseUrl = Annotated[
    str | None,
    typer.Option(
        "--database-url",
        envvar="HOMEWARD_INGRESS_DATABASE_URL",
        help="The ingress's database (default: HOMEWARD_INGRESS_DATABASE_URL, else the dev stack's)",
        show_envvar=False,
    ),
]
JsonFlag = Annotated[bool, typer.Option("--json", help="Print JSON instead of text")]
Ods = Annotated[str, typer.Argument(help="The partner's ODS code, e.g. RX1")]

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*$")
_UNIT_SECONDS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(raw: str) -> dt.timedelta:
    """``90``/``90s``, ``30m``, ``24h``, ``7d``."""
    m = _DURATION.match(raw.lower())
    if not m:
        raise typer.BadParameter(f"{raw!r} is not a duration such as 30m, 24h or 7d")
    return dt.timedelta(seconds=float(m.group(1)) * _UNIT_SECONDS[m.group(2)])


def _dsn(explicit: str | None) -> str:
    if explicit:
        return explicit
    try:
        from homeward.devstack import StackConfig

        return StackConfig.load().service_dsn("ingress")
    except Exception:
        from homeward.ingress.settings import IngressSettings

        url = IngressSettings().database_url
        if not url:
            err.print("[red]no ingress database: give --database-url or set HOMEWARD_INGRESS_DATABASE_URL[/]")
            raise typer.Exit(2) from None
        return url


def _where(dsn: str) -> str:
    """The DSN without its password, for messages."""
    return re.sub(r"://([^:/@]+):[^@]*@", r"://\1:***@", dsn)


def _ods(raw: str) -> str:
    from homeward.ingress.domain.keys import ods_code

    try:
        return ods_code(raw)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None


def _run(database_url: str | None, work: Callable[[asyncpg.Connection[Any]], Awaitable[T]]) -> T:
    from homeward.ingress.adapters.keys import MissingSchema

    dsn = _dsn(database_url)

    async def main() -> T:
        conn = await asyncpg.connect(dsn, timeout=15)
        try:
            return await work(conn)
        finally:
            await conn.close()

    try:
        return asyncio.run(main())
    except MissingSchema:
        err.print(
            f"[red]the database at {_where(dsn)} has no partner_api_keys table: start the ingress once there "
            "(it applies its migrations), or point HOMEWARD_INGRESS_DATABASE_URL at the ingress's database[/]"
        )
        raise typer.Exit(2) from None
    except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
        err.print(f"[red]cannot use the ingress database at {_where(dsn)}: {type(exc).__name__}: {exc}[/]")
        raise typer.Exit(2) from None


def _when(value: dt.datetime | None) -> str | None:
    return None if value is None else value.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")


def _state(info: Any, now: dt.datetime) -> str:
    if info.revoked_at is None:
        return "active"
    if info.revoked_at > now:
        return f"active until {_when(info.revoked_at)}"
    return f"revoked {_when(info.revoked_at)}"


def _key_json(info: Any) -> dict[str, Any]:
    return {
        "key_id": info.key_id,
        "ods": info.ods,
        "created_at": _when(info.created_at),
        "revoked_at": _when(info.revoked_at),
        "active": info.active,
    }


def _print_new_key(issued: Any, json_out: bool, extra: dict[str, Any] | None = None) -> None:
    """The key alone on stdout (so ``KEY=$(homeward partner key add RX1)`` works), or JSON."""
    if json_out:
        print(
            json.dumps(
                {"ods": issued.ods, "key_id": issued.key_id, "key": issued.key, "created_at": _when(issued.created_at)}
                | (extra or {})
            ),
            flush=True,
        )
        return
    err.print(
        f"New API key for {issued.ods} (key id {issued.key_id}). It is shown this once: store it now, and give it "
        "to the partner by a secure channel."
    )
    print(issued.key, flush=True)


@key_app.command("add")
def key_add(ods: Ods, database_url: DatabaseUrl = None, json_out: JsonFlag = False) -> None:
    """Make a new API key for a partner and print it (once). Its other keys keep working."""
    from homeward.ingress.adapters import keys

    code = _ods(ods)
    issued = _run(database_url, lambda conn: keys.issue(conn, code))
    _print_new_key(issued, json_out)


@key_app.command("rotate")
def key_rotate(
    ods: Ods,
    grace: Annotated[
        str | None,
        typer.Option(help="Keep the older keys working this long (30m, 24h, 7d); default: revoke them at once"),
    ] = None,
    database_url: DatabaseUrl = None,
    json_out: JsonFlag = False,
) -> None:
    """Make a new key, print it, then revoke the partner's older keys (after --grace, if given)."""
    from homeward.ingress.adapters import keys

    code = _ods(ods)
    after = parse_duration(grace) if grace else dt.timedelta(0)

    async def make(conn: asyncpg.Connection[Any]) -> tuple[Any, list[Any]]:
        issued = await keys.issue(conn, code)
        older = [k for k in await keys.list_keys(conn, code) if k.active and k.key_id != issued.key_id]
        return issued, older

    issued, older = _run(database_url, make)
    # Printed before anything is revoked: if printing fails, the partner's current key still works.
    _print_new_key(
        issued, json_out, {"revoking": [k.key_id for k in older], "grace_seconds": int(after.total_seconds())}
    )

    async def retire(conn: asyncpg.Connection[Any]) -> list[Any]:
        done = []
        for k in older:
            done += await keys.revoke(conn, code, key_id=k.key_id, after=after)
        return done

    revoked = _run(database_url, retire)
    if json_out:
        return
    if not revoked:
        err.print(f"{code} had no other working key.")
    elif after:
        err.print(
            f"{len(revoked)} older key(s) of {code} ({', '.join(k.key_id for k in revoked)}) stop working at "
            f"{_when(revoked[0].revoked_at)} (grace {grace})."
        )
    else:
        err.print(f"Revoked {len(revoked)} older key(s) of {code}: {', '.join(k.key_id for k in revoked)}.")


@key_app.command("revoke")
def key_revoke(
    ods: Ods,
    key_id: Annotated[
        str | None, typer.Option("--key-id", help="Only this key (default: all of the partner's)")
    ] = None,
    database_url: DatabaseUrl = None,
    json_out: JsonFlag = False,
) -> None:
    """Revoke a partner's keys now (or one of them, by --key-id). Exits 1 if none was working."""
    from homeward.ingress.adapters import keys

    code = _ods(ods)
    revoked = _run(database_url, lambda conn: keys.revoke(conn, code, key_id=key_id))
    if json_out:
        print(json.dumps({"ods": code, "revoked": [k.key_id for k in revoked]}))
    elif revoked:
        console.print(f"Revoked {len(revoked)} key(s) of {code}: {', '.join(k.key_id for k in revoked)}")
    else:
        err.print(f"{code} has no working key" + (f" with id {key_id}" if key_id else ""))
    if not revoked:
        raise typer.Exit(1)


@key_app.command("list")
def key_list(
    ods: Annotated[str | None, typer.Argument(help="Only this partner's keys")] = None,
    database_url: DatabaseUrl = None,
    json_out: JsonFlag = False,
) -> None:
    """Every key (or a partner's): id, partner, when made, whether it works. Never a secret."""
    from homeward.ingress.adapters import keys

    code = _ods(ods) if ods else None

    async def read(conn: asyncpg.Connection[Any]) -> tuple[list[Any], dt.datetime]:
        return await keys.list_keys(conn, code), await conn.fetchval("SELECT now()")

    found, now = _run(database_url, read)
    if json_out:
        print(json.dumps({"keys": [_key_json(k) for k in found]}))
        return
    table = Table(title=f"{len(found)} API key(s)" + (f" of {code}" if code else ""))
    for column in ("key id", "ODS", "created", "state"):
        table.add_column(column)
    for k in found:
        table.add_row(k.key_id, k.ods, _when(k.created_at), _state(k, now))
    console.print(table)


# ---- Kafka identities ------------------------------------------------------------------
Bootstrap = Annotated[
    str | None, typer.Option(help="Kafka bootstrap servers (default from HOMEWARD_KAFKA_*, else the dev stack)")
]


def _operator(bootstrap: str | None) -> tuple[Any, Any]:
    """The operator's settings and a KafkaAccess on them; exits 2 if the broker cannot be used."""
    from homeward.kit.access import KafkaAccess

    from .connect import kafka_settings

    settings = kafka_settings(bootstrap)
    if not settings.security_protocol.startswith("SASL"):
        err.print(
            f"[red]Kafka at {settings.bootstrap_servers} is reached without SASL: partner identities need a broker "
            "with SCRAM authentication; set HOMEWARD_KAFKA_SECURITY_PROTOCOL and the operator's "
            "HOMEWARD_KAFKA_SASL_USERNAME/PASSWORD[/]"
        )
        raise typer.Exit(2)
    return settings, KafkaAccess(settings)


def _client_settings(settings: Any, user: str, password: str) -> dict[str, str]:
    """The partner's Kafka client configuration (librdkafka property names: kcat -F, the Confluent
    clients for Python, Go, .NET and C; docs/partner-guide.md gives the Java equivalent)."""
    return {
        "bootstrap.servers": settings.bootstrap_servers,
        "security.protocol": settings.security_protocol,
        "sasl.mechanism": "SCRAM-SHA-512",
        "sasl.username": user,
        "sasl.password": password,
    }


def _print_credentials(ods: str, conf: dict[str, str], topic: str, json_out: bool, verb: str) -> None:
    """The client settings on stdout, as a properties file (``> rx1.properties``); notes on stderr."""
    if json_out:
        print(json.dumps({"ods": ods, "topic": topic, **conf}))
    else:
        print(f"# Homeward: Kafka client settings of {ods}; it may write only to {topic}")
        for k, v in conf.items():
            print(f"{k}={v}")
    err.print(
        f"{verb} Kafka identity User:{conf['sasl.username']}. The password is shown this once only: "
        f"give it to {ods} by a secure channel."
    )


def _kafka_call(work: Callable[[], T]) -> T:
    from homeward.kit.access import AccessError

    try:
        return work()
    except AccessError as exc:
        err.print(f"[red]{exc}[/]")
        raise typer.Exit(2) from None


@partner_app.command("add")
def partner_add(ods: Ods, bootstrap: Bootstrap = None, json_out: JsonFlag = False) -> None:
    """Onboard a partner on Kafka: its topic, its SCRAM credential and ACLs; prints its client settings once."""
    from homeward.contracts.access import partner_grants, partner_principal
    from homeward.contracts.topics import TopicSpec, partner_topic, partner_topic_spec
    from homeward.kit.access import new_password
    from homeward.kit.kafka import ensure_topics

    code = _ods(ods)
    settings, access = _operator(bootstrap)
    ns = settings.topic_namespace
    user, topic = partner_principal(code, ns), ns + partner_topic(code)
    if _kafka_call(lambda: access.users([user])):
        err.print(f"[red]{code} already has a Kafka identity ({user}): use `homeward partner rotate {code}`[/]")
        raise typer.Exit(1)
    try:
        spec = partner_topic_spec(code)
        asyncio.run(ensure_topics(settings, [TopicSpec(topic, spec.partitions, spec.retention_ms, spec.purpose)]))
    except Exception as exc:
        err.print(f"[red]could not create {topic} on Kafka at {settings.bootstrap_servers}: {exc}[/]")
        raise typer.Exit(2) from None
    password = new_password()
    _kafka_call(lambda: access.set_password(user, password))
    _kafka_call(lambda: access.grant({user: partner_grants(code, ns)}))
    _print_credentials(code, _client_settings(settings, user, password), topic, json_out, "Created")


@partner_app.command("rotate")
def partner_rotate(ods: Ods, bootstrap: Bootstrap = None, json_out: JsonFlag = False) -> None:
    """Give a partner a new Kafka secret; the old one stops working at once."""
    from homeward.contracts.access import partner_principal
    from homeward.contracts.topics import partner_topic
    from homeward.kit.access import new_password

    code = _ods(ods)
    settings, access = _operator(bootstrap)
    user = partner_principal(code, settings.topic_namespace)
    if not _kafka_call(lambda: access.users([user])):
        err.print(f"[red]{code} has no Kafka identity: `homeward partner add {code}` makes one[/]")
        raise typer.Exit(1)
    password = new_password()
    _kafka_call(lambda: access.set_password(user, password))
    topic = settings.topic_namespace + partner_topic(code)
    _print_credentials(code, _client_settings(settings, user, password), topic, json_out, "Rotated")


@partner_app.command("remove")
def partner_remove(ods: Ods, bootstrap: Bootstrap = None, json_out: JsonFlag = False) -> None:
    """Revoke a partner's Kafka access (credential and ACLs); its topic and data are kept."""
    from homeward.contracts.access import partner_principal
    from homeward.contracts.topics import partner_topic

    code = _ods(ods)
    settings, access = _operator(bootstrap)
    user = partner_principal(code, settings.topic_namespace)
    acls = _kafka_call(lambda: access.revoke_all(user))
    had = _kafka_call(lambda: access.delete_user(user))
    topic = settings.topic_namespace + partner_topic(code)
    if json_out:
        print(json.dumps({"ods": code, "user": user, "credential_deleted": had, "acls_deleted": acls, "kept": topic}))
    else:
        console.print(
            f"Removed {user}: credential {'deleted' if had else 'absent'}, {acls} ACL(s) deleted; {topic} kept"
        )
    if not had and not acls:
        raise typer.Exit(1)
