"""Tables as the pages show them and as their CSV downloads give them: one definition each."""

from __future__ import annotations

import csv
import datetime as dt
import io
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from homeward.cli.formatting import pounds


@dataclass(frozen=True)
class Column:
    key: str
    label: str
    kind: str = "text"  # text, number, money (pence), date, percent, level, yesno
    numeric: bool = False
    # The CSV takes this key instead, as it stands (a value already made plain for spreadsheets).
    csv_key: str | None = None

    @property
    def right(self) -> bool:
        return self.numeric or self.kind in ("number", "money", "percent", "level")


@dataclass
class Table:
    id: str
    caption: str
    columns: Sequence[Column]
    rows: list[dict[str, Any]] = field(default_factory=list)
    empty: str = "None."
    # Rows that head a group (a total, say) are shown in bold.
    note: str | None = None

    def cell(self, column: Column, row: dict[str, Any]) -> str:
        return display(column.kind, row.get(column.key))

    def csv(self) -> str:
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow([csv_heading(c) for c in self.columns])
        for row in self.rows:
            writer.writerow(
                [
                    csv_value("text", row.get(c.csv_key)) if c.csv_key else csv_value(c.kind, row.get(c.key))
                    for c in self.columns
                ]
            )
        return out.getvalue()


def display(kind: str, value: Any) -> str:
    if value is None or value == "":
        return "–"
    if kind == "money":
        return pounds(value, pennies=True)
    if kind == "number" and isinstance(value, int | float):
        return f"{value:,}"
    if kind == "percent":
        return f"{value}%"
    if kind == "date":
        try:
            return dt.date.fromisoformat(str(value)[:10]).strftime("%-d %b %Y")
        except ValueError:
            return str(value)
    if kind == "yesno":
        return "yes" if value else "no"
    if kind == "level":
        return f"level {value}"
    return str(value)


def csv_heading(column: Column) -> str:
    return f"{column.label} (£)" if column.kind == "money" else column.label


def csv_value(kind: str, value: Any) -> str:
    """Plain values for spreadsheets: money in pounds with pence (from integer pence), ISO dates."""
    if value is None:
        return ""
    if kind == "money" and isinstance(value, int) and not isinstance(value, bool):
        sign = "-" if value < 0 else ""
        return f"{sign}{abs(value) // 100}.{abs(value) % 100:02d}"
    if kind == "yesno":
        return "yes" if value else "no"
    return str(value)
