"""Settings of the referrals service (environment prefix ``HOMEWARD_REFERRALS_``)."""

from __future__ import annotations

from pathlib import Path

from homeward.contracts.vocab import Urgency
from homeward.kit.settings import ServiceSettings
from pydantic import Field, field_validator
from pydantic_settings import SettingsConfigDict

DEFAULT_WAIT_THRESHOLDS_HOURS: dict[Urgency, list[int]] = {
    Urgency.EMERGENCY: [4, 12],
    Urgency.URGENT: [24, 72],
    Urgency.ROUTINE: [168, 672],
}


class ReferralsSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="HOMEWARD_REFERRALS_", extra="ignore")

    http_port: int = 8001
    reference_data: Path | None = Field(
        default=None, description="YAML file of commissioners, their areas and provider sites (homeward.kit.reference)"
    )
    wait_thresholds_hours: dict[Urgency, list[int]] = Field(
        default_factory=lambda: {k: list(v) for k, v in DEFAULT_WAIT_THRESHOLDS_HOURS.items()},
        description="Hours after need_arose_at at which an unplaced referral is reported, per urgency (JSON)",
    )

    @field_validator("wait_thresholds_hours")
    @classmethod
    def _positive_and_sorted(cls, value: dict[Urgency, list[int]]) -> dict[Urgency, list[int]]:
        for urgency, hours in value.items():
            if any(h < 1 for h in hours):
                raise ValueError(f"wait thresholds for {urgency} must be whole hours of at least 1")
        return {urgency: sorted(set(hours)) for urgency, hours in value.items()}
