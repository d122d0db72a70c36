"""The staff view: server-rendered pages (Jinja2, the NHS design system's CSS) over the services'
read APIs. Every request to a service carries the signed-in person's own token, so the services
decide what that person may see and write the audit trail; this app holds no data of its own.

Sign-in on the native stack: paste a token from ``homeward token`` (kept in an HttpOnly,
SameSite=Strict cookie, Secure over https), or send ``Authorization: Bearer``. In production an
OIDC proxy in front signs people in and sets that header (docs/staff.md).
"""

from __future__ import annotations

import datetime as dt
import re
import urllib.parse
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from homeward.contracts.vocab import OutOfAreaReason
from homeward.kit.auth import TokenVerifier
from homeward.kit.clock import Clock, clock_from
from homeward.kit.settings import CommonSettings
from jinja2 import Environment, FileSystemLoader, select_autoescape
from markupsafe import Markup
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import FileResponse, HTMLResponse, PlainTextResponse, RedirectResponse, Response
from starlette.routing import Route

from .assets import assets_dir, frontend_dist
from .charts import Series, chart
from .identity import NotSignedIn, SignedIn, identify
from .settings import StaffSettings
from .tables import Column, Table, csv_value, display

COOKIE = "homeward_staff_token"
TEMPLATES = Path(__file__).resolve().parent / "templates"
REASONS = {
    "10": "no local bed",
    "11": "safeguarding",
    "12": "offending restrictions",
    "13": "staff member or family/friend within the referring organisation",
    "14": "patient choice",
    "99": "not known",
    "not stated": "not stated",
}
assert set(REASONS) >= {r.value for r in OutOfAreaReason}
# Pages: path, title, and what the navigation calls it.
PAGES = (
    ("/", "Reviews due and overdue", "Worklist"),
    ("/placements", "Out-of-area placements", "Out of area"),
    ("/repatriation", "Repatriation pipeline", "Repatriation"),
    ("/budget", "Budget position", "Budget"),
    ("/unmet-need", "Unmet need", "Unmet need"),
    ("/measures", "NHS out-of-area measures", "NHS measures"),
    ("/alerts", "Suppressed alerts", "Suppressed alerts"),
)
# The pages each role's navigation offers: those whose services answer that role (the services
# decide; a page reached anyway shows their refusal). docs/staff-access.md has the scopes.
ALL_PAGES = tuple(path for path, _, _ in PAGES)
ROLE_PAGES: dict[str, tuple[str, ...]] = {
    "commissioner": ALL_PAGES,
    "case-manager": ALL_PAGES,
    "clinical-lead": ALL_PAGES,
    "finance": ("/budget", "/measures"),
    "provider": ("/", "/placements", "/repatriation", "/measures", "/alerts"),
    "ops": ("/measures",),
}
# A Content-Security-Policy that keeps every page to this server's own files: no CDN, no
# inline script, nothing framed.
CSP = (
    "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'none'; "
    "object-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
)


class SignInNeeded(Exception):
    """No usable token: the person is sent to the sign-in page."""


class Denied(Exception):
    """A service answered 403: outside the signed-in person's scope."""


class Unavailable(Exception):
    """A service could not be reached or failed."""


@dataclass
class View:
    """What a page shows: an introduction, a chart, tables and (for the period pages) a form."""

    intro: str = ""
    tables: list[Table] = field(default_factory=list)
    chart: str | None = None
    form: dict[str, Any] | None = None
    notice: str | None = None


def _strip_remote_fonts(css: str) -> str:
    """The design system's CSS names its Frutiger webfont on the NHS's own CDN (the font is
    licensed, not in the npm package). Pages never load anything from elsewhere, so those
    @font-face rules are dropped: the design system's font stack falls back to Arial."""
    return re.sub(r"@font-face\{[^}]*https?://[^}]*\}", "", css)


