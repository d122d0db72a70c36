"""Identifiers and money, validated the way NHS systems validate them.

* NHS number: 10 digits; digits 1-9 weighted 10 down to 2, check digit is
  11 - (sum mod 11), where 11 becomes 0 and 10 makes the number invalid.
* ODS code: uppercase alphanumeric, organisations up to 8 characters and sites up to 9.
* Money: integer pence, never negative, never a float.
* Dates of facts: not before 1990 and not more than a year ahead (``HOMEWARD_CONTRACTS_MAX_FUTURE_DAYS``,
  default 366), so every service agrees on what a plausible date is; plans (a planned end, a
  due date) may lie further ahead, but not past 2100.

Error messages never repeat the offending value, so an NHS number that fails
validation cannot leak into logs or dead-letter headers through the error text.
"""

from __future__ import annotations

import datetime as dt
import os
import re
from typing import Annotated

from pydantic import AfterValidator, AwareDatetime, Field, StringConstraints

NHS_NUMBER_WEIGHTS = (10, 9, 8, 7, 6, 5, 4, 3, 2)
_ODS_RE = re.compile(r"^[A-Z0-9]{3,9}$")
_REF_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:/-]{1,63}$")


def nhs_number_check_digit(first_nine: str) -> int | None:
    """The Modulus 11 check digit for nine digits, or None when no valid number exists."""
    total = sum(int(d) * w for d, w in zip(first_nine, NHS_NUMBER_WEIGHTS, strict=True))
    check = 11 - (total % 11)
    if check == 11:
        return 0
    if check == 10:
        return None
    return check


def nhs_numbers_in_test_range(count: int, start: int = 0) -> list[str]:
    """Valid NHS numbers from the range kept for testing, 999 000 0000 to 999 999 9999, in
    order from ``999`` + ``start`` (six digits). For test data and examples: never a person."""
    out: list[str] = []
    n = start
    while len(out) < count:
        first_nine = f"999{n:06d}"
        check = nhs_number_check_digit(first_nine)
        if check is not None:
            out.append(first_nine + str(check))
        n += 1
    return out


def nhs_number_problem(value: str) -> str | None:
    """Why ``value`` is not a valid NHS number, or None if it is valid."""
    digits = value.replace(" ", "")
    if len(digits) != 10 or not digits.isascii() or not digits.isdigit():
        return "an NHS number is 10 digits (spaces allowed between groups)"
    expected = nhs_number_check_digit(digits[:9])
    if expected is None:
        return "no valid NHS number has these first nine digits (Modulus 11 gives 10)"
    if int(digits[9]) != expected:
        return "the check digit (10th digit) does not match the Modulus 11 check"
    return None


def is_valid_nhs_number(value: str) -> bool:
    return nhs_number_problem(value) is None


def _validate_nhs_number(value: str) -> str:
    problem = nhs_number_problem(value)
    if problem:
        raise ValueError(problem)
    return value.replace(" ", "")


def _validate_ods(value: str) -> str:
    if not _ODS_RE.match(value):
        raise ValueError("an ODS code is 3 to 9 uppercase letters and digits (organisations up to 8, sites up to 9)")
    return value


def _validate_org_ods(value: str) -> str:
    _validate_ods(value)
    if len(value) > 8:
        raise ValueError("an organisation ODS code is at most 8 characters (9 is a site code)")
    return value


def _validate_reference(value: str) -> str:
    if not _REF_RE.match(value):
        raise ValueError(
            "a reference is 2 to 64 characters: letters, digits and . _ : / -, starting with a letter or digit"
        )
    return value


NhsNumber = Annotated[
    str,
    AfterValidator(_validate_nhs_number),
    Field(
        description="NHS number: 10 digits with a valid Modulus 11 check digit. Stays in referrals and placements.",
        examples=["9434765919"],
        json_schema_extra={"pattern": r"^\d{3} ?\d{3} ?\d{4}$"},
    ),
]
"""A patient's NHS number, validated with the Modulus 11 check."""

