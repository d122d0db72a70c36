"""Settings of the ingress service (environment prefix ``HOMEWARD_INGRESS_``)."""

from __future__ import annotations

from homeward.kit.settings import ServiceSettings
from pydantic_settings import SettingsConfigDict


class IngressSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="HOMEWARD_INGRESS_", extra="ignore")

    http_port: int = 8005
