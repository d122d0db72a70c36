"""Settings of the placements service (environment prefix ``HOMEWARD_PLACEMENTS_``)."""

from __future__ import annotations

from pathlib import Path

from homeward.kit.settings import ServiceSettings
from pydantic import Field
from pydantic_settings import SettingsConfigDict

DEFAULT_REVIEW_POLICY = Path(__file__).parent / "review_policy.csv"


class PlacementsSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="HOMEWARD_PLACEMENTS_", extra="ignore")

    database_url: str = "postgresql://homeward_placements:homeward_placements@127.0.0.1:55432/homeward_placements"
    http_port: int = 8002
    reference_data: Path | None = Field(
        default=None, description="YAML of commissioners' and sites' commissioning areas (homeward.kit.reference)"
    )
    review_policy: Path | None = Field(
        default=None, description="CSV review policy replacing the committed review_policy.csv"
    )
    repatriation_window_days: int = Field(
        default=14, ge=0, description="How far apart an out-of-area end and an in-area start may be to match"
    )

    delegations: dict[str, str] = Field(
        default_factory=dict,
        description=(
            "Commissioner -> the lead commissioner it delegated to, as JSON (e.g. "
            '{"05R": "05A"}): the lead may agree placements and confirm rates for it (docs/authority.md)'
        ),
    )
    rate_bounds: Path | None = Field(
        default=None,
        description="A CSV of plausible daily rates per bed type replacing rows of the defaults (docs/authority.md)",
    )

    def review_policy_path(self) -> Path:
        return self.review_policy or DEFAULT_REVIEW_POLICY
