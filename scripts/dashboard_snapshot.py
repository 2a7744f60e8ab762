"""Draws docs/grafana-dashboard.json's panels from a real Prometheus, as a static HTML page.

Grafana cannot be installed on the machines this project is built on, so docs/images/dashboard.png
is made this way (docs/operations.md says how): a development federation under load, scraped by
a real Prometheus; this script runs each panel's PromQL through Prometheus's `query_range` API
(`$__rate_interval` replaced by `--rate-interval`) and draws the series as SVG line charts in
the dashboard's layout; headless Chromium takes the screenshot. Not product code: a tool for
the documentation.

Usage: .venv/bin/python scripts/dashboard_snapshot.py --prometheus http://127.0.0.1:9090 --out page.html
"""

from __future__ import annotations

import argparse
import html
import json
import re
import time
from pathlib import Path
from typing import Any

import requests

REPO = Path(__file__).resolve().parents[1]
COLOURS = ("#73bf69", "#f2cc0c", "#5794f2", "#ff9830", "#f2495c", "#b877d9", "#8ab8ff", "#ff780a", "#96d98d")
WIDTH, HEIGHT, PAD = 640, 230, 44


def query_range(prometheus: str, expr: str, start: float, end: float, step: float) -> list[dict[str, Any]]:
    response = requests.get(
        f"{prometheus}/api/v1/query_range",
        params={"query": expr, "start": start, "end": end, "step": step},
        timeout=30,
    )
    response.raise_for_status()
    result: list[dict[str, Any]] = response.json()["data"]["result"]
    return result


def legend(template: str, labels: dict[str, str]) -> str:
    return re.sub(r"\{\{\s*(\w+)\s*\}\}", lambda m: labels.get(m.group(1), ""), template).strip()


def svg_chart(series: list[tuple[str, list[tuple[float, float]]]], start: float, end: float) -> str:
    points = [v for _, values in series for _, v in values]
    if not points:
        return f'<svg width="{WIDTH}" height="{HEIGHT}"><text x="20" y="40" fill="#888">No data</text></svg>'
    low, high = min(0.0, min(points)), max(points)
    high = high if high > low else low + 1
    inner_w, inner_h = WIDTH - PAD - 10, HEIGHT - 30

    def xy(t: float, v: float) -> str:
        x = PAD + (t - start) / (end - start) * inner_w
        y = 10 + (1 - (v - low) / (high - low)) * inner_h
        return f"{x:.1f},{y:.1f}"

    parts = [f'<svg width="{WIDTH}" height="{HEIGHT}" xmlns="http://www.w3.org/2000/svg">']
    for i in range(5):
        value = low + (high - low) * i / 4
        y = 10 + (1 - i / 4) * inner_h
        parts.append(f'<line x1="{PAD}" x2="{WIDTH - 10}" y1="{y:.1f}" y2="{y:.1f}" stroke="#2c3235"/>')
        parts.append(f'<text x="{PAD - 4}" y="{y + 4:.1f}" text-anchor="end">{_short(value)}</text>')
    for i in range(4):
        t = start + (end - start) * i / 3
        x = PAD + i / 3 * inner_w
        clock = time.strftime("%H:%M", time.gmtime(t))
        parts.append(f'<text x="{x:.1f}" y="{HEIGHT - 4}" text-anchor="middle">{clock}</text>')
    for index, (_, values) in enumerate(series):
        line = " ".join(xy(t, v) for t, v in values)
        colour = COLOURS[index % len(COLOURS)]
        parts.append(f'<polyline fill="none" stroke="{colour}" stroke-width="1.6" points="{line}"/>')
    parts.append("</svg>")
    return "".join(parts)


def _short(value: float) -> str:
    for limit, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= limit:
            return f"{value / limit:.3g}{suffix}"
    return f"{value:.3g}"


def render(dashboard: dict[str, Any], prometheus: str, minutes: float, rate_interval: str) -> str:
    end = time.time()
    start = end - minutes * 60
    step = max(5.0, minutes * 60 / 240)
    cards = []
    for panel in dashboard["panels"]:
        series = []
        for target in panel["targets"]:
            expr = target["expr"].replace("$__rate_interval", rate_interval)
            for result in query_range(prometheus, expr, start, end, step):
                values = [
                    (float(t), float(v)) for t, v in result["values"] if v not in ("NaN", "+Inf", "-Inf")
                ]
                if values:
                    series.append((legend(target.get("legendFormat", ""), result["metric"]), values))
        keys = "".join(
            f'<span><i style="background:{COLOURS[i % len(COLOURS)]}"></i>{html.escape(name)}</span>'
            for i, (name, _) in enumerate(series)
        )
        unit = panel.get("fieldConfig", {}).get("defaults", {}).get("unit", "")
        cards.append(
            f'<div class="panel"><h2>{html.escape(panel["title"])} <small>{html.escape(unit)}</small></h2>'
            f'{svg_chart(series, start, end)}<div class="keys">{keys}</div></div>'
        )
    stamp = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(end))
    return f"""<!doctype html><html><head><meta charset="utf-8"><style>
body {{ background:#111217; color:#ccccdc; font:12px sans-serif; margin:12px; }}
h1 {{ font-size:17px; margin:4px 4px 10px; }} h1 small {{ color:#8e8e9e; font-weight:normal; }}
.grid {{ display:grid; grid-template-columns:repeat(2, {WIDTH + 16}px); gap:8px; }}
.panel {{ background:#181b1f; border:1px solid #2c3235; border-radius:3px; padding:6px 8px; }}
h2 {{ font-size:13px; margin:2px 0 4px; }} h2 small {{ color:#8e8e9e; font-weight:normal; }}
svg text {{ fill:#8e8e9e; font-size:10px; }}
.keys span {{ margin-right:10px; white-space:nowrap; font-size:11px; }}
.keys i {{ display:inline-block; width:10px; height:3px; margin:0 4px 3px 0; }}
</style></head><body>
<h1>{html.escape(dashboard["title"])} <small>docs/grafana-dashboard.json drawn from Prometheus
{html.escape(prometheus)}, last {minutes:g} minutes to {stamp}, rate interval {rate_interval}</small></h1>
<div class="grid">{"".join(cards)}</div></body></html>"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prometheus", default="http://127.0.0.1:9090")
    parser.add_argument("--dashboard", type=Path, default=REPO / "docs" / "grafana-dashboard.json")
    parser.add_argument("--minutes", type=float, default=15)
    parser.add_argument("--rate-interval", default="1m")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    dashboard = json.loads(args.dashboard.read_text())
    args.out.write_text(render(dashboard, args.prometheus, args.minutes, args.rate_interval))


if __name__ == "__main__":
    main()
