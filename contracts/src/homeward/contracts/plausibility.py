"""Plausibility bounds for daily rates, per bed type: policy as data (``daily_rate_bounds.csv``).

A rate outside its bed type's bounds is not refused: it may be right (a one-to-one package, a
correction), but it is more often a slip (pounds typed as pence, an extra zero) or an attempt to
charge what was never agreed. So the services hold it, alert finance and post it only once the
commissioner confirms it (docs/authority.md). Partners see the same table in the partner guide.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from .vocab import BedType

DEFAULT_BOUNDS_FILE = Path(__file__).with_name("daily_rate_bounds.csv")


@dataclass(frozen=True)
class RateBounds:
    lower_pence: int
    upper_pence: int

    def __post_init__(self) -> None:
        if not 0 <= self.lower_pence <= self.upper_pence:
            raise ValueError(f"bounds must satisfy 0 <= lower <= upper, got {self.lower_pence}..{self.upper_pence}")

    def admits(self, daily_pence: int) -> bool:
        return self.lower_pence <= daily_pence <= self.upper_pence


def parse_bounds(text: str, where: str = "bounds") -> dict[BedType, RateBounds]:
    """Rows of ``bed_type,lower_pence,upper_pence[,basis]``; lines starting with ``#`` are comments."""
    lines = [line for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    out: dict[BedType, RateBounds] = {}
    for n, row in enumerate(csv.DictReader(io.StringIO("\n".join(lines))), start=2):
        try:
            out[BedType(row["bed_type"].strip())] = RateBounds(int(row["lower_pence"]), int(row["upper_pence"]))
        except (KeyError, ValueError, TypeError, AttributeError) as exc:
            raise ValueError(f"{where}: row {n} is not bed_type,lower_pence,upper_pence: {exc}") from None
    return out


def load_bounds(path: str | Path | None = None) -> dict[BedType, RateBounds]:
    """The default table, with the rows of ``path`` (if given) replacing those of their bed types.
    A bed type with no row anywhere has no bounds (every rate is plausible)."""
    bounds = parse_bounds(DEFAULT_BOUNDS_FILE.read_text(encoding="utf-8"), str(DEFAULT_BOUNDS_FILE))
    if path:
        bounds.update(parse_bounds(Path(path).read_text(encoding="utf-8"), str(path)))
    return bounds


def daily_rate_outside(
    bounds: Mapping[BedType, RateBounds], bed_type: BedType | str, daily_pence: int
) -> RateBounds | None:
    """The bounds ``daily_pence`` falls outside, or None when it is plausible (or unbounded)."""
    b = bounds.get(BedType(bed_type))
    return None if b is None or b.admits(daily_pence) else b


def per_night(amount_pence: int, nights: int) -> int:
    """An invoice's amount per invoiced night, rounded down (an empty period counts as one night)."""
    return amount_pence // max(nights, 1)
