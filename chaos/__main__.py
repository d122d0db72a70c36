"""`make chaos`: the fault campaign on a private stack (docs/chaos.md).

    uv run --frozen python -m chaos                      # 100,000 partner events
    uv run --frozen python -m chaos --events 2000 --seed 7
    uv run --frozen python -m chaos --ci                 # the size `make test` runs

Exit status 0 when nothing was lost or doubled, every bad record was dead-lettered once with
a reason, and nothing is stuck; 1 otherwise; 2 if the campaign itself could not run.
"""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from .campaign import Options, run
from .stack import PORTS, free_ports

CI = {"events": 200, "kills_per_service": 2, "generated_bad": 25, "gap_s": (0.5, 2.0)}

app = typer.Typer(add_completion=False)


def _port_help(name: str) -> str:
    return f"the private stack's {name} port (default {PORTS[name]}, or a free one if taken)"


@app.command(help=__doc__)
def campaign(
    events: Annotated[int, typer.Option(help="partner events to play, about")] = 100_000,
    seed: Annotated[int, typer.Option()] = 14,
    kills: Annotated[int, typer.Option(help="kill -9s of each service")] = 3,
    generated: Annotated[int, typer.Option(help="hypothesis-generated bad records")] = 60,
    smtp_outage: Annotated[float, typer.Option(help="seconds SMTP is stopped")] = 30.0,
    ci: Annotated[
        bool, typer.Option("--ci", help="the small run `make test` makes (a few minutes on 2 cores)")
    ] = False,
    keep: Annotated[bool, typer.Option("--keep", help="keep the private stack's data afterwards")] = False,
    kafka_port: Annotated[int | None, typer.Option(help=_port_help("kafka"))] = None,
    controller_port: Annotated[int | None, typer.Option(help=_port_help("controller"))] = None,
    postgres_port: Annotated[int | None, typer.Option(help=_port_help("postgres"))] = None,
    smtp_port: Annotated[int | None, typer.Option(help=_port_help("smtp"))] = None,
    web_port: Annotated[int | None, typer.Option(help=_port_help("web"))] = None,
) -> None:
    given = {
        "kafka": kafka_port,
        "controller": controller_port,
        "postgres": postgres_port,
        "smtp": smtp_port,
        "web": web_port,
    }
    assert set(given) == set(PORTS), "a port of the private stack has no option"
    ports = None
    if any(p is not None for p in given.values()):
        chosen = free_ports()
        ports = {name: given[name] or chosen[name] for name in PORTS}
    options = Options(
        events=events,
        seed=seed,
        kills_per_service=kills,
        generated_bad=generated,
        smtp_outage_s=smtp_outage,
        keep=keep,
        ports=ports,
    )
    if ci:
        for k, v in CI.items():
            setattr(options, k, v)
    report = run(options)
    typer.echo(report.table())
    raise typer.Exit(0 if report.passed else 1)


def main(argv: list[str] | None = None) -> int:
    """Run the campaign with ``argv`` (default: the command line); returns the exit status."""
    try:
        app(args=argv, prog_name="python -m chaos")
    except SystemExit as done:
        return done.code if isinstance(done.code, int) else 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
