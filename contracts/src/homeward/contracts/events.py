"""Versioned event payloads (the ``data`` of a CloudEvent).

Inbound payloads are written by partner organisations on ``partner.<ODS>.events``;
internal payloads are written by Homeward's services on ``homeward.<service>.v1``.
Within a major version only optional fields are added, and readers ignore fields
they do not know. docs/contracts.md says what each field is based on.
"""

from __future__ import annotations

from typing import Annotated, Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from .identifiers import (
    BasisPoints,
    FactDate,
    FactDatetime,
    FinancialYear,
    NhsNumber,
    OdsCode,
    OrgCode,
    PatientRef,
    Pence,
    PlanDate,
    Reference,
    SignedPence,
)
from .vocab import (
    AgeBand,
    BedType,
    Cohort,
    EndReason,
    FundingSource,
    LegalStatus,
    OutOfAreaReason,
    Programme,
    RateChangeReason,
    ReviewOutcome,
    ReviewType,
    Role,
    Setting,
    Urgency,
    WithdrawalReason,
)

TYPE_PREFIX = "homeward."

Direction = Literal["inbound", "internal"]


class Payload(BaseModel):
    """Base of every event payload."""

    model_config = ConfigDict(strict=True, extra="ignore", frozen=True, use_enum_values=False)

    name: ClassVar[str]
    version: ClassVar[int] = 1
    direction: ClassVar[Direction]
    key_field: ClassVar[str]
    producers: ClassVar[tuple[str, ...]] = ()

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "name" not in cls.__dict__:
            cls.name = cls.__name__

    @classmethod
    def event_type(cls) -> str:
        return f"{TYPE_PREFIX}{cls.name}.v{cls.version}"

    def key(self) -> str:
        return str(getattr(self, self.key_field))


Days = Annotated[int, Field(strict=True, ge=0)]


class FundingShare(BaseModel):
    """One commissioner's share of a pooled placement."""

    model_config = ConfigDict(strict=True, extra="ignore", frozen=True)

    commissioner: OrgCode = Field(description="ODS code of the funding commissioner")
    share_bp: BasisPoints = Field(description="Share of the cost in basis points (10000 = 100%)")


def _check_funding(funding: list[FundingShare]) -> None:
    if not funding:
        return
    total = sum(f.share_bp for f in funding)
    if total != 10_000:
        raise ValueError(f"funding shares must add up to 10000 basis points (100%), got {total}")
    seen = [f.commissioner for f in funding]
    if len(set(seen)) != len(seen):
        raise ValueError("each commissioner may appear only once in funding")


# ----------------------------------------------------------------------------------- inbound


class ReferralReceived(Payload):
    """A commissioner or clinical team asks for a bed for a person."""

    direction = "inbound"
    key_field = "referral_id"
    producers = ("commissioner", "clinical team")

    referral_id: Reference = Field(description="The referrer's unique reference for this referral")
    nhs_number: NhsNumber
    commissioner: OrgCode = Field(description="The person's home (responsible) commissioner", examples=["QWU"])
    bed_type: BedType = Field(description="The kind of bed needed")
    cohort: Cohort
    age_band: AgeBand
    urgency: Urgency
    need_arose_at: FactDatetime = Field(description="When the need for a bed arose")
    legal_status: LegalStatus | None = None
    home_area: OdsCode | None = Field(
        default=None,
        description="The commissioning area the person lives in, if it differs from the commissioner's own",
    )


class ReferralWithdrawn(Payload):
    """The referrer no longer needs a bed for the person: the referral is closed unplaced.

    Who may send it is who may send the referral itself. A placement that answers the referral
    still counts (the person was placed); the wait stops at the earlier of the two."""

    direction = "inbound"
    key_field = "referral_id"
    producers = ("commissioner", "clinical team")

    referral_id: Reference = Field(description="The referral withdrawn, as sent in ReferralReceived")
    commissioner: OrgCode = Field(description="The referral's commissioner", examples=["QWU"])
    withdrawn_at: FactDatetime = Field(description="When the need for a bed ended")
    reason: WithdrawalReason