class Services:
    """The services' read APIs, asked with the signed-in person's token."""

    def __init__(self, settings: StaffSettings, transport: httpx.AsyncBaseTransport | None = None) -> None:
        self.settings = settings
        self.client = httpx.AsyncClient(timeout=settings.timeout_s, transport=transport)

    async def get(self, who: SignedIn, service: str, path: str, **params: Any) -> Any:
        url = self.settings.service_url(service) + path
        clean = {k: v for k, v in params.items() if v is not None}
        try:
            r = await self.client.get(url, params=clean, headers={"Authorization": f"Bearer {who.token}"})
        except httpx.HTTPError as exc:
            raise Unavailable(f"the {service} service cannot be reached ({type(exc).__name__})") from None
        if r.status_code == 401:
            raise SignInNeeded()
        if r.status_code == 403:
            raise Denied(_problem(r) or f"the {service} service does not give your role this information")
        if r.status_code == 404:
            return None
        if r.status_code >= 400:
            raise Unavailable(f"the {service} service answered {r.status_code}: {_problem(r) or r.text[:200]}")
        return r.json()


def _problem(r: httpx.Response) -> str | None:
    try:
        body = r.json()
    except ValueError:
        return None
    if isinstance(body, dict):
        return str(body.get("detail") or body.get("title") or body.get("error") or "") or None
    return None


def financial_year(day: dt.date) -> tuple[str, dt.date]:
    start = day.year if day.month >= 4 else day.year - 1
    return f"{start}-{(start + 1) % 100:02d}", dt.date(start, 4, 1)


def month_ends(first: dt.date, today: dt.date) -> list[dt.date]:
    """The last day of each month from ``first``'s to the one before ``today``'s, then ``today``."""
    out = []
    day = first
    while True:
        nxt = (day.replace(day=28) + dt.timedelta(days=4)).replace(day=1)
        end = nxt - dt.timedelta(days=1)
        if end >= today:
            out.append(today)
            return out
        out.append(end)
        day = nxt


def previous_month(today: dt.date) -> str:
    return (today.replace(day=1) - dt.timedelta(days=1)).strftime("%Y-%m")


