"""The services' read APIs as the ``homeward`` commands call them: where each service answers,
and a GET as the person signed in (``$HOMEWARD_TOKEN``, else the native stack's local token).

Every command module that reads an API imports this one, never ``main`` (which imports them all)."""

from __future__ import annotations

import os
from typing import Any

import httpx
import typer
from rich.console import Console
from rich.markup import escape

from .access import NoToken, bearer

err = Console(stderr=True)

SERVICE_URLS = {
    "referrals": "http://127.0.0.1:8001",
    "placements": "http://127.0.0.1:8002",
    "budget": "http://127.0.0.1:8003",
    "notifications": "http://127.0.0.1:8004",
}


def service_url(service: str) -> str:
    return os.environ.get(f"HOMEWARD_{service.upper()}_URL", SERVICE_URLS[service])


def get(
    service: str, path: str, params: dict[str, Any] | None = None, *, org: str | None = None, role: str = "ops"
) -> Any:
    """GET a service's API as ``$HOMEWARD_TOKEN``, else (native stack) as ``role`` at ``org``."""
    url = service_url(service) + path
    try:
        headers = bearer(org.upper() if org else None, role)
    except NoToken as exc:
        err.print(f"[red]{escape(str(exc))}[/]")
        raise typer.Exit(2) from exc
    try:
        r = httpx.get(
            url, params={k: v for k, v in (params or {}).items() if v is not None}, headers=headers, timeout=30
        )
    except httpx.HTTPError as exc:
        err.print(f"[red]cannot reach the {service} service at {url}: {exc}. Is it running (`make run`)?[/]")
        raise typer.Exit(2) from exc
    if r.status_code in (401, 403) and r.headers.get("content-type", "").startswith("application/problem+json"):
        detail = r.json().get("detail", "")
        err.print(
            f"[red]{service} answered {r.status_code}: {escape(str(detail))}[/]\n"
            "Sign in as a member of staff of the organisation asked about: set HOMEWARD_TOKEN, or on the "
            "native stack name the organisation (--commissioner); docs/staff-access.md"
        )
        raise typer.Exit(1)
    if r.status_code >= 400:
        err.print(f"[red]{service} answered {r.status_code}: {r.text[:500]}[/]")
        raise typer.Exit(1)
    return r.json()
