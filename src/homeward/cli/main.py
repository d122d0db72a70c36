"""`homeward`: the command line for partner developers, staff and operators.

Output is for people by default, or JSON with ``--json``.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from homeward.contracts import ContractError, Event, Payload, parse_json, partner_topic, source_organisation
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from .access import audit as audit_command
from .access import token as token_command
from .api import err
from .api import get as _get
from .dlq import dlq_app
from .formatting import pounds
from .lag import lag as lag_command
from .measures import measures as measures_command
from .parked import parked as parked_command
from .partner import partner_app
from .sending import produce_events, send_scenario

app = typer.Typer(help="Homeward: bring people placed out of area home.", no_args_is_help=True)
console = Console()
JsonFlag = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table")]


def _read_events(path: Path) -> list[tuple[int, bytes]]:
    """One event per file, or one per line (JSON Lines); returns (line number, bytes)."""
    text = path.read_bytes()
    stripped = text.strip()
    if stripped.startswith(b"{") and b"\n{" not in stripped:
        return [(1, stripped)]
    return [(i, line) for i, line in enumerate(text.splitlines(), 1) if line.strip()]


@app.command()
def validate(
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="An event as JSON, or JSON Lines")],
    json_out: JsonFlag = False,
) -> None:
    """Check events against the contracts; each problem names its field."""
    results: list[dict[str, Any]] = []
    for line, raw in _read_events(file):
        try:
            event = parse_json(raw)
            results.append({"line": line, "valid": True, "id": event.id, "type": event.type, "key": event.key})
        except ContractError as exc:
            results.append(
                {
                    "line": line,
                    "valid": False,
                    "reason": exc.kind,
                    "message": exc.message,
                    "problems": [{"field": p.field, "problem": p.problem} for p in exc.problems],
                }
            )
    bad = [r for r in results if not r["valid"]]
    if json_out:
        console.print_json(json.dumps({"valid": not bad, "events": results}))
    else:
        for r in results:
            if r["valid"]:
                console.print(f"[green]✓[/] line {r['line']}: {r['type']} {r['id']} (key {r['key']})")
            else:
                console.print(f"[red]✗[/] line {r['line']}: {escape(r['message'])} ({r['reason']})")
                for p in r["problems"]:
                    console.print(f"    [bold]{escape(p['field'])}[/]: {escape(p['problem'])}")
        console.print(f"{len(results) - len(bad)} valid, {len(bad)} invalid")
    raise typer.Exit(1 if bad else 0)


@app.command()
def emit(
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False)],
    as_: Annotated[str, typer.Option("--as", help="Your organisation's ODS code: writes to partner.<ODS>.events")],
    bootstrap: Annotated[
        str | None, typer.Option(help="Kafka bootstrap servers (default from HOMEWARD_KAFKA_*)")
    ] = None,
    json_out: JsonFlag = False,
) -> None:
    """Validate events and produce them onto your partner topic (nothing is sent if any is invalid)."""
    from homeward.kit.settings import KafkaSettings

    events: list[Event[Payload]] = []
    for line, raw in _read_events(file):
        try:
            events.append(parse_json(raw))
        except ContractError as exc:
            err.print(f"[red]line {line}: {exc}[/]")
            raise typer.Exit(1) from exc
    ods = as_.upper()
    for e in events:
        if source_organisation(e.source) != ods:
            err.print(f"[red]event {e.id}: source {e.source!r} is not urn:nhs:ods:{ods}; it would be dead-lettered[/]")
            raise typer.Exit(1)
    settings = KafkaSettings(**({"bootstrap_servers": bootstrap} if bootstrap else {}))  # type: ignore[arg-type]
    topic = settings.topic_namespace + partner_topic(ods)
    asyncio.run(produce_events(settings, [(topic, e) for e in events], progress=not json_out))
    if json_out:
        console.print_json(json.dumps({"topic": topic, "sent": [e.id for e in events]}))
    else:
        console.print(f"sent {len(events)} event(s) to {topic}")


def _table(rows: list[dict[str, Any]], columns: list[str], title: str) -> None:
    t = Table(title=title)
    for c in columns:
        t.add_column(c)
    for row in rows:
        t.add_row(*[_fmt(row.get(c)) for c in columns])
    console.print(t)


def _fmt(v: Any) -> str:
    if v is None:
        return ""
    return str(v)


app.add_typer(dlq_app, name="dlq")
app.add_typer(partner_app, name="partner")
app.command("lag")(lag_command)
app.command("token")(token_command)
app.command("measures")(measures_command)
app.command("audit")(audit_command)
app.command("parked")(parked_command)

placements_app = typer.Typer(help="The placement register: placements, overdue reviews, repatriations.")
app.add_typer(placements_app, name="placements")


@placements_app.command("list")
def placements_list(
    commissioner: Annotated[str | None, typer.Option()] = None,
    out_of_area: Annotated[bool | None, typer.Option("--out-of-area/--in-area")] = None,
    cohort: Annotated[str | None, typer.Option()] = None,
    bed_type: Annotated[str | None, typer.Option()] = None,
    as_of: Annotated[str | None, typer.Option(help="YYYY-MM-DD")] = None,
    json_out: JsonFlag = False,
) -> None:
    """Active placements."""
    params = {
        "commissioner": commissioner,
        "cohort": cohort,
        "bed_type": bed_type,
        "as_of": as_of,
        "out_of_area": None if out_of_area is None else str(out_of_area).lower(),
    }
    data = _get("placements", "/placements", params, org=commissioner, role="case-manager")
    rows = data.get("placements", data) if isinstance(data, dict) else data
    if json_out:
        console.print_json(json.dumps(data))
        return
    _table(
        rows,
        ["placement_id", "commissioner", "provider_site", "bed_type", "start_date", "out_of_area", "daily_rate_pence"],
        f"{len(rows)} active placement(s)",
    )


@placements_app.command("overdue")
def placements_overdue(
    commissioner: Annotated[str | None, typer.Option()] = None,
    as_of: Annotated[str | None, typer.Option()] = None,
    json_out: JsonFlag = False,
) -> None:
    """Reviews that are overdue."""
    data = _get(
        "placements",
        "/reviews/overdue",
        {"commissioner": commissioner, "as_of": as_of},
        org=commissioner,
        role="case-manager",
    )
    rows = data.get("reviews", data) if isinstance(data, dict) else data
    if json_out:
        console.print_json(json.dumps(data))
        return
    _table(
        rows,
        ["placement_id", "commissioner", "review_type", "due_date", "days_overdue"],
        f"{len(rows)} overdue review(s)",
    )


@placements_app.command("repatriations")
def placements_repatriations(
    from_: Annotated[str | None, typer.Option("--from")] = None,
    to: Annotated[str | None, typer.Option()] = None,
    commissioner: Annotated[str | None, typer.Option()] = None,
    json_out: JsonFlag = False,
) -> None:
    """People brought home in a period."""
    data = _get(
        "placements",
        "/repatriations",
        {"from": from_, "to": to, "commissioner": commissioner},
        org=commissioner,
        role="case-manager",
    )
    rows = data.get("repatriations", data) if isinstance(data, dict) else data
    if json_out:
        console.print_json(json.dumps(data))
        return
    _table(
        rows,
        [
            "from_placement_id",
            "to_placement_id",
            "commissioner",
            "repatriated_on",
            "from_daily_rate_pence",
            "to_daily_rate_pence",
        ],
        f"{len(rows)} repatriation(s)",
    )


@app.command()
def position(
    commissioner: Annotated[str, typer.Argument(help="Commissioner ODS code")],
    financial_year: Annotated[str | None, typer.Option(help="e.g. 2026-27")] = None,
    as_of: Annotated[str | None, typer.Option()] = None,
    json_out: JsonFlag = False,
) -> None:
    """A commissioner's budget position."""
    data = _get(
        "budget",
        f"/positions/{commissioner}",
        {"financial_year": financial_year, "as_of": as_of},
        org=commissioner,
        role="finance",
    )
    if json_out:
        console.print_json(json.dumps(data))
        return
    t = Table(title=f"{commissioner} budget position {data.get('financial_year', '')}")
    t.add_column("measure")
    t.add_column("value", justify="right")
    for k, v in data.items():
        if isinstance(v, int) and not isinstance(v, bool) and k.endswith("pence"):
            t.add_row(k.removesuffix("_pence").replace("_", " "), pounds(v, pennies=True))
        elif not isinstance(v, dict | list):
            t.add_row(k.replace("_", " "), _fmt(v))
    console.print(t)