def build_app(
    settings: StaffSettings | None = None,
    clock: Clock | None = None,
    transport: httpx.AsyncBaseTransport | None = None,
    assets: Path | None = None,
    verifier: TokenVerifier | None = None,
) -> Starlette:
    """``verifier`` checks tokens as the services do (default: HOMEWARD_AUTH_* settings);
    ``transport`` replaces the network to the services (tests)."""
    settings = settings or StaffSettings()
    verifier = verifier or TokenVerifier()
    clock = clock or clock_from(CommonSettings().clock)
    services = Services(settings, transport)
    dist = frontend_dist(assets or assets_dir() / "node_modules")
    env = Environment(loader=FileSystemLoader(TEMPLATES), autoescape=select_autoescape(["html"]))
    css_cache: dict[str, str] = {}

    def who_is(request: Request) -> SignedIn:
        header = request.headers.get("authorization", "")
        token = header if header.lower().startswith("bearer ") else request.cookies.get(COOKIE, "")
        if not token:
            raise SignInNeeded()
        try:
            return identify(token, verifier)
        except NotSignedIn:
            raise SignInNeeded() from None

    def secure(request: Request) -> bool:
        return settings.secure_cookie if settings.secure_cookie is not None else request.url.scheme == "https"

    def html(template: str, status: int = 200, **context: Any) -> HTMLResponse:
        who: SignedIn | None = context.get("who")
        offered = ROLE_PAGES.get(who.role, ALL_PAGES) if who else ()
        body = env.get_template(template).render(pages=[p for p in PAGES if p[0] in offered], **context)
        return HTMLResponse(body, status_code=status, headers=_headers())

    def to_sign_in(request: Request) -> Response:
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        return RedirectResponse("/sign-in?" + urllib.parse.urlencode({"next": target}), status_code=303)

    # ---- the pages' content ------------------------------------------------------------
    async def worklist(who: SignedIn, request: Request) -> View:
        today = clock.today()
        overdue = await services.get(who, "placements", "/reviews/overdue", commissioner=who.commissioner)
        upcoming = await services.get(
            who, "placements", "/reviews/upcoming", commissioner=who.commissioner, within_days=28
        )
        review = [
            Column("placement_id", "Placement"),
            Column("patient_ref", "Person (reference)"),
            Column("provider_site", "Site"),
            Column("review_type", "Review"),
            Column("due_date", "Due", "date"),
        ]
        return View(
            intro=f"Reviews of the people your organisation has placed, as of {today:%-d %B %Y}. "
            "An overdue review escalates a level every fortnight (four weeks for CTRs), up to level 3.",
            tables=[
                Table(
                    "overdue",
                    "Overdue reviews",
                    [
                        *review,
                        Column("days_overdue", "Days overdue", "number"),
                        Column("escalation_level", "Escalation", "level"),
                    ],
                    (overdue or {}).get("reviews", []),
                    empty="No review is overdue.",
                ),
                Table(
                    "due",
                    "Reviews due in the next 28 days",
                    [*review, Column("days_until_due", "Days until due", "number")],
                    (upcoming or {}).get("reviews", []),
                    empty="No review falls due in the next 28 days.",
                ),
            ],
        )

    async def placements(who: SignedIn, request: Request) -> View:
        today = clock.today()
        found = await services.get(who, "placements", "/placements", commissioner=who.commissioner, out_of_area="true")
        rows = []
        for p in (found or {}).get("placements", []):
            reason = p.get("out_of_area_reason")
            rows.append(
                {
                    **p,
                    "days_away": (today - dt.date.fromisoformat(p["start_date"])).days,
                    "reason": f"{reason} {REASONS.get(reason, '')}".strip() if reason else "not stated",
                }
            )
        rows.sort(key=lambda r: -r["days_away"])
        return View(
            intro=f"People placed out of their home area on {today:%-d %B %Y}, longest away first. "
            "Reason 10 (no local bed) makes a placement inappropriate.",
            tables=[
                Table(
                    "out-of-area",
                    f"{len(rows)} out-of-area placement(s)",
                    [
                        Column("placement_id", "Placement"),
                        Column("patient_ref", "Person (reference)"),
                        Column("provider_site", "Site"),
                        Column("bed_type", "Bed type"),
                        Column("start_date", "Since", "date"),
                        Column("days_away", "Days away", "number"),
                        Column("distance_from_home_km", "Distance (km)", "number"),
                        Column("daily_rate_pence", "Daily cost", "money"),
                        Column("reason", "Reason"),
                        Column("inappropriate", "Inappropriate", "yesno"),
                    ],
                    rows,
                    empty="Nobody is placed out of area.",
                )
            ],
        )

    async def repatriation(who: SignedIn, request: Request) -> View:
        candidates = await services.get(who, "placements", "/repatriation-candidates", commissioner=who.commissioner)
        moves = await services.get(who, "placements", "/repatriations", commissioner=who.commissioner)
        home = []
        for m in (moves or {}).get("repatriations", []):
            home.append({**m, "saving_pence": m["from_daily_rate_pence"] - m["to_daily_rate_pence"]})
        return View(
            intro="People placed out of area whose bed type has free local capacity in their home area, "
            "and the people brought home.",
            tables=[
                Table(
                    "candidates",
                    "Candidates: local capacity exists",
                    [
                        Column("placement_id", "Placement"),
                        Column("patient_ref", "Person (reference)"),
                        Column("bed_type", "Bed type"),
                        Column("provider_site", "Placed at"),
                        Column("local_area", "Home area"),
                        Column("local_available_beds", "Free local beds", "number"),
                        Column("daily_rate_pence", "Daily cost", "money"),
                    ],
                    (candidates or {}).get("candidates", []),
                    empty="No out-of-area placement has free local capacity for its bed type.",
                ),
                Table(
                    "brought-home",
                    "Brought home",
                    [
                        Column("from_placement_id", "From placement"),
                        Column("to_placement_id", "To placement"),
                        Column("patient_ref", "Person (reference)"),
                        Column("repatriated_on", "Home on", "date"),
                        Column("from_daily_rate_pence", "Daily cost away", "money"),
                        Column("to_daily_rate_pence", "Daily cost at home", "money"),
                        Column("saving_pence", "Daily saving", "money"),
                    ],
                    home,
                    empty="Nobody has been brought home yet.",
                ),
            ],
        )

    async def budget(who: SignedIn, request: Request) -> View:
        today = clock.today()
        fy, fy_start = financial_year(today)
        org = who.commissioner
        if org is None:
            return View(notice="Budget positions are kept per commissioner; your role has none.")
        rows = []
        spent_before = 0
        for end in month_ends(fy_start, today):
            pos = await services.get(who, "budget", f"/positions/{org}", financial_year=fy, as_of=end.isoformat())
            if pos is None:
                return View(notice=f"{org} has no budget accounts for {fy}.")
            spent = pos.get("spent_pence") or 0
            rows.append(
                {
                    "month": end.strftime("%Y-%m"),
                    "as_of": end.isoformat(),
                    "spent_in_month_pence": spent - spent_before,
                    "out_of_area_in_month_pence": None,
                    "spent_pence": spent,
                    "out_of_area_spent_pence": pos.get("out_of_area_spent_pence"),
                    "out_of_area_share_percent": pos.get("out_of_area_share_percent"),
                    "forecast_outturn_pence": pos.get("forecast_outturn_pence"),
                    "allocated_pence": pos.get("allocated_pence"),
                    "savings_to_date_pence": pos.get("savings_to_date_pence"),
                }
            )
            spent_before = spent
        ooa_before = 0
        for r in rows:
            ooa = r["out_of_area_spent_pence"] or 0
            r["out_of_area_in_month_pence"] = ooa - ooa_before
            r["local_in_month_pence"] = r["spent_in_month_pence"] - r["out_of_area_in_month_pence"]
            ooa_before = ooa
        labels = [dt.date.fromisoformat(r["as_of"]).strftime("%b") for r in rows]
        svg = chart(
            "budget-chart",
            f"{org} spend by month, financial year {fy}",
            "Bars: spend in each month, out of area and local. Lines: forecast outturn and allocation as known "
            "at each month's end, and savings to date. The figures are in the table below.",
            labels,
            [
                Series("Out-of-area spend in month", [r["out_of_area_in_month_pence"] / 100 for r in rows]),
                Series("Local spend in month", [r["local_in_month_pence"] / 100 for r in rows]),
                Series("Forecast outturn", [(r["forecast_outturn_pence"] or 0) / 100 for r in rows], "line"),
                Series("Savings to date", [(r["savings_to_date_pence"] or 0) / 100 for r in rows], "line"),
            ],
        )
        return View(
            intro=f"{org}'s position in financial year {fy}, month by month, as the budget service "
            "knew it at each month's end (the current month: today).",
            chart=svg,
            tables=[
                Table(
                    "positions",
                    f"Budget position by month, {fy}",
                    [
                        Column("month", "Month"),
                        Column("spent_in_month_pence", "Spent in month", "money"),
                        Column("out_of_area_in_month_pence", "Of which out of area", "money"),
                        Column("spent_pence", "Spent to date", "money"),
                        Column("out_of_area_share_percent", "Out-of-area share", "percent"),
                        Column("forecast_outturn_pence", "Forecast outturn", "money"),
                        Column("allocated_pence", "Allocated", "money"),
                        Column("savings_to_date_pence", "Savings to date", "money"),
                    ],
                    rows,
                )
            ],
        )

    async def unmet_need(who: SignedIn, request: Request) -> View:
        today = clock.today()
        first = request.query_params.get("from") or (today - dt.timedelta(days=365)).replace(day=1).isoformat()
        last = request.query_params.get("to") or today.isoformat()
        data = await services.get(
            who, "referrals", "/unmet-need", commissioner=who.commissioner, **{"from": first, "to": last}
        )
        rows = []
        for r in (data or {}).get("rows", []):
            other = {k: v for k, v in r.get("by_reason", {}).items() if k != "10"}
            rows.append({**r, "other": ", ".join(f"{k}: {v}" for k, v in sorted(other.items())) or "–"})
        rows.sort(key=lambda r: (r["month"], r["area"], r["bed_type"]), reverse=True)
        return View(
            intro="People placed out of area for lack of a local bed (reason 10), by bed type, home area and "
            "month of placement: the beds that were needed locally and not there.",
            form={"from": first, "to": last, "kind": "dates"},
            tables=[
                Table(
                    "unmet-need",
                    f"Unmet need, {first} to {last}",
                    [
                        Column("month", "Month"),
                        Column("area", "Home area"),
                        Column("bed_type", "Bed type"),
                        Column("count", "No local bed (reason 10)", "number"),
                        Column("out_of_area", "All out of area", "number"),
                        Column("other", "Other reasons"),
                    ],
                    rows,
                    empty="No out-of-area placement started in the period.",
                )
            ],
        )

    async def nhs_measures(who: SignedIn, request: Request) -> View:
        today = clock.today()
        month = request.query_params.get("month") or None
        first, last = request.query_params.get("from") or None, request.query_params.get("to") or None
        if not month and not (first and last):
            month = previous_month(today)
        params: dict[str, Any] = {"commissioner": who.commissioner}
        params.update({"month": month} if month else {"from": first, "to": last})
        data = await services.get(who, "placements", "/measures", **params)
        if data is None:
            return View(notice="The placements service does not offer the measures.")
        figures = data["commissioners"].get(who.commissioner) if who.commissioner else data["total"]
        figures = figures or data["total"]
        period = data["period"]
        headline = [
            ("active_at_end", "Active at the period's end", "number"),
            ("started", "Placements started", "number"),
            ("ended", "Placements ended", "number"),
            ("oap_days", "OAP days (bed days)", "number"),
            ("total_cost_pence", "Total recorded cost", "money"),
            ("average_daily_cost_pence", "Average daily cost", "money"),
        ]
        head_rows = [
            {
                "measure": label,
                "all": figures["all"][key],
                "inappropriate": figures["inappropriate"][key],
                "kind": kind,
            }
            for key, label, kind in headline
        ]
        # One kind per row, not per column: the page shows the values formatted, the CSV plain.
        for r in head_rows:
            for k in ("all", "inappropriate"):
                r[f"{k}_text"] = display(r["kind"], r[k])
                r[f"{k}_csv"] = csv_value(r["kind"], r[k])
            r["measure_csv"] = f"{r['measure']} (£)" if r["kind"] == "money" else r["measure"]
        per_commissioner = [
            {
                "commissioner": code,
                **{k: m["all"][k] for k, _, _ in headline},
                "inappropriate_active_at_end": m["inappropriate"]["active_at_end"],
            }
            for code, m in data["commissioners"].items()
        ]
        note = "" if period["complete"] else f" (to date: measured to {period['measured_to']})"
        bands = data["bands"]
        return View(
            intro=f"The NHS out-of-area placement measures for {period['label']}{note}, "
            "from the placement register. Inappropriate: placed out of area for lack of a local bed (reason 10).",
            form={"month": month or "", "from": first or "", "to": last or "", "kind": "period"},
            tables=[
                Table(
                    "headline",
                    f"Out-of-area placements, {period['label']}",
                    [
                        Column("measure", "Measure", csv_key="measure_csv"),
                        Column("all_text", "All out of area", numeric=True, csv_key="all_csv"),
                        Column("inappropriate_text", "Inappropriate", numeric=True, csv_key="inappropriate_csv"),
                    ],
                    head_rows,
                ),
                *(
                    [
                        Table(
                            "by-commissioner",
                            f"By commissioner, {period['label']}",
                            [
                                Column("commissioner", "Commissioner"),
                                *(Column(k, label, kind) for k, label, kind in headline),
                                Column("inappropriate_active_at_end", "Inappropriate at the end", "number"),
                            ],
                            per_commissioner,
                        )
                    ]
                    if who.commissioner is None
                    else []
                ),
                Table(
                    "length-of-stay",
                    "Completed lengths of stay (placements ended in the period)",
                    [Column("band", "Nights"), Column("count", "Placements", "number")],
                    [{"band": b, "count": figures["length_of_stay"][b]} for b in bands["length_of_stay_nights"]],
                ),
                Table(
                    "distance",
                    "Distance from home (placements active in the period)",
                    [Column("band", "Kilometres"), Column("count", "Placements", "number")],
                    [{"band": b, "count": figures["distance"][b]} for b in bands["distance_km"]],
                ),
                Table(
                    "reasons",
                    "By reason (placements active in the period)",
                    [
                        Column("code", "Reason code"),
                        Column("meaning", "Reason"),
                        Column("appropriate", "Appropriate"),
                        Column("placements", "Placements", "number"),
                        Column("oap_days", "OAP days", "number"),
                    ],
                    [
                        {
                            "code": code,
                            "meaning": REASONS.get(code, code),
                            "appropriate": "no" if code == "10" else "yes",
                            **figures["by_reason"][code],
                        }
                        for code in bands["reason_codes"]
                    ],
                ),
            ],
        )

    async def suppressed(who: SignedIn, request: Request) -> View:
        try:
            data = await services.get(who, "notifications", "/notifications/suppressed", org=who.org)
        except Unavailable:
            data = None
        if data is None:
            return View(notice="The notifications service does not report suppressed alerts.")
        return View(
            intro="Alerts that were recorded but not emailed, with the reason: for example an action whose date "
            "had long passed when a replay or backfill produced it.",
            tables=[
                Table(
                    "suppressed",
                    "Suppressed alerts",
                    [
                        Column("recorded_at", "Recorded", "date"),
                        Column("due_by", "Action due by", "date"),
                        Column("recipient", "Recipient"),
                        Column("role", "Role"),
                        Column("reference", "About"),
                        Column("subject", "Subject"),
                        Column("suppressed_reason", "Why it was not emailed"),
                    ],
                    list(data.get("notifications", [])),
                    empty="No alert was suppressed.",
                )
            ],
        )

    views: dict[str, Callable[[SignedIn, Request], Awaitable[View]]] = {
        "/": worklist,
        "/placements": placements,
        "/repatriation": repatriation,
        "/budget": budget,
        "/unmet-need": unmet_need,
        "/measures": nhs_measures,
        "/alerts": suppressed,
    }
    titles = {path: title for path, title, _ in PAGES}

    async def page(request: Request) -> Response:
        path = request.url.path
        try:
            who = who_is(request)
            offered = ROLE_PAGES.get(who.role, ALL_PAGES)
            if path == "/" and path not in offered and offered:
                return RedirectResponse(offered[0], status_code=303)  # the role's first page
            view = await views[path](who, request)
        except SignInNeeded:
            return to_sign_in(request)
        except Denied as exc:
            return html("message.html", 403, title=titles[path], current=path, who=who, message=str(exc))
        except Unavailable as exc:
            return html("message.html", 503, title=titles[path], current=path, who=who, message=str(exc))
        query = f"?{request.url.query}" if request.url.query else ""
        return html(
            "page.html",
            title=titles[path],
            current=path,
            who=who,
            view=view,
            chart=Markup(view.chart) if view.chart else None,
            csv_base="/worklist/" if path == "/" else path + "/",
            query=query,
        )

    async def download(request: Request) -> Response:
        base = "/" + request.path_params["page"] if request.path_params["page"] != "worklist" else "/"
        if base not in views:
            return PlainTextResponse("no such page", status_code=404)
        try:
            who = who_is(request)
            view = await views[base](who, request)
        except SignInNeeded:
            return to_sign_in(request)
        except Denied as exc:
            return PlainTextResponse(str(exc), status_code=403)
        except Unavailable as exc:
            return PlainTextResponse(str(exc), status_code=503)
        table = next((t for t in view.tables if t.id == request.path_params["table"]), None)
        if table is None:
            return PlainTextResponse("no such table", status_code=404)
        name = f"homeward-{table.id}-{who.org}-{clock.today().isoformat()}.csv"
        return Response(
            table.csv(),
            media_type="text/csv; charset=utf-8",
            headers={**_headers(), "Content-Disposition": f'attachment; filename="{name}"'},
        )

    async def sign_in_form(request: Request) -> Response:
        return html("sign_in.html", title="Sign in", current="/sign-in", who=None, next=_safe_next(request), error=None)

    async def sign_in(request: Request) -> Response:
        form = urllib.parse.parse_qs((await request.body()).decode(errors="replace"))
        token = (form.get("token") or [""])[0]
        target = _safe_next(request, (form.get("next") or ["/"])[0])
        try:
            who = identify(token, verifier)
        except NotSignedIn as exc:
            return html("sign_in.html", 401, title="Sign in", current="/sign-in", who=None, next=target, error=str(exc))
        response = RedirectResponse(target, status_code=303)
        response.set_cookie(COOKIE, who.token, httponly=True, samesite="strict", secure=secure(request), path="/")
        return response

    async def sign_out(request: Request) -> Response:
        response = RedirectResponse("/sign-in", status_code=303)
        response.delete_cookie(COOKIE, path="/", httponly=True, samesite="strict", secure=secure(request))
        return response

    async def stylesheet(request: Request) -> Response:
        if "css" not in css_cache:
            found = sorted(dist.glob("nhsuk-frontend-*.min.css")) or sorted(dist.glob("nhsuk-frontend.min.css"))
            if not found:
                return PlainTextResponse(
                    "the NHS design system's CSS is not installed: run `python -m homeward.staff.assets`",
                    status_code=503,
                )
            css_cache["css"] = _strip_remote_fonts(found[-1].read_text()) + "\n" + (TEMPLATES / "staff.css").read_text()
        return Response(css_cache["css"], media_type="text/css", headers={"Cache-Control": "max-age=3600"})

    async def asset(request: Request) -> Response:
        rel = request.path_params["path"]
        root = (dist / "assets").resolve()
        target = (root / rel).resolve()
        if not target.is_relative_to(root) or not target.is_file():
            return PlainTextResponse("not found", status_code=404)
        return FileResponse(target, headers={"Cache-Control": "max-age=3600"})

    async def healthz(request: Request) -> Response:
        return PlainTextResponse("ok")

    routes = [Route(path, page) for path in views]
    routes += [
        Route("/sign-in", sign_in_form, methods=["GET"]),
        Route("/sign-in", sign_in, methods=["POST"]),
        Route("/sign-out", sign_out, methods=["POST"]),
        Route("/{page}/{table}.csv", download),
        Route("/static/staff.css", stylesheet),
        Route("/assets/{path:path}", asset),
        Route("/healthz", healthz),
    ]
    app = Starlette(routes=routes)
    app.state.services = services
    return app


def _headers() -> dict[str, str]:
    return {
        "Content-Security-Policy": CSP,
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "no-referrer",
        "Cache-Control": "no-store",
    }


def _safe_next(request: Request, target: str | None = None) -> str:
    """Only a path on this site: never an address elsewhere (an open redirect)."""
    target = target if target is not None else request.query_params.get("next", "/")
    if not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    return target
