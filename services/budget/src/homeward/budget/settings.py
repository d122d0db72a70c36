"""Settings of the budget service (environment prefix ``HOMEWARD_BUDGET_``)."""

from __future__ import annotations

from homeward.kit.settings import ServiceSettings
from pydantic import Field
from pydantic_settings import SettingsConfigDict


class BudgetSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="HOMEWARD_BUDGET_", extra="ignore")

    http_port: int = 8003
    thresholds_percent: list[int] = Field(
        default_factory=lambda: [90, 100],
        description="Raise BudgetThresholdBreached when forecast outturn reaches these percentages of the allocation",
    )
    threshold_rearm_margin_percent: int = Field(
        default=5,
        ge=0,
        le=100,
        description="A breached threshold alerts again only after the forecast falls this many points below it",
    )
    invoice_tolerance_pence: int = Field(default=100_00, ge=0, description="Variance always tolerated, in pence")
    invoice_tolerance_percent: int = Field(default=2, ge=0, description="Variance tolerated as a percent of accrual")
    delegations: dict[str, str] = Field(
        default_factory=dict,
        description=(
            "Commissioner -> the lead commissioner it delegated its budget to, as JSON (e.g. "
            '{"05R": "05A"}): the lead may then allocate and confirm for it (docs/authority.md)'
        ),
    )
    rate_bounds: str | None = Field(
        default=None,
        description="A CSV of plausible daily rates per bed type replacing rows of the defaults (docs/authority.md)",
    )
    accrual_batch_size: int = Field(default=200, ge=1, description="Placements the accrual job reads at a time")
