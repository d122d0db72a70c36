"""Read-side queries for the HTTP API (plain SQL over the service's own tables).

``as_of`` shows the log as it stood at the end of that day (UK time): rows recorded later are
left out, and an email sent or failed later shows as pending.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any, TypeAlias

import asyncpg

from ..views import NotificationView, RecipientView

Conn: TypeAlias = asyncpg.Connection  # type: ignore[type-arg]

_LOCAL_DAY = "(({col}) AT TIME ZONE 'Europe/London')::date"
_STATUS_AS_OF = """CASE
    WHEN $1::date IS NULL THEN n.status
    WHEN n.status = 'sent' AND {sent} > $1::date THEN 'pending'
    WHEN n.status = 'failed' AND {failed} > $1::date THEN 'pending'
    ELSE n.status END""".format(sent=_LOCAL_DAY.format(col="n.sent_at"), failed=_LOCAL_DAY.format(col="n.failed_at"))


@dataclass(frozen=True)
class LogFilter:
    organisation: str | None = None
    event_type: str | None = None
    status: str | None = None
    date_from: dt.date | None = None
    date_to: dt.date | None = None
    as_of: dt.date | None = None
    limit: int = 200
    offset: int = 0


async def notification_log(conn: Conn, f: LogFilter) -> list[NotificationView]:
    recorded = _LOCAL_DAY.format(col="n.recorded_at")
    rows = await conn.fetch(
        f"""SELECT * FROM (
                SELECT n.id, n.cause_event_id, n.event_name AS event_type, n.cause_event_type, n.organisation,
                       n.role, n.email_address AS recipient, n.reference, n.escalation_level, n.subject, n.due_by,
                       n.digest, n.late, {_STATUS_AS_OF} AS status, n.suppressed_reason, e.attempts,
                       n.message_id, n.recorded_at, n.sent_at, n.failed_at, e.last_error
                FROM notifications n LEFT JOIN emails e ON e.id = n.email_id
                WHERE ($1::date IS NULL OR {recorded} <= $1::date)
                  AND ($2::text IS NULL OR n.organisation = $2)
                  AND ($3::text IS NULL OR n.event_name = $3 OR n.cause_event_type = $3)
                  AND ($4::date IS NULL OR {recorded} >= $4::date)
                  AND ($5::date IS NULL OR {recorded} <= $5::date)
            ) log
            WHERE ($6::text IS NULL OR status = $6)
            ORDER BY recorded_at DESC, id
            LIMIT $7 OFFSET $8""",
        f.as_of,
        f.organisation,
        f.event_type,
        f.date_from,
        f.date_to,
        f.status,
        f.limit,
        f.offset,
    )
    out = []
    for r in rows:
        item = dict(r)
        if f.as_of is not None and item["status"] == "pending":
            item["sent_at"] = item["failed_at"] = None
        out.append(NotificationView.model_validate(item))
    return out


async def subscriptions(
    conn: Conn,
    *,
    organisation: str | None,
    role: str | None,
    event_type: str | None,
    as_of: dt.date | None,
) -> list[RecipientView]:
    created = _LOCAL_DAY.format(col="{t}.created_at")
    rows = await conn.fetch(
        f"""SELECT r.id, r.email, r.display_name, r.organisation, r.role, r.digest, r.active,
                   s.event_type, s.min_escalation_level, s.max_escalation_level,
                   CASE WHEN $4::date IS NULL OR {_LOCAL_DAY.format(col="s.opted_out_at")} <= $4::date
                        THEN s.opted_out_at END AS opted_out_at
            FROM recipients r LEFT JOIN subscriptions s
                 ON s.recipient_id = r.id AND ($4::date IS NULL OR {created.format(t="s")} <= $4::date)
            WHERE ($1::text IS NULL OR r.organisation = $1)
              AND ($2::text IS NULL OR r.role = $2)
              AND ($3::text IS NULL OR s.event_type = $3)
              AND ($4::date IS NULL OR {created.format(t="r")} <= $4::date)
            ORDER BY r.organisation, r.role, r.email, s.event_type""",
        organisation,
        role,
        event_type,
        as_of,
    )
    people: dict[int, dict[str, Any]] = {}
    for r in rows:
        person = people.setdefault(r["id"], {**dict(r), "name": r["display_name"], "subscriptions": []})
        if r["event_type"] is not None:
            person["subscriptions"].append({**dict(r), "opted_out": r["opted_out_at"] is not None})
    return [RecipientView.model_validate(p) for p in people.values()]


_EMAIL_STATUS_AS_OF = """CASE
    WHEN $1::date IS NULL THEN e.status
    WHEN e.status = 'sent' AND {sent} > $1::date THEN 'pending'
    WHEN e.status = 'failed' AND {failed} > $1::date THEN 'pending'
    ELSE e.status END""".format(sent=_LOCAL_DAY.format(col="e.sent_at"), failed=_LOCAL_DAY.format(col="e.failed_at"))


async def summary(conn: Conn, as_of: dt.date | None) -> dict[str, Any]:
    """Notifications (one per event and recipient) by status, ``suppressed`` included, and the
    emails that carry them (an alert's own email, or a digest carrying several) by kind and
    status: ``emails.sent`` is what reached the mail server."""
    recorded = _LOCAL_DAY.format(col="n.recorded_at")
    rows = await conn.fetch(
        f"""SELECT n.event_name, {_STATUS_AS_OF} AS status, count(*) AS n
            FROM notifications n
            WHERE ($1::date IS NULL OR {recorded} <= $1::date)
            GROUP BY 1, 2""",
        as_of,
    )
    statuses = ("sent", "pending", "failed", "suppressed")
    totals = dict.fromkeys(statuses, 0)
    by_type: dict[str, dict[str, int]] = {}
    for r in rows:
        totals[r["status"]] += r["n"]
        by_type.setdefault(r["event_name"], dict.fromkeys(statuses, 0))[r["status"]] += r["n"]
    email_rows = await conn.fetch(
        f"""SELECT e.kind, {_EMAIL_STATUS_AS_OF} AS status, count(*) AS n
            FROM emails e
            WHERE ($1::date IS NULL OR {_LOCAL_DAY.format(col="e.created_at")} <= $1::date)
            GROUP BY 1, 2""",
        as_of,
    )
    emails: dict[str, Any] = {"sent": 0, "pending": 0, "failed": 0, "by_kind": {}}
    for r in email_rows:
        emails[r["status"]] += r["n"]
        emails["by_kind"].setdefault(r["kind"], {"sent": 0, "pending": 0, "failed": 0})[r["status"]] += r["n"]
    recipients = await conn.fetchval("SELECT count(*) FROM recipients WHERE active")
    emails_pending = await conn.fetchval("SELECT count(*) FROM emails WHERE status = 'pending'")
    return {
        **totals,
        "emails": emails,
        "recipients": recipients,
        "emails_pending": emails_pending if as_of is None else None,
        "by_event_type": by_type,
        "as_of": as_of.isoformat() if as_of else None,
    }
