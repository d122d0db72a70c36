"""Staff sign-in for the command line: ``homeward token`` (a token from the native stack's local
key) and the bearer token the ``homeward`` commands send to the services' APIs.

A command sends ``$HOMEWARD_TOKEN`` when it is set (a token from your organisation's identity
provider, or from ``homeward token``). Without it, on a checkout with the native stack, the
command signs a short-lived token with the local key for the organisation it is asked about
(docs/staff-access.md): whoever can read ``.local/secrets/`` is the local stack's operator.
"""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path
from typing import Annotated

import typer
from homeward.kit.auth import OPS, ROLES, issue_local_token, parse_ttl

TOKEN_VAR = "HOMEWARD_TOKEN"
# A token the CLI signs for itself lives only as long as the command.
SELF_SIGNED_TTL = dt.timedelta(minutes=5)


class NoToken(RuntimeError):
    """No token in the environment and none can be signed here; the message says what to do."""


def secrets_folder() -> Path:
    from homeward.devstack.config import StackConfig
    from homeward.devstack.secrets import secrets_dir

    return secrets_dir(StackConfig.load())


def local_token(org: str, role: str, *, sub: str | None = None, ttl: dt.timedelta = SELF_SIGNED_TTL) -> str:
    """A token signed by this checkout's local key (made if absent, as ``make up`` does)."""
    from homeward.devstack.secrets import ensure_auth

    ensure_auth()
    return issue_local_token(secrets_folder(), org=org, role=role, sub=sub or f"cli:{role}@{org.lower()}", ttl=ttl)


def bearer(org: str | None = None, role: str = OPS) -> dict[str, str]:
    """The Authorization header for a command: ``$HOMEWARD_TOKEN``, else a short-lived local
    token for ``org`` (ops when no organisation is concerned) with ``role``."""
    token = os.environ.get(TOKEN_VAR, "").strip()
    if not token:
        try:
            token = local_token(org or "HOMEWARD", role if org else OPS)
        except Exception as exc:
            raise NoToken(
                f"set {TOKEN_VAR} to a staff token (docs/staff-access.md); none could be signed here: {exc}"
            ) from exc
    return {"Authorization": f"Bearer {token}"}


def token(
    org: Annotated[str, typer.Option("--org", help="ODS code of the caller's organisation, e.g. 05A or RX1")],
    role: Annotated[str, typer.Option("--role", help=f"One of: {', '.join(ROLES)}")],
    ttl: Annotated[str, typer.Option("--ttl", help="How long it is valid: 90s, 15m, 8h, 2d")] = "8h",
    sub: Annotated[str | None, typer.Option("--sub", help="Who it names (default <role>@<org>)")] = None,
    name: Annotated[str | None, typer.Option("--name", help="A display name")] = None,
) -> None:
    """Print a staff token signed by the native stack's local key (made by `make up`).

    Send it as `Authorization: Bearer <token>`, or export HOMEWARD_TOKEN=<token> for the
    `homeward` commands. Only the local stack accepts it; elsewhere tokens come from the
    organisation's identity provider (docs/staff-access.md)."""
    if role not in ROLES:
        raise typer.BadParameter(f"must be one of {', '.join(ROLES)}", param_hint="--role")
    try:
        lifetime = parse_ttl(ttl)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--ttl") from None
    from homeward.devstack.secrets import ensure_auth

    ensure_auth()
    try:
        signed = issue_local_token(secrets_folder(), org=org, role=role, sub=sub, name=name, ttl=lifetime)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--org") from None
    typer.echo(signed)