class BedAvailabilityUpdated(Payload):
    """A provider reports how many beds of one type are free at one site, as of a time."""

    direction = "inbound"
    key_field = "site"
    producers = ("provider",)

    provider: OrgCode = Field(examples=["RJX"])
    site: OdsCode = Field(description="ODS site code", examples=["RJX01"])
    site_area: OrgCode = Field(
        description="Commissioning area (sub-ICB/ICB ODS code) the site lies in", examples=["QWU"]
    )
    bed_type: BedType
    available_beds: int = Field(strict=True, ge=0, description="Beds free now")
    total_beds: int | None = Field(default=None, strict=True, ge=0, description="Commissioned beds of this type")
    as_of: FactDatetime = Field(description="When the count was taken; older counts never replace newer ones")

    @model_validator(mode="after")
    def _available_within_total(self) -> BedAvailabilityUpdated:
        if self.total_beds is not None and self.available_beds > self.total_beds:
            raise ValueError("available_beds cannot exceed total_beds")
        return self


class PlacementMade(Payload):
    """A person has been placed in a bed. Sent by the commissioner or the provider."""

    direction = "inbound"
    key_field = "placement_id"
    producers = ("commissioner", "provider")

    placement_id: Reference = Field(description="Unique reference of this placement", examples=["PLC-QWU-000123"])
    referral_id: Reference | None = Field(default=None, description="The referral this placement answers, if any")
    nhs_number: NhsNumber
    commissioner: OrgCode = Field(description="The responsible (funding) commissioner", examples=["QWU"])
    provider: OrgCode = Field(description="The provider organisation", examples=["8HA03"])
    provider_site: OdsCode = Field(description="The ODS site code of the unit", examples=["8HA0301"])
    provider_site_area: OrgCode | None = Field(
        default=None,
        description="Commissioning area the site lies in; if absent, Homeward's reference data decides",
    )
    independent_provider: bool = Field(default=False, strict=True)
    bed_type: BedType
    cohort: Cohort
    age_band: AgeBand
    legal_status: LegalStatus
    programme: Programme
    start_date: FactDate
    planned_end_date: PlanDate | None = None
    daily_rate_pence: Pence = Field(description="Daily rate in integer pence", examples=[54500])
    out_of_area_reason: OutOfAreaReason | None = Field(
        default=None, description="Why the person is placed out of area (NHS ReasonOAT code), if they are"
    )
    distance_from_home_km: int | None = Field(default=None, strict=True, ge=0, le=2000)
    funding: list[FundingShare] = Field(
        default_factory=list,
        description="Pooled funding shares; empty means the commissioner pays 100%",
    )
    prior_approval_reference: str | None = Field(
        default=None, max_length=64, description="Prior-approval reference for non-contract activity"
    )

    @model_validator(mode="after")
    def _dates_and_funding(self) -> PlacementMade:
        if self.planned_end_date is not None and self.planned_end_date < self.start_date:
            raise ValueError("planned_end_date cannot be before start_date")
        _check_funding(self.funding)
        return self


class PlacementRateChanged(Payload):
    """The daily rate changes from a date (possibly in the past). Re-published by placements."""

    direction = "inbound"
    key_field = "placement_id"
    producers = ("commissioner", "provider", "placements")

    placement_id: Reference
    daily_rate_pence: Pence
    effective_date: FactDate
    reason: RateChangeReason = RateChangeReason.OTHER
    previous_daily_rate_pence: Pence | None = Field(default=None, description="Set by placements when it re-publishes")
    commissioner: OrgCode | None = Field(default=None, description="Set by placements when it re-publishes")
    asserted_by: OrgCode | None = Field(
        default=None,
        description="Set by placements: the organisation whose statement makes this chargeable (docs/authority.md)",
    )
    principal: str | None = Field(
        default=None, max_length=200, description="Set by placements: the principal that organisation was verified as"
    )


class ReviewCompleted(Payload):
    direction = "inbound"
    key_field = "placement_id"
    producers = ("commissioner", "provider")

    placement_id: Reference
    review_type: ReviewType
    review_date: FactDate
    outcome: ReviewOutcome = ReviewOutcome.CONTINUE
    next_review_due: PlanDate | None = Field(
        default=None, description="An earlier next date agreed at the review; later dates than policy are ignored"
    )

    @model_validator(mode="after")
    def _next_after_review(self) -> ReviewCompleted:
        if self.next_review_due is not None and self.next_review_due <= self.review_date:
            raise ValueError("next_review_due must be after review_date")
        return self


class PlacementEnded(Payload):
    direction = "inbound"
    key_field = "placement_id"
    producers = ("commissioner", "provider")

    placement_id: Reference
    end_date: FactDate
    end_reason: EndReason
    transfer_to_placement_id: Reference | None = Field(
        default=None, description="The placement the person moved to, for a transfer or repatriation"
    )

    @model_validator(mode="after")
    def _repatriation_names_target(self) -> PlacementEnded:
        if self.end_reason is EndReason.REPATRIATED and self.transfer_to_placement_id is None:
            raise ValueError("a repatriation must name transfer_to_placement_id")
        return self


