"""Reading the review policy table from its file."""

from __future__ import annotations

from pathlib import Path

from ..domain import PolicyError, ReviewPolicy


def load_policy(path: Path) -> ReviewPolicy:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise PolicyError(f"cannot read the review policy {path}: {exc}") from exc
    return ReviewPolicy.from_csv(text, origin=path.name)
