"""``python -m homeward.ingress.entrypoints.openapi`` (typer): ``--write`` refreshes the committed
copy, ``--check`` (the default) fails on a stale one, and outside a checkout it says so."""

from __future__ import annotations

from pathlib import Path

import pytest
from homeward.ingress.entrypoints import openapi


def test_write_then_check_then_stale(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:  # type: ignore[no-untyped-def]
    copy = tmp_path / "openapi-ingress.json"
    monkeypatch.setattr(openapi, "committed_path", lambda: copy)
    assert openapi.main(["--check"]) == 1
    assert "stale" in capsys.readouterr().err
    assert openapi.main(["--write"]) == 0
    assert copy.read_text() == openapi.rendered()
    assert openapi.main([]) == 0 and openapi.main(["--check"]) == 0
    copy.write_text(copy.read_text().replace("1.0.0", "0.9.0", 1))
    assert openapi.main([]) == 1


def test_outside_a_checkout(monkeypatch: pytest.MonkeyPatch, capsys) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setattr(openapi, "committed_path", lambda: None)
    assert openapi.main(["--write"]) == 2
    assert "no source checkout" in capsys.readouterr().err
    assert openapi.main(["--bogus"]) == 2
