"""`homeward measures`: the NHS out-of-area placement measures, per commissioner, for a month
or a period, from the placements service's ``GET /measures``."""

from __future__ import annotations

import csv
import io
import json
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from .api import err
from .api import get as _get
from .formatting import pounds

console = Console()

HEADLINES = (
    ("active_at_end", "Active at the period's end"),
    ("started", "Placements started"),
    ("ended", "Placements ended"),
    ("oap_days", "OAP days"),
    ("total_cost_pence", "Total recorded cost"),
    ("average_daily_cost_pence", "Average daily cost"),
)


def measure_rows(data: dict[str, Any]) -> tuple[list[str], list[dict[str, Any]]]:
    """One flat row per commissioner (and one for the total): the columns of the CSV download
    and of ``--csv``. Money stays in pence, as the API gives it."""
    bands = data["bands"]
    columns = ["period", "from", "to", "measured_to", "commissioner"]
    columns += [k for k, _ in HEADLINES]
    columns += [f"inappropriate_{k}" for k, _ in HEADLINES]
    columns += ["appropriate_placements", "appropriate_oap_days"]
    columns += [f"length_of_stay_{b}" for b in bands["length_of_stay_nights"]]
    columns += [f"distance_km_{b}" for b in bands["distance_km"]]
    for code in bands["reason_codes"]:
        columns += [f"reason_{code}_placements", f"reason_{code}_oap_days"]
    rows = []
    p = data["period"]
    for code, m in [*data["commissioners"].items(), ("total", data["total"])]:
        row: dict[str, Any] = {
            "period": p["label"],
            "from": p["from"],
            "to": p["to"],
            "measured_to": p["measured_to"],
            "commissioner": code,
        }
        for k, _ in HEADLINES:
            row[k] = m["all"][k]
            row[f"inappropriate_{k}"] = m["inappropriate"][k]
        row["appropriate_placements"] = m["appropriate"]["placements"]
        row["appropriate_oap_days"] = m["appropriate"]["oap_days"]
        for b in bands["length_of_stay_nights"]:
            row[f"length_of_stay_{b}"] = m["length_of_stay"][b]
        for b in bands["distance_km"]:
            row[f"distance_km_{b}"] = m["distance"][b]
        for code_ in bands["reason_codes"]:
            row[f"reason_{code_}_placements"] = m["by_reason"][code_]["placements"]
            row[f"reason_{code_}_oap_days"] = m["by_reason"][code_]["oap_days"]
        rows.append(row)
    return columns, rows


def to_csv(columns: list[str], rows: list[dict[str, Any]]) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: "" if row.get(k) is None else row.get(k) for k in columns})
    return out.getvalue()


def _cell(key: str, value: Any) -> str:
    if value is None:
        return "–"
    return pounds(value, pennies=True) if key.endswith("_pence") else f"{value:,}"


def measures(
    month: Annotated[str | None, typer.Option(help="A calendar month, e.g. 2026-10")] = None,
    from_: Annotated[str | None, typer.Option("--from", help="First day of a period, YYYY-MM-DD")] = None,
    to: Annotated[str | None, typer.Option(help="Last day of a period, YYYY-MM-DD")] = None,
    commissioner: Annotated[str | None, typer.Option(help="ODS code(s), comma-separated")] = None,
    as_of: Annotated[str | None, typer.Option(help="Figures as known on this day (default: today)")] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print the API's JSON")] = False,
    csv_out: Annotated[bool, typer.Option("--csv", help="Print CSV, one row per commissioner and a total")] = False,
) -> None:
    """The NHS out-of-area placement measures for a month or a period, per commissioner."""

    if not month and not (from_ and to):
        err.print("[red]give --month YYYY-MM, or --from and --to[/]")
        raise typer.Exit(2)
    codes = [c.strip() for c in (commissioner or "").split(",") if c.strip()]
    data = _get(
        "placements",
        "/measures",
        {"month": month, "from": from_, "to": to, "commissioner": commissioner, "as_of": as_of},
        # Without $HOMEWARD_TOKEN on the native stack: as that commissioner, or as ops for all.
        **({"org": codes[0], "role": "commissioner"} if len(codes) == 1 else {}),
    )
    if json_out:
        console.print_json(json.dumps(data))
        return
    columns, rows = measure_rows(data)
    if csv_out:
        typer.echo(to_csv(columns, rows), nl=False)
        return
    p = data["period"]
    note = "" if p["complete"] else f" (to date: measured to {p['measured_to']})"
    t = Table(title=f"Out-of-area placements, {p['label']}{note}", title_justify="left")
    t.add_column("Measure")
    codes = [*data["commissioners"], "total"]
    for code in codes:
        t.add_column(code, justify="right")
    by = {**data["commissioners"], "total": data["total"]}
    for key, label in HEADLINES:
        t.add_row(label, *(_cell(key, by[c]["all"][key]) for c in codes))
    for key, label in HEADLINES:
        t.add_row(f"  inappropriate: {label.lower()}", *(_cell(key, by[c]["inappropriate"][key]) for c in codes))
    for b in data["bands"]["length_of_stay_nights"]:
        t.add_row(f"Completed stays of {b} nights", *(_cell("", by[c]["length_of_stay"][b]) for c in codes))
    for b in data["bands"]["distance_km"]:
        t.add_row(f"Distance from home {b} km", *(_cell("", by[c]["distance"][b]) for c in codes))
    for code in data["bands"]["reason_codes"]:
        t.add_row(f"Reason {code}: placements", *(_cell("", by[c]["by_reason"][code]["placements"]) for c in codes))
    console.print(t)
    console.print(
        "  Inappropriate: out of area for lack of a local bed (reason 10). Distance and reason rows count the "
        "placements active on some day of the period."
    )
