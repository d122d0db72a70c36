"""The NHS out-of-area measures computed from the generated partner events alone.

A second, plain implementation from DOMAIN.md ("Published measures") and docs/placements.md
("NHS measures"), day by day, not from the service's code: the end-to-end test compares the
placements service's ``GET /measures`` (and the staff page) with it.
"""

from __future__ import annotations

import datetime as dt
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from homeward.contracts.events import PlacementMade

from homeward.scenario import Scenario

from .oracle import World

DAY = dt.timedelta(days=1)


def _facts(sc: Scenario) -> dict[str, tuple[str | None, int | None]]:
    """Placement id -> (reason code, distance in km) as the PlacementMade stated them."""
    out: dict[str, tuple[str | None, int | None]] = {}
    for _, e in sc.events:
        d = e.data
        if isinstance(d, PlacementMade):
            reason = d.out_of_area_reason.value if d.out_of_area_reason else None
            out[d.placement_id] = (reason, d.distance_from_home_km)
    return out


def _los_band(nights: int) -> str:
    if nights <= 7:
        return "1-7"
    if nights <= 14:
        return "8-14"
    if nights <= 30:
        return "15-30"
    if nights <= 90:
        return "31-90"
    return "91+"


def _distance_band(km: int | None) -> str:
    if km is None:
        return "unknown"
    for limit, label in ((25, "<25"), (50, "25-50"), (100, "50-100"), (200, "100-200"), (300, "200-300")):
        if km < limit:
            return label
    return "300+"


def measures(world: World, sc: Scenario, first: dt.date, last: dt.date, as_of: dt.date) -> dict[str, dict[str, Any]]:
    """Commissioner -> figures for the days ``first`` to ``last`` as known on ``as_of``."""
    facts = _facts(sc)
    end = min(last, as_of)
    out: dict[str, dict[str, Any]] = {}
    for p in world.placements.values():
        if not p.out_of_area:
            continue
        reason, km = facts[p.id]
        days_present = []
        day = first
        while day <= end:
            if p.active_on(day):
                days_present.append(day)
            day += DAY
        nights = [d for d in days_present if d < as_of and d <= last]
        started = first <= p.start <= end
        ended = p.end is not None and first <= p.end <= end
        if not (days_present or started or ended):
            continue
        m = out.setdefault(
            p.commissioner,
            {
                "active_at_end": 0,
                "started": 0,
                "ended": 0,
                "oap_days": 0,
                "total_cost_pence": 0,
                "inappropriate_active_at_end": 0,
                "inappropriate_oap_days": 0,
                "length_of_stay": {},
                "distance": {},
                "reasons": {},
            },
        )
        cost = sum(p.rate_on(n) for n in nights)
        m["active_at_end"] += p.active_on(end)
        m["started"] += started
        m["ended"] += ended
        m["oap_days"] += len(nights)
        m["total_cost_pence"] += cost
        if reason == "10":
            m["inappropriate_active_at_end"] += p.active_on(end)
            m["inappropriate_oap_days"] += len(nights)
        if ended:
            assert p.end is not None
            band = _los_band((p.end - p.start).days)
            m["length_of_stay"][band] = m["length_of_stay"].get(band, 0) + 1
        if days_present:
            band = _distance_band(km)
            m["distance"][band] = m["distance"].get(band, 0) + 1
            code = reason or "not stated"
            m["reasons"][code] = m["reasons"].get(code, 0) + 1
    for m in out.values():
        m["average_daily_cost_pence"] = (
            int((Decimal(m["total_cost_pence"]) / m["oap_days"]).quantize(Decimal(1), ROUND_HALF_UP))
            if m["oap_days"]
            else None
        )
    return out


def as_reported(api: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The API's answer in the oracle's shape (non-zero bands only), for one comparison."""
    out = {}
    for code, m in api["commissioners"].items():
        out[code] = {
            **{k: m["all"][k] for k in ("active_at_end", "started", "ended", "oap_days", "total_cost_pence")},
            "average_daily_cost_pence": m["all"]["average_daily_cost_pence"],
            "inappropriate_active_at_end": m["inappropriate"]["active_at_end"],
            "inappropriate_oap_days": m["inappropriate"]["oap_days"],
            "length_of_stay": {k: v for k, v in m["length_of_stay"].items() if v},
            "distance": {k: v for k, v in m["distance"].items() if v},
            "reasons": {k: v["placements"] for k, v in m["by_reason"].items() if v["placements"]},
        }
    return out