class BudgetAllocated(Payload):
    """Money allocated to a commissioner's delegated budget, recorded by that commissioner (or its
    delegated lead commissioner); nobody else may move its budget (docs/authority.md)."""

    direction = "inbound"
    key_field = "commissioner"
    producers = ("commissioner", "delegated lead commissioner")

    allocation_id: Reference
    commissioner: OrgCode
    financial_year: FinancialYear
    programme: Programme
    amount_pence: Pence
    source: FundingSource
    source_organisation: OrgCode | None = Field(
        default=None,
        description="Where the money comes from (e.g. NHS England's ODS code): recorded, but gives no right to send it",
    )


class InvoiceReceived(Payload):
    direction = "inbound"
    key_field = "commissioner"
    producers = ("provider",)

    invoice_id: Reference
    provider: OrgCode
    commissioner: OrgCode
    placement_id: Reference
    period_start: FactDate
    period_end: FactDate = Field(description="Last bed-day invoiced (inclusive)")
    amount_pence: Pence
    invoice_date: FactDate | None = None

    @model_validator(mode="after")
    def _period(self) -> InvoiceReceived:
        if self.period_end < self.period_start:
            raise ValueError("period_end cannot be before period_start")
        return self


class PlacementAgreed(Payload):
    """The commissioner agrees to fund a placement a provider (or a co-funder) reported.

    Until the responsible commissioner (or its delegated lead commissioner) has agreed a
    placement, by this event or by sending the same ``PlacementMade`` itself, the placement is in
    the register as awaiting agreement and nothing is charged to its budget."""

    direction = "inbound"
    key_field = "placement_id"
    producers = ("commissioner",)

    placement_id: Reference = Field(description="The placement as the provider reported it")
    commissioner: OrgCode = Field(description="The responsible commissioner named in the placement")
    daily_rate_pence: Pence = Field(description="The starting daily rate agreed; must equal the reported one")


class RateConfirmed(Payload):
    """The commissioner confirms a daily rate Homeward held as outside its plausibility bounds."""

    direction = "inbound"
    key_field = "placement_id"
    producers = ("commissioner",)

    placement_id: Reference
    commissioner: OrgCode
    effective_date: FactDate = Field(
        description="The date the held rate takes effect from (for a starting rate, the start)"
    )
    daily_rate_pence: Pence = Field(description="The held rate, exactly as stated")


class InvoiceConfirmed(Payload):
    """The commissioner confirms an invoice Homeward held as outside its plausibility bounds."""

    direction = "inbound"
    key_field = "commissioner"
    producers = ("commissioner",)

    invoice_id: Reference
    provider: OrgCode
    commissioner: OrgCode
    placement_id: Reference
    amount_pence: Pence = Field(description="The held invoice's amount, exactly as invoiced")


# ---------------------------------------------------------------------------------- internal


class PlacementRegistered(Payload):
    direction = "internal"
    key_field = "placement_id"
    producers = ("placements",)

    placement_id: Reference
    referral_id: Reference | None = None
    patient_ref: PatientRef
    commissioner: OrgCode
    commissioner_area: OrgCode
    provider: OrgCode
    provider_site: OdsCode
    provider_site_area: OrgCode
    independent_provider: bool = False
    bed_type: BedType
    setting: Setting
    cohort: Cohort
    age_band: AgeBand
    legal_status: LegalStatus
    programme: Programme
    start_date: FactDate
    planned_end_date: PlanDate | None = None
    daily_rate_pence: Pence
    out_of_area: bool
    out_of_area_reason: OutOfAreaReason | None = None
    inappropriate: bool = Field(description="Out of area for lack of a local bed (reason 10)")
    distance_from_home_km: int | None = None
    funding: list[FundingShare] = Field(description="Funding shares; always at least one")
    asserted_by: OrgCode | None = Field(
        default=None,
        description="Set by placements: the organisation whose statement makes this chargeable (docs/authority.md)",
    )
    principal: str | None = Field(
        default=None, max_length=200, description="Set by placements: the principal that organisation was verified as"
    )


class PlacementClosed(Payload):
    direction = "internal"
    key_field = "placement_id"
    producers = ("placements",)

    placement_id: Reference
    patient_ref: PatientRef
    commissioner: OrgCode
    provider_site: OdsCode
    end_date: FactDate = Field(description="Last night of the stay is the night before end_date")
    end_reason: EndReason
    out_of_area: bool
    length_of_stay_nights: Days
    asserted_by: OrgCode | None = Field(
        default=None,
        description="Set by placements: the organisation whose statement makes this chargeable (docs/authority.md)",
    )
    principal: str | None = Field(
        default=None, max_length=200, description="Set by placements: the principal that organisation was verified as"
    )


