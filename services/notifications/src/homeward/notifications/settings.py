"""Settings of the notifications service (environment variables ``HOMEWARD_NOTIFICATIONS_*``)."""

from __future__ import annotations

from homeward.kit.settings import ServiceSettings
from pydantic import Field, SecretStr
from pydantic_settings import SettingsConfigDict

from .domain.timeliness import DEFAULT_HISTORY_AFTER_DAYS


class NotificationsSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="HOMEWARD_NOTIFICATIONS_", extra="ignore")

    http_port: int = 8004

    smtp_host: str = "127.0.0.1"
    smtp_port: int = 1025
    smtp_starttls: bool = Field(default=False, description="Upgrade the connection with STARTTLS (required if set)")
    smtp_tls: bool = Field(default=False, description="Implicit TLS from the start (SMTPS, usually port 465)")
    smtp_username: str | None = None
    smtp_password: SecretStr | None = None
    smtp_validate_certs: bool = True
    smtp_timeout_s: float = 30.0
    mail_from: str = "Homeward <alerts@homeward.invalid>"

    max_attempts: int = Field(default=8, ge=1, description="SMTP attempts before an email is marked failed")
    backoff_base_s: float = Field(default=60.0, gt=0, description="Wait after the first failure; doubles each time")
    backoff_max_s: float = Field(default=3600.0, gt=0)
    send_lease_s: float = Field(
        default=300.0,
        gt=0,
        description="How long a claimed email waits before a crashed attempt is retried; renewed just before sending",
    )
    settle_retry_s: float = Field(
        default=120.0,
        gt=0,
        description="How long recording an email the server accepted as sent is retried (at most half the lease)",
    )
    send_batch_size: int = Field(default=50, ge=1)
    sender_interval_s: float = Field(default=1.0, gt=0, description="How often the sender looks for due emails")

    digest_hour: int = Field(default=7, ge=0, le=23, description="UK hour at which daily digests go out")
    history_after_days: int = Field(
        default=DEFAULT_HISTORY_AFTER_DAYS,
        ge=0,
        description=(
            "An alert whose action was due more than this many days before today (the service clock) is "
            "history: recorded as suppressed, never emailed. Due in the last this-many days: in the daily digest"
        ),
    )
    respond_within_days: dict[str, int] = Field(
        default_factory=dict, description="Per event type, days from the alert to the date in its subject"
    )
    allowed_reserved_domains: list[str] = Field(
        default_factory=lambda: ["invalid", "test"],
        description="Reserved top-level domains accepted in recipient addresses (never deliverable; demos)",
    )
