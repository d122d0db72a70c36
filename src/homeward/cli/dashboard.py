"""A small status page: the same figures as the main job's summary, read from the services'
HTTP APIs on each request. ``python -m homeward.cli.dashboard`` serves it on 127.0.0.1:8080.

It shows overview figures only (counts and budget positions, no patient references) and reads
them as ops, with a five-minute token signed by the checkout's local key on each request
(``runner.fetch_summary``): the local operator's page, listening on loopback only. Staff views
of people are signed in as the member of staff (docs/staff-access.md)."""

from __future__ import annotations

import datetime as dt
import html
import os
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse
from starlette.routing import Route

from .formatting import pounds
from .runner import DASHBOARD_PORT, fetch_summary


def _money(p: Any) -> str:
    return html.escape(pounds(p))


def _percent(value: Any) -> str:
    return "&ndash;" if value is None else f"{html.escape(str(value))}%"


def render(summary: dict[str, Any], mail_url: str) -> str:
    p = summary["placements"]
    n = summary["notifications"]
    rows = "".join(
        f"<tr><th scope=row>{html.escape(c)}</th><td>{_money(pos.get('allocated_pence'))}</td>"
        f"<td>{_money(pos.get('spent_pence'))}</td><td>{_money(pos.get('committed_pence'))}</td>"
        f"<td>{_money(pos.get('forecast_outturn_pence'))}</td><td>{_money(pos.get('headroom_pence'))}</td>"
        f"<td>{_percent(pos.get('out_of_area_share_percent'))}</td>"
        f"<td>{_money(pos.get('savings_year_pence'))}</td></tr>"
        for c, pos in summary["positions"].items()
    )
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Homeward status</title>
<style>
body{{font-family:system-ui,sans-serif;margin:2rem;color:#212b32;background:#f0f4f5}}
h1{{color:#005eb8}} .cards{{display:flex;gap:1rem;flex-wrap:wrap}}
.card{{background:#fff;padding:1rem 1.5rem;border-left:6px solid #005eb8;min-width:12rem}}
.card b{{display:block;font-size:2rem}} table{{border-collapse:collapse;background:#fff;margin-top:1rem}}
td,th{{padding:.4rem .8rem;border-bottom:1px solid #d8dde0;text-align:right}} th{{text-align:left}}
</style></head><body>
<h1>Homeward</h1><p>As of <time id=as-of>{html.escape(summary["as_of"])}</time>,
financial year {html.escape(summary["financial_year"])}</p>
<div class=cards>
<div class=card id=out-of-area><b>{p.get("active_out_of_area", "–")}</b>placed out of area</div>
<div class=card id=in-area><b>{p.get("active_in_area", "–")}</b>placed in area</div>
<div class=card id=overdue><b>{p.get("overdue_reviews", "–")}</b>overdue reviews</div>
<div class=card id=repatriations><b>{p.get("repatriations", "–")}</b>brought home</div>
<div class=card id=emails><b>{n.get("sent", "–")}</b>emails sent</div>
</div>
<h2>Budget positions</h2>
<table id=positions><thead><tr><th>Commissioner</th><th>Allocated</th><th>Spent</th><th>Committed</th>
<th>Forecast outturn</th><th>Headroom</th><th>Out of area</th><th>Savings (year)</th></tr></thead>
<tbody>{rows}</tbody></table>
<p>Staff emails: <a href="{html.escape(mail_url)}">{html.escape(mail_url)}</a></p>
</body></html>"""


def build_app(commissioners: list[str], as_of: dt.date, mail_url: str) -> Starlette:
    async def page(_: Request) -> HTMLResponse:
        return HTMLResponse(render(fetch_summary(commissioners, as_of), mail_url))

    async def data(_: Request) -> JSONResponse:
        return JSONResponse(fetch_summary(commissioners, as_of))

    return Starlette(routes=[Route("/", page), Route("/summary.json", data)])


def main() -> None:
    commissioners = [c for c in os.environ.get("HOMEWARD_DASHBOARD_COMMISSIONERS", "").split(",") if c]
    as_of = dt.date.fromisoformat(os.environ.get("HOMEWARD_DASHBOARD_AS_OF", dt.date.today().isoformat()))
    mail_url = os.environ.get("HOMEWARD_MAIL_WEB_URL", "http://127.0.0.1:1080")
    port = int(os.environ.get("HOMEWARD_DASHBOARD_PORT", DASHBOARD_PORT))
    uvicorn.run(build_app(commissioners, as_of, mail_url), host="127.0.0.1", port=port, log_level="warning")


if __name__ == "__main__":
    main()
