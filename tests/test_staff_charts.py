"""The staff view's server-side SVG chart: well-formed, labelled for screen readers, to scale."""

from __future__ import annotations

import xml.etree.ElementTree as ET

from homeward.staff.charts import HEIGHT, Series, chart

SVG = "{http://www.w3.org/2000/svg}"


def test_the_chart_is_svg_with_a_title_a_description_and_bars_to_scale() -> None:
    svg = chart(
        "c",
        "Spend <by> month",
        "Bars & lines",
        ["Apr", "May", "Jun"],
        [
            Series("Out of area", [300.0, 0.0, 150.0]),
            Series("Local", [100.0, 50.0, None]),
            Series("Forecast", [1000.0, 900.0, 950.0], "line"),
        ],
    )
    root = ET.fromstring(svg)  # well-formed, text escaped
    assert root.get("role") == "img" and root.get("aria-labelledby") == "c-title c-desc"
    assert root.find(f"{SVG}title").text == "Spend <by> month"  # type: ignore[union-attr]
    assert root.find(f"{SVG}desc").text == "Bars & lines"  # type: ignore[union-attr]
    bars = [r for r in root.iter(f"{SVG}rect") if r.find(f"{SVG}title") is not None]
    assert len(bars) == 4  # zero and missing values draw nothing
    heights = {r.find(f"{SVG}title").text: float(r.get("height", 0)) for r in bars}  # type: ignore[union-attr]
    assert heights["Out of area, Apr: £300"] == 2 * heights["Out of area, Jun: £150"]
    assert heights["Out of area, Apr: £300"] == 3 * heights["Local, Apr: £100"]
    assert all(0 < h < HEIGHT for h in heights.values())
    line = root.find(f"{SVG}polyline")
    assert line is not None and len(line.get("points", "").split()) == 3


def test_an_empty_chart_still_draws_its_axis() -> None:
    root = ET.fromstring(chart("e", "Nothing", "No figures", [], [Series("Spend", [])]))
    assert root.find(f"{SVG}title") is not None and list(root.iter(f"{SVG}line"))
