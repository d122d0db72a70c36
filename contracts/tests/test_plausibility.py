"""The plausibility bounds table: defaults for every bed type, overrides by row, bad files named."""

from __future__ import annotations

from pathlib import Path

import pytest
from homeward.contracts.plausibility import RateBounds, daily_rate_outside, load_bounds, parse_bounds, per_night
from homeward.contracts.vocab import BedType


def test_every_bed_type_has_default_bounds_around_the_domain_figures() -> None:
    bounds = load_bounds()
    assert set(bounds) == set(BedType)
    # DOMAIN.md: about £545 a day for an acute out-of-area bed, £350-364 for rehabilitation,
    # about £548 for secure care, over £3,000 a week for complex private placements.
    for bed, typical in (
        (BedType.ADULT_ACUTE, 54_500),
        (BedType.LOCKED_REHABILITATION, 36_400),
        (BedType.MEDIUM_SECURE, 54_800),
        (BedType.SUPPORTED_LIVING, 42_900),
    ):
        assert bounds[bed].admits(typical), bed
    assert daily_rate_outside(bounds, BedType.ADULT_ACUTE, 10_000_000_000) == bounds[BedType.ADULT_ACUTE]
    assert daily_rate_outside(bounds, "adult_acute", 5_450_000) is not None  # pounds typed as pence
    assert daily_rate_outside(bounds, BedType.ADULT_ACUTE, 545) is not None  # pence typed as pounds
    assert daily_rate_outside({}, BedType.ADULT_ACUTE, 10**12) is None  # no row, no bound


def test_a_file_replaces_the_rows_it_lists(tmp_path: Path) -> None:
    path = tmp_path / "bounds.csv"
    path.write_text("# ours\nbed_type,lower_pence,upper_pence\npicu,20000,500000\n")
    bounds = load_bounds(path)
    assert bounds[BedType.PICU] == RateBounds(20_000, 500_000)
    assert bounds[BedType.ADULT_ACUTE] == load_bounds()[BedType.ADULT_ACUTE]


@pytest.mark.parametrize(
    "text",
    [
        "bed_type,lower_pence,upper_pence\nspaceship,1,2\n",
        "bed_type,lower_pence,upper_pence\npicu,500,100\n",
        "bed_type,lower_pence,upper_pence\npicu,ten,100\n",
        "bed_type,lower\npicu,1\n",
    ],
)
def test_a_bad_row_is_refused_with_where_it_is(text: str) -> None:
    with pytest.raises(ValueError, match=r"ours\.csv: row 2"):
        parse_bounds(text, "ours.csv")


def test_per_night_rounds_down_and_never_divides_by_zero() -> None:
    assert per_night(1_000, 3) == 333
    assert per_night(1_000, 0) == 1_000
