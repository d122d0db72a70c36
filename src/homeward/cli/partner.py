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

The group is meant to grow: Kafka credentials for partners will sit beside ``key``.
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

partner_app = typer.Typer(help="Partner organisations: their API keys for sending over HTTP.", no_args_is_help=True)
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

        return IngressSettings().database_url


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
