"""The developers' commands (``python -m chaos``, ``python -m benchmarks``,
``python -m benchmarks.budget_stage``) are typer apps like every Homeward CLI: each option
reaches the code it drives. The campaign and the benchmarks themselves are replaced by
recorders here; they are run by ``make chaos`` and ``make bench`` (tests/test_chaos.py runs the
campaign)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import benchmarks.__main__ as bench_main
import benchmarks.budget_stage as budget_stage
import benchmarks.e2e as bench_e2e
import chaos.__main__ as chaos_main


class FakeReport:
    def __init__(self, passed: bool) -> None:
        self.passed = passed

    def table(self) -> str:
        return "the report's table"


def test_chaos_options_reach_the_campaign(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    seen: list[Any] = []
    monkeypatch.setattr(chaos_main, "run", lambda options: seen.append(options) or FakeReport(True))
    monkeypatch.setattr(chaos_main, "free_ports", lambda: dict.fromkeys(chaos_main.PORTS, 40000))
    assert chaos_main.main(["--events", "500", "--seed", "3", "--kills", "1", "--smtp-outage", "5", "--keep"]) == 0
    options = seen[-1]
    assert (options.events, options.seed, options.kills_per_service, options.smtp_outage_s) == (500, 3, 1, 5.0)
    assert options.keep is True and options.ports is None and options.generated_bad == 60
    assert "the report's table" in capsys.readouterr().out

    assert chaos_main.main(["--ci", "--postgres-port", "55999"]) == 0
    options = seen[-1]
    for key, value in chaos_main.CI.items():
        assert getattr(options, key) == value
    assert options.ports == {**dict.fromkeys(chaos_main.PORTS, 40000), "postgres": 55999}


def test_chaos_exits_1_when_the_campaign_fails_and_2_on_a_bad_option(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(chaos_main, "run", lambda options: FakeReport(False))
    assert chaos_main.main([]) == 1
    assert chaos_main.main(["--events", "many"]) == 2


def test_benchmark_stages_and_sizes(monkeypatch: pytest.MonkeyPatch) -> None:
    ran: list[tuple[Any, ...]] = []
    for name in ("bench_contracts", "bench_memory", "bench_consumer", "bench_budget_stage"):
        monkeypatch.setattr(bench_main, name, lambda name=name: ran.append((name,)))
    monkeypatch.setattr(bench_e2e, "bench_producer", lambda n: ran.append(("producer", n)))
    monkeypatch.setattr(bench_e2e, "bench_e2e", lambda n, keep_logs: ran.append(("e2e", n, keep_logs)))
    monkeypatch.setattr(bench_e2e, "bench_steady", lambda r, s, keep_logs: ran.append(("steady", r, s, keep_logs)))

    def bench(*args: str) -> int:
        with pytest.raises(SystemExit) as done:
            bench_main.main(list(args))
        return int(done.value.code or 0)

    assert bench("e2e", "steady", "--placements", "2000", "--rate", "50", "--seconds", "3", "--keep-logs") == 0
    assert ran == [("e2e", 2000, True), ("steady", 50.0, 3.0, True)]
    ran.clear()
    assert bench("e2e", "--size", "1m") == 0
    assert ran == [("e2e", bench_e2e.SIZES["1m"], False)]
    ran.clear()
    assert bench() == 0
    assert [r[0] for r in ran] == [
        "bench_contracts", "bench_memory", "bench_consumer", "producer", "bench_budget_stage", "e2e", "steady"
    ]  # fmt: skip
    assert ran[3] == ("producer", 2000) and ran[5] == ("e2e", bench_e2e.SIZES["national"], False)
    ran.clear()
    assert bench("nope") == 2
    assert bench("e2e", "--size", "1m", "--placements", "10") == 2
    assert bench("e2e", "--size", "huge") == 2
    assert ran == []


def test_budget_stage_options(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[tuple[Any, ...]] = []
    monkeypatch.setattr(budget_stage, "bench_budget", lambda *args: seen.append(args))
    with pytest.raises(SystemExit) as done:
        budget_stage.main(["--placements", "10", "--layouts", "1 consumer", "--no-baseline", "--profile", "out.prof"])
    assert done.value.code == 0
    assert seen == [(10, 42, 500, ("1 consumer",), False, 2, 7, "out.prof")]
