"""The staff view's settings, prefix ``HOMEWARD_STAFF_`` (docs/staff.md)."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class StaffSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="HOMEWARD_STAFF_", extra="ignore")

    http_host: str = Field(default="127.0.0.1", description="Address the staff view listens on")
    http_port: int = Field(default=8090, description="Port of the staff view")
    placements_url: str = Field(default="http://127.0.0.1:8002", description="The placements service's read API")
    referrals_url: str = Field(default="http://127.0.0.1:8001", description="The referrals service's read API")
    budget_url: str = Field(default="http://127.0.0.1:8003", description="The budget service's read API")
    notifications_url: str = Field(default="http://127.0.0.1:8004", description="The notifications service's API")
    secure_cookie: bool | None = Field(
        default=None,
        description="Mark the sign-in cookie Secure; default: when the request came over https "
        "(behind a proxy, the X-Forwarded-Proto it sets, if uvicorn trusts it)",
    )
    timeout_s: float = Field(default=30.0, description="How long to wait for a service's answer")

    def service_url(self, service: str) -> str:
        return str(getattr(self, f"{service}_url")).rstrip("/")
