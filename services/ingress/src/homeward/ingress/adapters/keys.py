"""Partners' API keys in the ingress's database (table ``partner_api_keys``, migration 0002).

Used by the HTTP front door (:func:`organisation_of`) and by ``homeward partner key ...``
(issue, list, revoke). Validity is judged by the database's clock (``now()``), never by the
service's injectable one: a key revoked now is refused now, whatever day a demo runs "as of".
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any, TypeAlias

import asyncpg

from ..domain.keys import NewKey, key_id_of, matches, new_key


@dataclass(frozen=True)
class KeyInfo:
    """What may be shown about a key: never its secret or its digest."""

    key_id: str
    ods: str
    created_at: dt.datetime
    revoked_at: dt.datetime | None
    active: bool  # works now (not revoked, or revoked only from a future instant)


@dataclass(frozen=True)
class IssuedKey:
    key_id: str
    ods: str
    key: str
    created_at: dt.datetime


class MissingSchema(RuntimeError):
    """The database has no partner_api_keys table: the ingress has not run its migrations there."""


Connection: TypeAlias = "asyncpg.Connection[Any] | asyncpg.Pool[Any]"


async def issue(conn: Connection, ods: str) -> IssuedKey:
    """A new key for ``ods``; its secret is returned here and never again."""
    key: NewKey = new_key()
    try:
        created = await conn.fetchval(
            "INSERT INTO partner_api_keys (key_id, ods, secret_sha256) VALUES ($1, $2, $3) RETURNING created_at",
            key.key_id,
            ods,
            key.digest,
        )
    except asyncpg.UndefinedTableError as exc:
        raise MissingSchema(str(exc)) from exc
    return IssuedKey(key.key_id, ods, key.key, created)


async def revoke(
    conn: Connection,
    ods: str,
    *,
    key_id: str | None = None,
    keep: str | None = None,
    after: dt.timedelta = dt.timedelta(0),
) -> list[KeyInfo]:
    """Revoke ``ods``'s keys that still work (only ``key_id`` if given; never ``keep``), from
    now or, with ``after``, from that much later. Returns the keys revoked."""
    try:
        rows = await conn.fetch(
            """UPDATE partner_api_keys
               SET revoked_at = now() + $4::interval
               WHERE ods = $1
                 AND ($2::text IS NULL OR key_id = $2)
                 AND ($3::text IS NULL OR key_id <> $3)
                 AND (revoked_at IS NULL OR revoked_at > now() + $4::interval)
               RETURNING key_id, ods, created_at, revoked_at, revoked_at > now() AS active""",
            ods,
            key_id,
            keep,
            after,
        )
    except asyncpg.UndefinedTableError as exc:
        raise MissingSchema(str(exc)) from exc
    return sorted((KeyInfo(**dict(r)) for r in rows), key=lambda k: (k.created_at, k.key_id))


async def list_keys(conn: Connection, ods: str | None = None) -> list[KeyInfo]:
    try:
        rows = await conn.fetch(
            """SELECT key_id, ods, created_at, revoked_at, (revoked_at IS NULL OR revoked_at > now()) AS active
               FROM partner_api_keys WHERE $1::text IS NULL OR ods = $1
               ORDER BY ods, created_at, key_id""",
            ods,
        )
    except asyncpg.UndefinedTableError as exc:
        raise MissingSchema(str(exc)) from exc
    return [KeyInfo(**dict(r)) for r in rows]


async def organisation_of(conn: Connection, presented: str) -> str | None:
    """The ODS code a presented key speaks for, or None if it is not a working key."""
    key_id = key_id_of(presented)
    if key_id is None:
        return None
    row = await conn.fetchrow(
        """SELECT ods, secret_sha256 FROM partner_api_keys
           WHERE key_id = $1 AND (revoked_at IS NULL OR revoked_at > now())""",
        key_id,
    )
    if row is None or not matches(presented, row["secret_sha256"]):
        return None
    return str(row["ods"])
