"""The status page as a person sees it, rendered by headless Chromium."""

import threading
import time
from pathlib import Path
from typing import Any

import uvicorn
from homeward.testing import free_port

from homeward.cli import dashboard

from .browser import dump_dom, screenshot


def _summary() -> dict[str, Any]:
    return {
        "as_of": "2026-11-20",
        "financial_year": "2026-27",
        "placements": {"active_out_of_area": 17, "active_in_area": 9, "overdue_reviews": 4, "repatriations": 13},
        "positions": {
            "05A": {
                "allocated_pence": 1_250_000_00,
                "spent_pence": 734_512_34,
                "committed_pence": 400_000_00,
                "forecast_outturn_pence": 1_134_512_34,
                "headroom_pence": 115_487_66,
                "out_of_area_share_percent": 61,
                "savings_year_pence": 98_765_00,
            },
        },
        "notifications": {"sent": 42, "pending": 0, "failed": 0},
    }


def test_status_page_shows_the_figures_in_a_real_browser(monkeypatch: Any, tmp_path: Path) -> None:
    monkeypatch.setattr(dashboard, "fetch_summary", lambda commissioners, as_of: _summary())
    import datetime as dt

    app = dashboard.build_app(["05A"], dt.date(2026, 11, 20), "http://127.0.0.1:1080")
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        while not server.started:
            time.sleep(0.05)
        dom = dump_dom(f"http://127.0.0.1:{port}/")
        assert 'id="out-of-area"><b>17</b>placed out of area' in dom
        assert 'id="overdue"><b>4</b>overdue reviews' in dom
        assert 'id="repatriations"><b>13</b>brought home' in dom
        assert "£734,512" in dom and "£1,250,000" in dom
        assert 'href="http://127.0.0.1:1080"' in dom
        shot = screenshot(f"http://127.0.0.1:{port}/", tmp_path / "status.png")
        assert shot.stat().st_size > 10_000  # a real rendered page, not an empty image
    finally:
        server.should_exit = True
        thread.join(timeout=10)
