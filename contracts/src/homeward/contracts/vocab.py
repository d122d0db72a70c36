"""Enumerated values partners send, with where each list comes from (see docs/contracts.md)."""

from __future__ import annotations

from enum import StrEnum


class BedType(StrEnum):
    """The kind of bed or setting. Mental health bed types follow the NHS OAP collection and the
    Assuring Transformation hospital bed types; secure levels follow WARD SECURITY LEVEL."""

    ADULT_ACUTE = "adult_acute"  # AT 200
    OLDER_ADULT_ACUTE = "older_adult_acute"  # AT 201
    PICU = "picu"  # AT 202, psychiatric intensive care
    OLDER_ADULT_DEMENTIA = "older_adult_dementia"
    LOCKED_REHABILITATION = "locked_rehabilitation"
    OPEN_REHABILITATION = "open_rehabilitation"
    LOW_SECURE = "low_secure"  # ward security level 1
    MEDIUM_SECURE = "medium_secure"  # ward security level 2
    HIGH_SECURE = "high_secure"  # ward security level 3
    LD_AUTISM_INPATIENT = "ld_autism_inpatient"
    EATING_DISORDER = "eating_disorder"
    PERINATAL_MOTHER_AND_BABY = "perinatal_mother_and_baby"
    CAMHS_GENERAL_ADOLESCENT = "camhs_general_adolescent"
    CAMHS_PICU = "camhs_picu"
    RESIDENTIAL_CARE = "residential_care"
    NURSING_HOME_DEMENTIA = "nursing_home_dementia"
    SUPPORTED_LIVING = "supported_living"


class Setting(StrEnum):
    """The setting a review policy keys on, derived from the bed type."""

    INPATIENT = "inpatient"
    SECURE = "secure"
    COMMUNITY = "community"


SECURE_BED_TYPES = frozenset({BedType.LOW_SECURE, BedType.MEDIUM_SECURE, BedType.HIGH_SECURE})
COMMUNITY_BED_TYPES = frozenset({BedType.RESIDENTIAL_CARE, BedType.NURSING_HOME_DEMENTIA, BedType.SUPPORTED_LIVING})


def setting_of(bed_type: BedType) -> Setting:
    if bed_type in SECURE_BED_TYPES:
        return Setting.SECURE
    if bed_type in COMMUNITY_BED_TYPES:
        return Setting.COMMUNITY
    return Setting.INPATIENT


class Cohort(StrEnum):
    MENTAL_HEALTH = "mental_health"
    DEMENTIA = "dementia"
    LEARNING_DISABILITY = "learning_disability"
    AUTISM = "autism"
    LEARNING_DISABILITY_AND_AUTISM = "learning_disability_and_autism"


LD_AUTISM_COHORTS = frozenset({Cohort.LEARNING_DISABILITY, Cohort.AUTISM, Cohort.LEARNING_DISABILITY_AND_AUTISM})


class AgeBand(StrEnum):
    CHILD = "child"  # under 18: CETRs, 6-weekly oversight visits
    ADULT = "adult"  # 18-64
    OLDER_ADULT = "older_adult"  # 65 and over


class LegalStatus(StrEnum):
    """Legal basis of the stay (Mental Health Act 1983 sections and others)."""

    INFORMAL = "informal"
    MHA_SECTION_2 = "mha_s2"
    MHA_SECTION_3 = "mha_s3"
    MHA_SECTION_37 = "mha_s37"
    MHA_SECTION_37_41 = "mha_s37_41"
    MHA_SECTION_47_49 = "mha_s47_49"
    MHA_SECTION_48_49 = "mha_s48_49"
    COMMUNITY_TREATMENT_ORDER = "cto"
    DEPRIVATION_OF_LIBERTY = "dols"
    OTHER = "other"


class OutOfAreaReason(StrEnum):
    """NHS Data Dictionary REFERRED OUT OF AREA REASON (ADULT ACUTE MENTAL HEALTH), MHSDS ReasonOAT."""

    NO_LOCAL_BED = "10"
    SAFEGUARDING = "11"
    OFFENDING_RESTRICTIONS = "12"
    STAFF_OR_FAMILY_LINK = "13"
    PATIENT_CHOICE = "14"
    NOT_KNOWN = "99"

    @property
    def inappropriate(self) -> bool:
        """Reason 10 (no local bed) makes an out-of-area placement inappropriate."""
        return self is OutOfAreaReason.NO_LOCAL_BED


class ReviewType(StrEnum):
    OVERSIGHT_VISIT = "oversight_visit"  # commissioner oversight visit, out-of-area inpatients
    CTR = "ctr"  # Care and Treatment Review (adults)
    CETR = "cetr"  # Care, Education and Treatment Review (children and young people)
    CPA_REVIEW = "cpa_review"  # Care Programme Approach review


class ReviewOutcome(StrEnum):
    CONTINUE = "continue"
    PLAN_DISCHARGE = "plan_discharge"
    PLAN_REPATRIATION = "plan_repatriation"
    ESCALATE = "escalate"


class EndReason(StrEnum):
    DISCHARGED_HOME = "discharged_home"
    DISCHARGED_TO_COMMUNITY = "discharged_to_community"
    TRANSFER = "transfer"  # moved to another placement (may complete a repatriation)
    REPATRIATED = "repatriated"  # the partner states the move home explicitly
    STEP_DOWN = "step_down"
    DIED = "died"
    OTHER = "other"


class RateChangeReason(StrEnum):
    ANNUAL_UPLIFT = "annual_uplift"
    CARE_PACKAGE_CHANGE = "care_package_change"
    ENHANCED_OBSERVATION = "enhanced_observation"
    CORRECTION = "correction"
    OTHER = "other"


class WithdrawalReason(StrEnum):
    """Why a referrer withdrew a referral before a bed was found."""

    NO_LONGER_NEEDED = "no_longer_needed"  # the person recovered, or the crisis passed
    MET_ELSEWHERE = "met_elsewhere"  # a community service or another route met the need
    PATIENT_DECLINED = "patient_declined"
    DIED = "died"
    ENTERED_IN_ERROR = "entered_in_error"
    OTHER = "other"


class Urgency(StrEnum):
    EMERGENCY = "emergency"
    URGENT = "urgent"
    ROUTINE = "routine"


class Programme(StrEnum):
    MENTAL_HEALTH = "mental_health"
    LEARNING_DISABILITY_AND_AUTISM = "learning_disability_and_autism"
    SECURE_AND_FORENSIC = "secure_and_forensic"


class FundingSource(StrEnum):
    NHS_ENGLAND = "nhs_england"
    LEAD_PROVIDER = "lead_provider"
    POOLED_FUND = "pooled_fund"
    ICB = "icb"


class Role(StrEnum):
    """Staff roles that notifications route alerts to."""

    CASE_MANAGER = "case_manager"
    CLINICAL_LEAD = "clinical_lead"
    FINANCE_LEAD = "finance_lead"
    BED_MANAGER = "bed_manager"
    OAP_LEAD = "oap_lead"