class _ReviewAlert(Payload):
    direction = "internal"
    key_field = "placement_id"
    producers = ("placements",)

    placement_id: Reference
    patient_ref: PatientRef
    commissioner: OrgCode
    provider: OrgCode
    provider_site: OdsCode
    bed_type: BedType
    cohort: Cohort
    out_of_area: bool
    review_type: ReviewType
    due_date: PlanDate


class ReviewDueSoon(_ReviewAlert):
    days_until_due: Days


class ReviewOverdue(_ReviewAlert):
    days_overdue: int = Field(strict=True, ge=1)
    escalation_level: int = Field(strict=True, ge=1, le=5, description="1 when first overdue, higher on escalation")
    last_review_date: FactDate | None = None


class PatientRepatriated(Payload):
    direction = "internal"
    key_field = "from_placement_id"
    producers = ("placements",)

    patient_ref: PatientRef
    commissioner: OrgCode
    programme: Programme
    from_placement_id: Reference
    to_placement_id: Reference
    from_site: OdsCode
    to_site: OdsCode
    from_daily_rate_pence: Pence
    to_daily_rate_pence: Pence
    repatriated_on: FactDate
    explicit: bool = Field(description="True when a partner stated the repatriation; false when matched by Homeward")
    funding: list[FundingShare] = Field(default_factory=list)
    asserted_by: OrgCode | None = Field(
        default=None,
        description="Set by placements: the organisation whose statement makes this chargeable (docs/authority.md)",
    )
    principal: str | None = Field(
        default=None, max_length=200, description="Set by placements: the principal that organisation was verified as"
    )


class RepatriationCorrected(PatientRepatriated):
    """A repatriation's rates restated after it was published: a rate change recorded later took
    effect on or before the move. It carries the whole move with the corrected rates; the saving
    follows it."""

    reason: Literal["rate-changed"] = Field(description="Why the repatriation was restated")
    corrects_event_id: str = Field(max_length=200, description="The PatientRepatriated this corrects")
    previous_from_daily_rate_pence: Pence
    previous_to_daily_rate_pence: Pence


class LocalOption(BaseModel):
    model_config = ConfigDict(strict=True, extra="ignore", frozen=True)

    provider: OrgCode
    site: OdsCode
    available_beds: int = Field(strict=True, ge=1)
    as_of: FactDatetime


class ReferralTriaged(Payload):
    direction = "internal"
    key_field = "referral_id"
    producers = ("referrals",)

    referral_id: Reference
    patient_ref: PatientRef
    commissioner: OrgCode
    home_area: OrgCode
    bed_type: BedType
    cohort: Cohort
    urgency: Urgency
    local_options: list[LocalOption] = Field(description="In-area sites with a free bed of this type, best first")
    capacity_as_of: FactDatetime | None = Field(
        default=None,
        description="The instant whose bed counts were used: the referral's event time (each site's latest count "
        "taken at or before it)",
    )
    supersedes: str | None = Field(
        default=None,
        max_length=200,
        description="Set on a re-triage: the id of the ReferralTriaged it replaces, because a count for the "
        "referral's time arrived after it",
    )


class LocalCapacityUnavailable(Payload):
    direction = "internal"
    key_field = "referral_id"
    producers = ("referrals",)

    referral_id: Reference
    placement_id: Reference
    commissioner: OrgCode
    home_area: OrgCode
    bed_type: BedType
    cohort: Cohort
    placed_site: OdsCode
    placed_on: FactDate
    out_of_area_reason: OutOfAreaReason | None = None
    waited_hours: int = Field(strict=True, ge=0)


class ReferralWaitBreached(Payload):
    direction = "internal"
    key_field = "referral_id"
    producers = ("referrals",)

    referral_id: Reference
    patient_ref: PatientRef
    commissioner: OrgCode
    bed_type: BedType
    urgency: Urgency
    waiting_since: FactDatetime
    threshold_hours: int = Field(strict=True, ge=1)
    waited_hours: int = Field(strict=True, ge=0)


class LocalCapacityChanged(Payload):
    """Free beds of one type in one area, summed over its sites (for repatriation candidates)."""

    direction = "internal"
    key_field = "area"
    producers = ("referrals",)

    area: OrgCode
    bed_type: BedType
    available_beds: int = Field(strict=True, ge=0)
    as_of: FactDatetime


