import pytest
from homeward.contracts.identifiers import (
    NhsNumber,
    OdsCode,
    OrgCode,
    is_valid_nhs_number,
    nhs_number_check_digit,
    nhs_number_problem,
    nhs_numbers_in_test_range,
)
from pydantic import BaseModel


def test_worked_example_from_the_data_dictionary_is_valid() -> None:
    # 943 476 5919: weighted sum 299, remainder 2, check digit 9
    assert nhs_number_check_digit("943476591") == 9
    assert is_valid_nhs_number("9434765919")
    assert is_valid_nhs_number("943 476 5919")


@pytest.mark.parametrize(
    "number",
    ["9434765918", "943476591", "94347659190", "94347659a9", "", "９４３４７６５９１９"],
)
def test_known_invalid_nhs_numbers_are_refused(number: str) -> None:
    assert not is_valid_nhs_number(number)


def test_a_remainder_giving_ten_has_no_valid_number() -> None:
    # find nine digits whose check would be 10: every tenth digit is then wrong
    nine = next(f"999{n:06d}" for n in range(10_000) if nhs_number_check_digit(f"999{n:06d}") is None)
    for last in "0123456789":
        assert nhs_number_problem(nine + last) is not None


def test_generated_test_range_numbers_all_pass() -> None:
    numbers = nhs_numbers_in_test_range(200)
    assert all(n.startswith("999") and is_valid_nhs_number(n) for n in numbers)
    assert len(set(numbers)) == 200


class _M(BaseModel):
    nhs: NhsNumber
    ods: OdsCode | None = None
    org: OrgCode | None = None


def test_error_says_which_field_and_why_without_echoing_the_number() -> None:
    from homeward.contracts.errors import problems_from

    with pytest.raises(Exception) as info:
        _M(nhs="9434765918")
    problems = problems_from(info.value)  # type: ignore[arg-type]
    assert problems[0].field == "nhs"
    assert "check digit" in problems[0].problem
    assert "9434765918" not in str(problems)


@pytest.mark.parametrize("code", ["RH802", "8HA03", "QNQ", "D4U1Y", "RH8020001"])
def test_valid_ods_codes(code: str) -> None:
    assert _M(nhs="9434765919", ods=code).ods == code


@pytest.mark.parametrize("code", ["rh802", "R", "RH-80", "RH8020000X", " QNQ"])
def test_invalid_ods_codes(code: str) -> None:
    with pytest.raises(ValueError, match="ODS code"):
        _M(nhs="9434765919", ods=code)


def test_site_code_is_not_an_organisation_code() -> None:
    with pytest.raises(ValueError, match="at most 8"):
        _M(nhs="9434765919", org="RH8020001")
