"""Rendering emails from the Jinja2 templates shipped with the package, and building the
MIME message (plain text and HTML alternatives) the SMTP server receives."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from email.message import EmailMessage
from email.utils import format_datetime, formataddr

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

from ..domain.alerts import Alert
from ..domain.digest import DigestItem, digest_subject
from ..domain.formatting import day
from ..ports import OutgoingEmail, RenderedEmail, Renderer


def environment() -> Environment:
    return Environment(
        loader=PackageLoader("homeward.notifications", "templates"),
        autoescape=select_autoescape(enabled_extensions=("html.j2",), default_for_string=False),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )


class JinjaRenderer(Renderer):
    def __init__(self, env: Environment | None = None) -> None:
        self.env = env or environment()

    def alert(self, alert: Alert) -> RenderedEmail:
        context = {
            "alert": alert,
            "v": alert.values,
            "width": max((len(name) for name, _ in alert.facts), default=0) + 1,
        }
        return RenderedEmail(
            subject=alert.subject,
            text=self.env.get_template(f"{alert.name}.txt.j2").render(context),
            html=self.env.get_template(f"{alert.name}.html.j2").render(context),
        )

    def digest(self, date: dt.date, items: Sequence[DigestItem]) -> RenderedEmail:
        context = {
            "date": day(date),
            "earliest": day(min(i.due_by for i in items)),
            "items": items,
            "width": max((len(name) for i in items for name, _ in i.facts), default=0) + 1,
        }
        return RenderedEmail(
            subject=digest_subject(date, items),
            text=self.env.get_template("Digest.txt.j2").render(context),
            html=self.env.get_template("Digest.html.j2").render(context),
        )


def build_message(email: OutgoingEmail, *, mail_from: str, date: dt.datetime) -> EmailMessage:
    """The MIME message: multipart/alternative with the plain text first, as RFC 2046 asks."""
    msg = EmailMessage()
    msg["From"] = mail_from
    msg["To"] = formataddr((email.to_name or "", email.to_address))
    msg["Subject"] = email.subject
    msg["Date"] = format_datetime(date)
    msg["Message-ID"] = email.message_id
    msg["Auto-Submitted"] = "auto-generated"
    msg["X-Homeward-Email"] = email.id
    msg.set_content(email.body_text)
    msg.add_alternative(email.body_html, subtype="html")
    return msg