class BudgetThresholdBreached(Payload):
    direction = "internal"
    key_field = "commissioner"
    producers = ("budget",)

    commissioner: OrgCode
    financial_year: FinancialYear
    programme: Programme | None = Field(default=None, description="None means all programmes together")
    threshold_percent: int = Field(strict=True, ge=1, le=1000)
    allocated_pence: Pence
    forecast_outturn_pence: Pence
    as_of: FactDate


class InvoiceVarianceFound(Payload):
    direction = "internal"
    key_field = "commissioner"
    producers = ("budget",)

    invoice_id: Reference
    placement_id: Reference
    provider: OrgCode
    commissioner: OrgCode
    period_start: FactDate
    period_end: FactDate
    invoiced_pence: Pence
    accrued_pence: Pence
    variance_pence: SignedPence = Field(description="Invoiced minus accrued")
    tolerance_pence: Pence


class PlacementAwaitingAgreement(Payload):
    """A placement was reported by someone other than its commissioner and waits for the
    commissioner's agreement before anything is charged to its budget."""

    direction = "internal"
    key_field = "placement_id"
    producers = ("placements",)

    placement_id: Reference
    commissioner: OrgCode
    provider: OrgCode
    provider_site: OdsCode
    reported_by: OrgCode = Field(description="The organisation that reported the placement")
    bed_type: BedType
    start_date: FactDate
    daily_rate_pence: Pence
    out_of_area: bool
    funding: list[FundingShare] = Field(default_factory=list)


class AmountHeld(Payload):
    """A daily rate or an invoice outside the plausibility bounds of its bed type, held (not
    posted) until the commissioner confirms it."""

    direction = "internal"
    key_field = "placement_id"
    producers = ("placements", "budget")

    kind: Literal["daily_rate", "invoice"]
    placement_id: Reference
    commissioner: OrgCode
    provider: OrgCode
    bed_type: BedType
    asserted_by: OrgCode = Field(description="The organisation that stated the amount")
    daily_rate_pence: Pence = Field(description="The daily rate stated, or for an invoice its amount per night")
    lower_pence: Pence = Field(description="The lowest plausible daily rate for the bed type")
    upper_pence: Pence = Field(description="The highest plausible daily rate for the bed type")
    effective_date: FactDate | None = Field(default=None, description="For a rate: the date it takes effect from")
    invoice_id: Reference | None = None
    invoice_amount_pence: Pence | None = None
    period_start: FactDate | None = None
    period_end: FactDate | None = None


class NotificationSent(Payload):
    direction = "internal"
    key_field = "notification_id"
    producers = ("notifications",)

    notification_id: Reference
    cause_event_id: str = Field(max_length=200)
    cause_event_type: str = Field(max_length=100)
    organisation: OrgCode
    role: Role
    message_id: str = Field(max_length=300)
    sent_at: FactDatetime


class NotificationFailed(Payload):
    direction = "internal"
    key_field = "notification_id"
    producers = ("notifications",)

    notification_id: Reference
    cause_event_id: str = Field(max_length=200)
    cause_event_type: str = Field(max_length=100)
    organisation: OrgCode
    role: Role
    attempts: int = Field(strict=True, ge=1)
    last_error: str = Field(max_length=500)


INBOUND: tuple[type[Payload], ...] = (
    ReferralReceived,
    ReferralWithdrawn,
    BedAvailabilityUpdated,
    PlacementMade,
    PlacementRateChanged,
    ReviewCompleted,
    PlacementEnded,
    BudgetAllocated,
    InvoiceReceived,
    PlacementAgreed,
    RateConfirmed,
    InvoiceConfirmed,
)
INTERNAL: tuple[type[Payload], ...] = (
    PlacementRegistered,
    PlacementClosed,
    ReviewDueSoon,
    ReviewOverdue,
    PatientRepatriated,
    RepatriationCorrected,
    ReferralTriaged,
    LocalCapacityUnavailable,
    ReferralWaitBreached,
    LocalCapacityChanged,
    BudgetThresholdBreached,
    InvoiceVarianceFound,
    PlacementAwaitingAgreement,
    AmountHeld,
    NotificationSent,
    NotificationFailed,
)
ALL_PAYLOADS: tuple[type[Payload], ...] = INBOUND + INTERNAL

EVENT_TYPES: dict[str, type[Payload]] = {p.event_type(): p for p in ALL_PAYLOADS}


def payload_class(event_type: str) -> type[Payload] | None:
    return EVENT_TYPES.get(event_type)
