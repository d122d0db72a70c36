"""Settings of the ingress service (environment prefix ``HOMEWARD_INGRESS_``)."""

from __future__ import annotations

from homeward.kit.settings import ServiceSettings
from pydantic import Field
from pydantic_settings import SettingsConfigDict


class IngressSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="HOMEWARD_INGRESS_", extra="ignore")

    http_port: int = 8005

    # The HTTP front door (POST /events, docs/partner-guide.md "Sending over HTTP").
    # A request body larger than this is refused with 413, whether its Content-Length says so
    # or the streamed body grows past it.
    http_max_request_bytes: int = Field(default=256 * 1024, ge=1024)
    # Each partner (ODS code) has a token bucket: http_rate_per_s requests a second on
    # average, up to http_rate_burst at once; past it, 429 with Retry-After. The buckets live
    # in memory, per replica: with N replicas a partner may send N times as much.
    http_rate_per_s: float = Field(default=20.0, gt=0)
    http_rate_burst: int = Field(default=100, ge=1)
    # HTTP receipts ((source, id) -> digest: an exact resend is answered 200, a reused id 409)
    # older than this are deleted, like the kit's inbox rows; 0 keeps them for ever.
    http_receipt_retention_days: float = Field(default=35, ge=0)
    http_receipt_retention_interval_s: float = Field(default=3600.0, gt=0)
    # How long the list of partner topics is trusted; a partner whose topic is not on it is
    # looked up again at most every http_topic_recheck_s.
    http_topic_cache_s: float = Field(default=60.0, gt=0)
    http_topic_recheck_s: float = Field(default=2.0, ge=0)
