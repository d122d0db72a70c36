"""Sending through an SMTP server with aiosmtplib (STARTTLS, implicit TLS and AUTH are settings)."""

from __future__ import annotations

import contextlib
import datetime as dt
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass

import aiosmtplib

from ..ports import MailConnection, Mailer, MailRejected, MailUnavailable, OutgoingEmail
from .templates import build_message

_UNAVAILABLE = (
    aiosmtplib.SMTPConnectError,
    aiosmtplib.SMTPServerDisconnected,
    aiosmtplib.SMTPTimeoutError,
    OSError,
    TimeoutError,
)


@dataclass(frozen=True)
class SmtpConfig:
    host: str
    port: int
    mail_from: str
    starttls: bool = False
    tls: bool = False
    username: str | None = None
    password: str | None = None
    validate_certs: bool = True
    timeout_s: float = 30.0


class _SmtpConnection(MailConnection):
    def __init__(self, client: aiosmtplib.SMTP, config: SmtpConfig) -> None:
        self._client = client
        self._config = config

    async def send(self, email: OutgoingEmail, date: dt.datetime) -> None:
        message = build_message(email, mail_from=self._config.mail_from, date=date)
        try:
            await self._client.send_message(message)
        except aiosmtplib.SMTPRecipientsRefused as exc:
            raise MailRejected(f"recipient refused: {exc}") from exc
        except aiosmtplib.SMTPResponseException as exc:
            if exc.code in (421,):  # the server is closing the connection
                raise MailUnavailable(f"{exc.code} {exc.message}") from exc
            raise MailRejected(f"{exc.code} {exc.message}") from exc
        except _UNAVAILABLE as exc:
            raise MailUnavailable(f"{type(exc).__name__}: {exc}") from exc
        except aiosmtplib.SMTPException as exc:
            raise MailRejected(f"{type(exc).__name__}: {exc}") from exc


class SmtpMailer(Mailer):
    def __init__(self, config: SmtpConfig) -> None:
        self.config = config

    def connect(self) -> AbstractAsyncContextManager[MailConnection]:
        return self._connect()

    @asynccontextmanager
    async def _connect(self) -> AsyncIterator[MailConnection]:
        c = self.config
        client = aiosmtplib.SMTP(
            hostname=c.host,
            port=c.port,
            use_tls=c.tls,
            start_tls=c.starttls,
            validate_certs=c.validate_certs,
            username=c.username,
            password=c.password,
            timeout=c.timeout_s,
        )
        try:
            await client.connect()
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
            raise MailUnavailable(f"cannot reach the SMTP server at {c.host}:{c.port}: {type(exc).__name__}") from exc
        try:
            yield _SmtpConnection(client, c)
        finally:
            with contextlib.suppress(Exception):
                await client.quit()
