"""Every partner field, attribute and size is bounded in the contracts, so every service agrees
on what is acceptable and each violation is a contract error with a reason (dead-lettered)."""

import datetime as dt
import json

import pytest
from homeward.contracts import ContractError, parse_json, parse_kafka
from homeward.contracts.envelope import MAX_DEPTH

from .factories import envelope, placement_made


def _refusal(raw: bytes) -> ContractError:
    with pytest.raises(ContractError) as info:
        parse_json(raw)
    return info.value


def test_an_oversized_correlationid_is_refused_naming_the_attribute() -> None:
    error = _refusal(json.dumps(envelope(placement_made(), correlationid="c" * 500_000)).encode())
    assert error.kind == "invalid-envelope"
    assert "correlationid" in {p.field for p in error.problems}


def test_extension_attributes_are_bounded_in_number_size_and_shape() -> None:
    assert parse_json(json.dumps(envelope(placement_made(), traceparent="00-abc-01"))).extensions == {
        "traceparent": "00-abc-01"
    }
    for extra in (
        {"big": "x" * 1001},
        {f"e{i}": "v" for i in range(21)},
        {"nested": {"a": 1}},
        {"Bad_Name": "v"},
    ):
        assert _refusal(json.dumps(envelope(placement_made(), **extra)).encode()).kind == "invalid-envelope"


@pytest.mark.parametrize("start", ["0001-01-01", "1989-12-31", "9999-12-31"])
def test_dates_outside_the_plausible_range_are_refused(start: str) -> None:
    error = _refusal(json.dumps(envelope(placement_made(start_date=start))).encode())
    assert error.kind == "invalid-payload"
    assert "data.start_date" in {p.field for p in error.problems}


def test_the_future_bound_follows_today_and_is_configurable(monkeypatch: pytest.MonkeyPatch) -> None:
    soon = (dt.datetime.now(dt.UTC).date() + dt.timedelta(days=30)).isoformat()
    assert parse_json(json.dumps(envelope(placement_made(start_date=soon)))).data.start_date.isoformat() == soon
    monkeypatch.setenv("HOMEWARD_CONTRACTS_MAX_FUTURE_DAYS", "7")
    assert _refusal(json.dumps(envelope(placement_made(start_date=soon))).encode()).kind == "invalid-payload"


def test_an_event_time_far_in_the_past_or_future_is_refused() -> None:
    for time in ("0001-01-01T00:00:00Z", "9999-12-31T23:59:59Z"):
        assert _refusal(json.dumps(envelope(placement_made(), time=time)).encode()).kind == "invalid-envelope"


def test_a_planned_end_may_lie_years_ahead_but_not_past_2100() -> None:
    ahead = (dt.datetime.now(dt.UTC).date() + dt.timedelta(days=3 * 365)).isoformat()
    assert parse_json(json.dumps(envelope(placement_made(planned_end_date=ahead)))).data.planned_end_date
    assert _refusal(json.dumps(envelope(placement_made(planned_end_date="2101-01-01"))).encode())


@pytest.mark.parametrize("depth", [MAX_DEPTH + 1, 10_000])
def test_deeply_nested_values_are_malformed_json_not_a_crash(depth: int) -> None:
    nested = "[" * depth + "]" * depth
    structured = f'{{"specversion": "1.0", "data": {nested}}}'.encode()
    assert _refusal(structured).kind == "malformed-json"
    with pytest.raises(ContractError) as info:
        parse_kafka(nested.encode(), [("ce_specversion", b"1.0")])
    assert info.value.kind == "malformed-json"


def test_ordinary_nesting_is_accepted() -> None:
    funded = placement_made(funding=[{"commissioner": "QWU", "share_bp": 10_000}])
    assert parse_json(json.dumps(envelope(funded))).data.funding


def test_a_numeric_time_is_refused_as_the_schema_says() -> None:
    assert _refusal(json.dumps(envelope(placement_made(), time=1772442000)).encode()).kind == "invalid-envelope"