@app.command()
def scenario(
    seed: Annotated[int, typer.Option(help="Same seed, same events")] = 42,
    commissioners: Annotated[int, typer.Option(help="3 is Coming Home; 42 is national scale")] = 3,
    providers: Annotated[int, typer.Option(help="Distant (independent) providers")] = 6,
    placements: Annotated[int, typer.Option(help="Referrals to simulate")] = 120,
    start: Annotated[str, typer.Option(help="First simulated day")] = "2023-04-01",
    as_of: Annotated[str, typer.Option(help="The scenario's today")] = "2026-11-20",
    out: Annotated[Path | None, typer.Option(help="Write JSON Lines (partner, event) here instead of sending")] = None,
    reference_out: Annotated[Path | None, typer.Option(help="Write the reference data YAML here")] = None,
    bootstrap: Annotated[str | None, typer.Option(help="Kafka bootstrap servers")] = None,
    json_out: JsonFlag = False,
) -> None:
    """Generate the Coming Home scenario and produce it onto the partners' topics (or to a file)."""
    from homeward.scenario import ScenarioConfig, generate

    config = ScenarioConfig(
        seed=seed,
        commissioners=commissioners,
        distant_providers=providers,
        placements=placements,
        start=dt.date.fromisoformat(start),
        as_of=dt.date.fromisoformat(as_of),
    )
    sc = generate(config)
    if reference_out:
        import yaml

        reference_out.write_text(yaml.safe_dump(sc.reference, sort_keys=False))
    if out is not None:
        with out.open("w") as fh:
            for partner, event in sc.events:
                fh.write(json.dumps({"partner": partner, "event": event.to_dict()}) + "\n")
    else:
        asyncio.run(send_scenario(sc, bootstrap))
    summary = {"events": len(sc.events), "partners": sc.partners, "by_type": sc.counts()}
    if json_out:
        console.print_json(json.dumps(summary))
    else:
        console.print(
            f"{len(sc.events)} events from {len(sc.partners)} partners: "
            + ", ".join(f"{k} {v}" for k, v in sorted(sc.counts().items()))
        )


@app.command()
def run(
    seed: Annotated[int, typer.Option()] = 42,
    commissioners: Annotated[int, typer.Option()] = 3,
    providers: Annotated[int, typer.Option()] = 6,
    placements: Annotated[int, typer.Option()] = 120,
    as_of: Annotated[str, typer.Option(help="The scenario's today")] = "2026-11-20",
    detach: Annotated[bool, typer.Option(help="Return after the summary, leaving everything running")] = False,
) -> None:
    """The main job: start the stack and the four services, play the scenario, print the outcome, keep running."""
    from .runner import main_job

    raise typer.Exit(
        main_job(
            seed=seed,
            commissioners=commissioners,
            providers=providers,
            placements=placements,
            as_of=dt.date.fromisoformat(as_of),
            detach=detach,
        )
    )


@app.command()
def stop() -> None:
    """Stop the four services started by `homeward run` (the stack keeps running; `make down` stops all)."""
    from .runner import stop_services

    stopped = stop_services()
    console.print(f"stopped {stopped} service process(es)")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(app())
