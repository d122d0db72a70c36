"""The audit trail: every read of placement-level data appends a row to ``audit_log`` in the
service's own database (kit migration 0005): who (sub, organisation, role, name), what (the
method, path and query), when, and which references it showed (placement ids, referral ids,
patient references). The table is append-only: a trigger refuses UPDATE, DELETE and TRUNCATE.

The row is written before the answer is sent; if it cannot be written the read fails (500), so
nothing placement-level is ever shown without its record. ``homeward audit`` lists the rows of
every service's database together.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import asyncpg
from starlette.requests import Request

from .auth import Caller

# A list answer records at most this many references; the row says how many were left out.
MAX_REFS = 5000


@dataclass(frozen=True)
class AuditRow:
    at: dt.datetime
    service: str
    sub: str
    organisation: str
    role: str
    name: str | None
    action: str
    query: str
    refs: tuple[str, ...]

    def to_json(self) -> dict[str, Any]:
        return {
            "at": self.at.isoformat(),
            "service": self.service,
            "sub": self.sub,
            "organisation": self.organisation,
            "role": self.role,
            "name": self.name,
            "action": self.action,
            "query": self.query,
            "refs": list(self.refs),
        }


def references(rows: Iterable[dict[str, Any]], *keys: str) -> list[str]:
    """The distinct values of ``keys`` in ``rows`` (in order of first appearance)."""
    out: dict[str, None] = {}
    for row in rows:
        for key in keys:
            value = row.get(key)
            if value:
                out[str(value)] = None
    return list(out)


async def record(
    db: asyncpg.Pool | asyncpg.Connection,  # type: ignore[type-arg]
    service: str,
    caller: Caller,
    request: Request,
    refs: Sequence[str] = (),
) -> None:
    """Append one audit row for ``caller`` reading ``request`` and being shown ``refs``."""
    shown = list(dict.fromkeys(refs))
    if len(shown) > MAX_REFS:
        shown = [*shown[:MAX_REFS], f"... and {len(shown) - MAX_REFS} more"]
    await db.execute(
        """INSERT INTO audit_log (service, sub, organisation, role, name, action, query, refs)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8)""",
        service,
        caller.sub,
        caller.org,
        caller.role,
        caller.name,
        f"{request.method} {request.url.path}",
        request.url.query,
        shown,
    )


async def read(
    db: asyncpg.Pool | asyncpg.Connection,  # type: ignore[type-arg]
    *,
    since: dt.datetime | None = None,
    organisation: str | None = None,
    limit: int = 1000,
) -> list[AuditRow]:
    """The latest ``limit`` rows of one database's trail from ``since``, for one
    ``organisation``, oldest first."""
    rows = await db.fetch(
        """SELECT * FROM (
               SELECT id, at, service, sub, organisation, role, name, action, query, refs FROM audit_log
               WHERE ($1::timestamptz IS NULL OR at >= $1) AND ($2::text IS NULL OR organisation = $2)
               ORDER BY at DESC, id DESC LIMIT $3
           ) latest ORDER BY at, id""",
        since,
        organisation,
        limit,
    )
    return [
        AuditRow(
            at=r["at"],
            service=r["service"],
            sub=r["sub"],
            organisation=r["organisation"],
            role=r["role"],
            name=r["name"],
            action=r["action"],
            query=r["query"],
            refs=tuple(r["refs"]),
        )
        for r in rows
    ]
