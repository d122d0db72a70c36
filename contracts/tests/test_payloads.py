import json

import pytest
from homeward.contracts import ContractError, parse_json
from homeward.contracts.events import EVENT_TYPES, INBOUND, INTERNAL, PlacementMade
from homeward.contracts.vocab import OutOfAreaReason

from .factories import envelope, placement_made


def _parse(data: dict, **attrs: object):  # type: ignore[no-untyped-def]
    return parse_json(json.dumps(envelope(data, **attrs)))


def test_valid_placement_parses_to_typed_payload() -> None:
    event = _parse(placement_made())
    assert isinstance(event.data, PlacementMade)
    assert event.data.daily_rate_pence == 54500
    assert event.data.out_of_area_reason is OutOfAreaReason.NO_LOCAL_BED
    assert event.key == "PLC-QWU-000001"


def _problems(data: dict, **attrs: object) -> dict[str, str]:
    with pytest.raises(ContractError) as info:
        _parse(data, **attrs)
    return {p.field: p.problem for p in info.value.problems}


def test_float_money_is_refused_naming_the_field() -> None:
    problems = _problems(placement_made(daily_rate_pence=545.0))
    assert "data.daily_rate_pence" in problems
    assert "integer" in problems["data.daily_rate_pence"]


def test_money_as_a_string_is_refused() -> None:
    assert "data.daily_rate_pence" in _problems(placement_made(daily_rate_pence="54500"))


def test_negative_money_is_refused() -> None:
    problems = _problems(placement_made(daily_rate_pence=-1))
    assert "greater than or equal to 0" in problems["data.daily_rate_pence"]


def test_end_before_start_is_refused() -> None:
    problems = _problems(placement_made(planned_end_date="2025-12-31"))
    assert any("planned_end_date cannot be before start_date" in p for p in problems.values())


def test_invalid_nhs_number_names_field_and_hides_value() -> None:
    with pytest.raises(ContractError) as info:
        _parse(placement_made(nhs_number="9434765918"))
    assert info.value.kind == "invalid-payload"
    assert "data.nhs_number" in str(info.value)
    assert "9434765918" not in str(info.value)


def test_unknown_bed_type_lists_the_field() -> None:
    problems = _problems(placement_made(bed_type="penthouse"))
    assert "data.bed_type" in problems


def test_funding_shares_must_total_100_percent() -> None:
    funding = [{"commissioner": "QWU", "share_bp": 6000}, {"commissioner": "QNQ", "share_bp": 3000}]
    problems = _problems(placement_made(funding=funding))
    assert any("10000" in p for p in problems.values())


def test_pooled_funding_accepted() -> None:
    funding = [{"commissioner": "QWU", "share_bp": 5000}, {"commissioner": "QNQ", "share_bp": 5000}]
    assert len(_parse(placement_made(funding=funding)).data.funding) == 2


def test_unknown_fields_are_ignored_for_forward_compatibility() -> None:
    event = _parse(placement_made(some_future_field="x"))
    assert not hasattr(event.data, "some_future_field")


def test_unknown_type_is_a_clear_error() -> None:
    with pytest.raises(ContractError) as info:
        _parse(placement_made(), type="homeward.PlacementTeleported.v1")
    assert info.value.kind == "unknown-type"


def test_malformed_json_is_a_clear_error() -> None:
    with pytest.raises(ContractError) as info:
        parse_json(b'{"specversion": "1.0", "id": ')
    assert info.value.kind == "malformed-json"


def test_missing_time_and_naive_time_are_refused() -> None:
    env = envelope(placement_made())
    del env["time"]
    with pytest.raises(ContractError) as info:
        parse_json(json.dumps(env))
    assert any(p.field == "time" for p in info.value.problems)
    with pytest.raises(ContractError):
        _parse(placement_made(), time="2026-01-05T10:00:00")


def test_wrong_specversion_is_refused() -> None:
    with pytest.raises(ContractError, match="specversion"):
        _parse(placement_made(), specversion="0.3")


def test_every_required_type_is_in_the_contracts() -> None:
    inbound = {
        "ReferralReceived",
        "BedAvailabilityUpdated",
        "PlacementMade",
        "PlacementRateChanged",
        "ReviewCompleted",
        "PlacementEnded",
        "BudgetAllocated",
        "InvoiceReceived",
    }
    internal = {
        "PlacementRegistered",
        "PlacementClosed",
        "ReviewDueSoon",
        "ReviewOverdue",
        "PatientRepatriated",
        "ReferralTriaged",
        "LocalCapacityUnavailable",
        "ReferralWaitBreached",
        "BudgetThresholdBreached",
        "InvoiceVarianceFound",
        "NotificationSent",
        "NotificationFailed",
    }
    assert inbound <= {c.name for c in INBOUND}
    assert internal <= {c.name for c in INTERNAL}
    assert all(t.startswith("homeward.") and t.endswith(".v1") for t in EVENT_TYPES)


def test_internal_payloads_never_carry_an_nhs_number() -> None:
    for cls in INTERNAL:
        assert "nhs_number" not in cls.model_fields, cls.name


def test_a_referral_withdrawal_is_an_inbound_event_with_a_time_and_a_reason() -> None:
    from homeward.contracts.events import ReferralWithdrawn

    data = {
        "referral_id": "REF-1",
        "commissioner": "QWU",
        "withdrawn_at": "2026-03-02T10:00:00Z",
        "reason": "met_elsewhere",
    }
    event = _parse(data, type="homeward.ReferralWithdrawn.v1")
    assert isinstance(event.data, ReferralWithdrawn) and ReferralWithdrawn in INBOUND
    assert event.key == "REF-1"  # the referral's partition, as ReferralReceived
    assert "data.withdrawn_at" in _problems(
        {**data, "withdrawn_at": "2026-03-02T10:00:00"}, type="homeward.ReferralWithdrawn.v1"
    )
    assert "data.reason" in _problems({**data, "reason": "bored"}, type="homeward.ReferralWithdrawn.v1")


def test_a_repatriation_correction_is_internal_and_states_what_it_corrects() -> None:
    from homeward.contracts.events import PatientRepatriated, RepatriationCorrected

    assert (
        RepatriationCorrected in INTERNAL and RepatriationCorrected.event_type() == "homeward.RepatriationCorrected.v1"
    )
    assert RepatriationCorrected.key_field == PatientRepatriated.key_field  # the move's partition
    required = RepatriationCorrected.model_json_schema()["required"]
    assert {"reason", "corrects_event_id", "previous_from_daily_rate_pence", "previous_to_daily_rate_pence"} <= set(
        required
    )
