"""Money for people, the same in the CLI, the main job's summary and the status page."""

from __future__ import annotations

from typing import Any


def pounds(p: Any, *, pennies: bool = False) -> str:
    """Pounds from integer pence: "£1,234" (or "£1,234.56" with ``pennies``), "−£95" for
    an overspend, "–" when unknown. Whole pounds are truncated toward zero."""
    if not isinstance(p, int) or isinstance(p, bool):
        return "–"
    sign = "−" if p < 0 else ""
    whole = f"{sign}£{abs(p) // 100:,}"
    return f"{whole}.{abs(p) % 100:02d}" if pennies else whole
