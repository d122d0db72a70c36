"""Scheduled jobs: the sender (every second or so) and the daily digest."""

from __future__ import annotations

import asyncpg
from homeward.kit.clock import Clock
from homeward.kit.service import Job
from homeward.kit.topics import Topics

from ..adapters.postgres import PgDigestStore, PgEmailQueue
from ..adapters.smtp import SmtpConfig, SmtpMailer
from ..ports import Mailer, Renderer
from ..sending import DigestMaker, Sender, SendPolicy
from ..settings import NotificationsSettings


def smtp_config(settings: NotificationsSettings) -> SmtpConfig:
    return SmtpConfig(
        host=settings.smtp_host,
        port=settings.smtp_port,
        mail_from=settings.mail_from,
        starttls=settings.smtp_starttls,
        tls=settings.smtp_tls,
        username=settings.smtp_username,
        password=settings.smtp_password.get_secret_value() if settings.smtp_password else None,
        validate_certs=settings.smtp_validate_certs,
        timeout_s=settings.smtp_timeout_s,
    )


def send_policy(settings: NotificationsSettings) -> SendPolicy:
    return SendPolicy(
        max_attempts=settings.max_attempts,
        backoff_base_s=settings.backoff_base_s,
        backoff_max_s=settings.backoff_max_s,
        lease_s=settings.send_lease_s,
        batch_size=settings.send_batch_size,
        settle_retry_s=settings.settle_retry_s,
    )


def sender_job(settings: NotificationsSettings, mailer: Mailer | None = None) -> Job:
    topics = Topics(settings.kafka.topic_namespace)
    chosen = mailer or SmtpMailer(smtp_config(settings))
    policy = send_policy(settings)

    async def run(pool: asyncpg.Pool, clock: Clock) -> int:  # type: ignore[type-arg]
        return await Sender(PgEmailQueue(pool, topics), chosen, policy).send_due(clock)

    return Job("sender", run, interval_s=settings.sender_interval_s)


def digest_job(settings: NotificationsSettings, renderer: Renderer) -> Job:
    async def run(pool: asyncpg.Pool, clock: Clock) -> int:  # type: ignore[type-arg]
        return await DigestMaker(PgDigestStore(pool), renderer, settings.digest_hour).make_due(clock)

    return Job("digest", run)