OdsCode = Annotated[
    str,
    AfterValidator(_validate_ods),
    Field(
        description="ODS code of an organisation or site: 3-9 uppercase letters and digits",
        examples=["RH802"],
        json_schema_extra={"pattern": r"^[A-Z0-9]{3,9}$"},
    ),
]
OrgCode = Annotated[
    str,
    AfterValidator(_validate_org_ods),
    Field(
        description="ODS code of an organisation (commissioner or provider): 3-8 uppercase letters and digits",
        examples=["QWU"],
        json_schema_extra={"pattern": r"^[A-Z0-9]{3,8}$"},
    ),
]
Reference = Annotated[
    str,
    AfterValidator(_validate_reference),
    Field(
        description="An identifier chosen by the sending system, unique within its kind",
        examples=["PLC-2026-000123"],
        json_schema_extra={"pattern": r"^[A-Za-z0-9][A-Za-z0-9._:/-]{1,63}$"},
    ),
]
Pence = Annotated[
    int,
    Field(
        strict=True,
        ge=0,
        le=10**13,
        description="Money in integer pence (never a float, never negative)",
        examples=[54500],
    ),
]
SignedPence = Annotated[
    int,
    Field(strict=True, description="Money in integer pence; negative means in the other direction"),
]
PatientRef = Annotated[
    str,
    StringConstraints(pattern=r"^pt_[0-9a-f]{32}$"),
    Field(
        description="Pseudonymous patient reference: a keyed hash of the NHS number, never reversible without the key",
        examples=["pt_3f2a9c1e5b7d4a6f8e0c2b4d6f8a0c1e"],
    ),
]
BasisPoints = Annotated[
    int,
    Field(strict=True, ge=1, le=10_000, description="A share in basis points: 10000 = 100%", examples=[5000]),
]
FinancialYear = Annotated[
    str,
    StringConstraints(pattern=r"^\d{4}-\d{2}$"),
    Field(
        description="NHS financial year, 1 April to 31 March, written as 2026-27",
        examples=["2026-27"],
    ),
]


EARLIEST_DATE = dt.date(1990, 1, 1)
LATEST_PLAN_DATE = dt.date(2100, 12, 31)
MAX_FUTURE_DAYS_ENV = "HOMEWARD_CONTRACTS_MAX_FUTURE_DAYS"


def latest_fact_date() -> dt.date:
    """The latest date a fact may carry: today (UTC) plus the configured days (default 366)."""
    days = int(os.environ.get(MAX_FUTURE_DAYS_ENV, "366"))
    return dt.datetime.now(dt.UTC).date() + dt.timedelta(days=days)


def _validate_fact_date(value: dt.date) -> dt.date:
    if value < EARLIEST_DATE:
        raise ValueError(f"must not be before {EARLIEST_DATE.isoformat()}")
    if value > latest_fact_date():
        raise ValueError(f"must not be more than {os.environ.get(MAX_FUTURE_DAYS_ENV, '366')} days ahead")
    return value


def _validate_fact_datetime(value: dt.datetime) -> dt.datetime:
    _validate_fact_date(value.astimezone(dt.UTC).date())
    return value


def _validate_plan_date(value: dt.date) -> dt.date:
    if not EARLIEST_DATE <= value <= LATEST_PLAN_DATE:
        raise ValueError(f"must be between {EARLIEST_DATE.isoformat()} and {LATEST_PLAN_DATE.isoformat()}")
    return value


_FACT_BOUNDS = "Not before 1990-01-01, nor more than 366 days (configurable) after the day it is validated."
FactDate = Annotated[dt.date, AfterValidator(_validate_fact_date), Field(description=_FACT_BOUNDS)]
"""The date something happened (a start, an end, a review, an invoice period)."""
FactDatetime = Annotated[AwareDatetime, AfterValidator(_validate_fact_datetime), Field(description=_FACT_BOUNDS)]
PlanDate = Annotated[
    dt.date,
    AfterValidator(_validate_plan_date),
    Field(description="A planned or due date: between 1990-01-01 and 2100-12-31."),
]
