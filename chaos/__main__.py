"""`make chaos`: the fault campaign on a private stack (docs/chaos.md).

    uv run --frozen python -m chaos                      # 100,000 partner events
    uv run --frozen python -m chaos --events 2000 --seed 7
    uv run --frozen python -m chaos --ci                 # the size `make test` runs

Exit status 0 when nothing was lost or doubled, every bad record was dead-lettered once with
a reason, and nothing is stuck; 1 otherwise; 2 if the campaign itself could not run.
"""

from __future__ import annotations

import argparse
import sys

from .campaign import Options, run
from .stack import PORTS, free_ports

CI = {"events": 200, "kills_per_service": 2, "generated_bad": 25, "gap_s": (0.5, 2.0)}


def _ports(args: argparse.Namespace) -> dict[str, int]:
    chosen = free_ports()
    return {name: getattr(args, f"{name}_port") or chosen[name] for name in PORTS}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m chaos", description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    p.add_argument("--events", type=int, default=100_000, help="partner events to play, about (default 100000)")
    p.add_argument("--seed", type=int, default=14)
    p.add_argument("--kills", type=int, default=3, help="kill -9s of each service (default 3)")
    p.add_argument("--generated", type=int, default=60, help="hypothesis-generated bad records (default 60)")
    p.add_argument("--smtp-outage", type=float, default=30.0, help="seconds SMTP is stopped (default 30)")
    p.add_argument("--ci", action="store_true", help="the small run `make test` makes (a few minutes on 2 cores)")
    p.add_argument("--keep", action="store_true", help="keep the private stack's data afterwards")
    for name, port in PORTS.items():
        p.add_argument(
            f"--{name}-port", type=int, help=f"the private stack's {name} port (default {port}, or a free one if taken)"
        )
    args = p.parse_args(argv)
    options = Options(
        events=args.events,
        seed=args.seed,
        kills_per_service=args.kills,
        generated_bad=args.generated,
        smtp_outage_s=args.smtp_outage,
        keep=args.keep,
        ports=None if all(getattr(args, f"{n}_port") is None for n in PORTS) else _ports(args),
    )
    if args.ci:
        for k, v in CI.items():
            setattr(options, k, v)
    report = run(options)
    print(report.table())
    return 0 if report.passed else 1


if __name__ == "__main__":
    sys.exit(main())
