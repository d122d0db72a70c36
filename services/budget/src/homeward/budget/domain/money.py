"""Money is integer pence. Pooled costs are split across funders by the largest-remainder method.

Each funder first gets the whole pence of its exact share (``amount * basis_points // 10000``).
The few pence left over (fewer than the number of funders) go one each to the funders with
the largest fractional remainders; ties go to the larger share, then to the ODS code that
sorts first. The parts always add up to the amount: no penny is lost or invented.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

BASIS_POINTS = 10_000


@dataclass(frozen=True, order=True)
class Share:
    funder: str
    basis_points: int


def funding_shares(shares: Sequence[tuple[str, int]], default_funder: str) -> tuple[Share, ...]:
    """Validated shares in ODS-code order; none means the default funder pays 100%."""
    if not shares:
        return (Share(default_funder, BASIS_POINTS),)
    out = tuple(sorted(Share(f, bp) for f, bp in shares))
    if sum(s.basis_points for s in out) != BASIS_POINTS:
        raise ValueError("funding shares must add up to 10000 basis points")
    if len({s.funder for s in out}) != len(out):
        raise ValueError("each funder may appear only once")
    if any(s.basis_points <= 0 for s in out):
        raise ValueError("each share must be positive")
    return out


def split_pence(amount: int, shares: Sequence[Share]) -> dict[str, int]:
    """Split ``amount`` (may be negative: the split of ``-amount``, negated) exactly across the shares."""
    if amount < 0:
        return {f: -v for f, v in split_pence(-amount, shares).items()}
    parts = {s.funder: amount * s.basis_points // BASIS_POINTS for s in shares}
    left = amount - sum(parts.values())
    order = sorted(shares, key=lambda s: (-(amount * s.basis_points % BASIS_POINTS), -s.basis_points, s.funder))
    for s in order[:left]:
        parts[s.funder] += 1
    return parts
