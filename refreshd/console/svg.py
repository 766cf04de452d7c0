"""Charts drawn on the server as inline SVG: no script and no library in the browser.

Each function returns markup for one chart, with a `<title>` and `role="img"` so a screen
reader names it, and presentation attributes only (the console's CSP forbids inline styles).
The page next to each chart shows the same numbers as a table.

The forest plots are also the JSON API's `GET /v1/experiments/{id}/report.svg`
(`forest_document`): this module imports nothing from the service, so the HTTP layer can
draw with it and there is one drawing of a report.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from markupsafe import Markup, escape

__all__ = ["PALETTE", "columns", "forest", "forest_document", "hbars", "lines", "nice_ticks",
           "report_forests"]  # fmt: skip

ForestRow = tuple[str, float | None, float | None, float | None]  # label, low, estimate, high

# Colour-blind-safe (Okabe–Ito), then greys.
PALETTE = ("#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#F0E442",
           "#000000", "#777777", "#BBBBBB")  # fmt: skip
FONT = 'font-family="system-ui, sans-serif" font-size="11"'


def _f(x: float) -> str:
    return f"{x:.1f}"


def nice_ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    """Round tick values covering [lo, hi], about n of them."""
    if not math.isfinite(lo) or not math.isfinite(hi) or hi <= lo:
        hi = lo + 1.0
    raw = (hi - lo) / max(n, 1)
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    first = math.floor(lo / step) * step
    ticks = []
    t = first
    while t <= hi + step * 1e-9:
        ticks.append(round(t, 12))
        t += step
    return ticks


def _open(title: str, width: int, height: int) -> list[str]:
    return [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" '
        f'width="{width}" height="{height}" role="img" class="chart">',
        f"<title>{escape(title)}</title>",
    ]


def _legend(names: Sequence[str], x: float, y: float) -> list[str]:
    out = []
    for i, name in enumerate(names):
        yy = y + i * 16
        out.append(f'<rect x="{_f(x)}" y="{_f(yy)}" width="10" height="10" '
                   f'fill="{PALETTE[i % len(PALETTE)]}"/>')  # fmt: skip
        out.append(f'<text x="{_f(x + 14)}" y="{_f(yy + 9)}" {FONT}>{escape(name)}</text>')
    return out


def columns(
    title: str,
    buckets: Sequence[tuple[float, Mapping[str, float]]],
    series: Sequence[str],
    *,
    per_s: float,
    x_labels: Sequence[str] = (),
    width: int = 760,
    height: int = 220,
) -> Markup:
    """Stacked columns: one per bucket, stacked by `series`, values divided by `per_s`."""
    left, right, top, bottom = 44, 150, 10, 22
    pw, ph = width - left - right, height - top - bottom
    totals = [sum(c.get(s, 0.0) for s in series) / per_s for _, c in buckets]
    ticks = nice_ticks(0.0, max(totals, default=0.0) or 1.0, 4)
    ymax = ticks[-1]
    out = _open(title, width, height)
    for t in ticks:
        y = top + ph - ph * t / ymax
        out.append(f'<line x1="{left}" x2="{left + pw}" y1="{_f(y)}" y2="{_f(y)}" '
                   'stroke="#ddd"/>')  # fmt: skip
        out.append(f'<text x="{left - 4}" y="{_f(y + 4)}" text-anchor="end" {FONT}>{t:g}</text>')
    n = max(len(buckets), 1)
    bw = pw / n
    for i, (_, counts) in enumerate(buckets):
        y = top + ph
        for j, name in enumerate(series):
            v = counts.get(name, 0.0) / per_s
            if v <= 0:
                continue
            h = ph * v / ymax
            y -= h
            out.append(
                f'<rect x="{_f(left + i * bw)}" y="{_f(y)}" width="{_f(max(bw - 1, 1))}" '
                f'height="{_f(h)}" fill="{PALETTE[j % len(PALETTE)]}"/>'
            )
    for i, label in enumerate(x_labels):
        if label:
            x = left + i * bw
            out.append(f'<text x="{_f(x)}" y="{height - 6}" {FONT}>{escape(label)}</text>')
    out += _legend(series, left + pw + 12, top)
    out.append("</svg>")
    return Markup("".join(out))


def _forest_height(rows: int, row_h: int) -> int:
    return FOREST_TOP + row_h * rows + 28


FOREST_TOP = 8


def forest(
    title: str,
    rows: Sequence[ForestRow],
    *,
    width: int = 520,
    row_h: int = 26,
    as_percent: bool = True,
) -> Markup:
    """A forest plot: per row (label, low, estimate, high) a CI bar (`class="ci"`) and its
    estimate, around a zero line; green right of zero, red left when the interval excludes
    zero."""
    left, right, top = 110, 20, FOREST_TOP
    height = _forest_height(len(rows), row_h)
    pw = width - left - right
    values = [v for _, lo, mid, hi in rows for v in (lo, mid, hi) if v is not None]
    span = max((abs(v) for v in values), default=0.0) or 0.01
    ticks = nice_ticks(-span, span, 4)
    lo_t, hi_t = ticks[0], ticks[-1]

    def x(v: float) -> float:
        return left + pw * (v - lo_t) / (hi_t - lo_t)

    out = _open(title, width, height)
    base = top + row_h * len(rows)
    for t in ticks:
        label = f"{t * 100:g} %" if as_percent else f"{t:g}"
        out.append(f'<line x1="{_f(x(t))}" x2="{_f(x(t))}" y1="{top}" y2="{base}" '
                   f'stroke="{"#333" if t == 0 else "#e3e3e3"}"/>')  # fmt: skip
        out.append(f'<text x="{_f(x(t))}" y="{base + 16}" text-anchor="middle" {FONT}>'
                   f"{escape(label)}</text>")  # fmt: skip
    for i, (label, lo, mid, hi) in enumerate(rows):
        y = top + row_h * i + row_h / 2
        out.append(f'<text x="{left - 8}" y="{_f(y + 4)}" text-anchor="end" {FONT}>'
                   f"{escape(label)}</text>")  # fmt: skip
        if lo is None or hi is None or mid is None:
            out.append(f'<text x="{_f(x(0) + 6)}" y="{_f(y + 4)}" {FONT} fill="#777">'
                       "no data</text>")  # fmt: skip
            continue
        colour = "#1a7f37" if lo > 0 else "#cf222e" if hi < 0 else "#555"
        out.append(f'<line class="ci" x1="{_f(x(lo))}" x2="{_f(x(hi))}" y1="{_f(y)}" '
                   f'y2="{_f(y)}" stroke="{colour}" stroke-width="3"/>')  # fmt: skip
        out.append(f'<circle cx="{_f(x(mid))}" cy="{_f(y)}" r="5" fill="{colour}"/>')
    out.append("</svg>")
    return Markup("".join(out))


def report_forests(report: Any) -> list[tuple[str, str, list[ForestRow]]]:
    """Per metric of an experiment report (`refreshd.core.expstats.Report`): the metric, its
    forest plot's title and rows (each treatment arm's relative lift with its interval)."""
    baseline, arms = report.variants[0], report.variants[1:]
    level = f"{100 - report.stats.alpha * 100:g} %"
    out = []
    for metric in baseline.metrics:
        rows: list[ForestRow] = []
        for v in arms:
            r = v.metrics.get(metric)
            ci = r.ci if r is not None else None
            mid = r.relative_lift if r is not None else None
            rows.append((v.key, ci[0] if ci else None, mid, ci[1] if ci else None))
        title = f"{metric}: relative lift of each arm over {baseline.key}, {level} interval"
        out.append((metric, title, rows))
    return out


def forest_document(title: str, panels: Sequence[tuple[str, str, Sequence[ForestRow]]]) -> str:
    """A standalone SVG document: `title`, then one forest plot per (name, title, rows) panel,
    stacked (what `report_forests` returns)."""
    width, row_h, head = 520, 26, 28
    y = head
    body = []
    for name, panel_title, rows in panels:
        body.append(f'<text x="8" y="{y + 14}" {FONT} font-weight="bold">{escape(name)}</text>')
        body.append(f'<g transform="translate(0 {y + 20})">{forest(panel_title, rows)}</g>')
        y += 20 + _forest_height(len(rows), row_h) + 8
    return "".join(
        [
            '<?xml version="1.0" encoding="UTF-8"?>\n',
            f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {y}" '
            f'width="{width}" height="{y}" role="img">',
            f"<title>{escape(title)}</title>",
            f'<rect width="{width}" height="{y}" fill="#fff"/>',
            f'<text x="8" y="18" font-family="system-ui, sans-serif" font-size="13">'
            f"{escape(title)}</text>",
            *body,
            "</svg>\n",
        ]
    )


def lines(
    title: str,
    series: Sequence[tuple[str, Sequence[tuple[float, float]]]],
    *,
    x_label: str,
    y_label: str,
    diagonal: bool = False,
    x_range: tuple[float, float] | None = None,
    y_range: tuple[float, float] | None = None,
    width: int = 360,
    height: int = 260,
) -> Markup:
    """Lines with points (a calibration plot with `diagonal`, a curve over list age)."""
    left, right, top, bottom = 44, 12, 10, 36
    pw, ph = width - left - right, height - top - bottom
    xs = [p[0] for _, pts in series for p in pts]
    ys = [p[1] for _, pts in series for p in pts]
    x0, x1 = x_range or (min(xs, default=0.0), max(xs, default=1.0))
    y0, y1 = y_range or (min(ys, default=0.0), max(ys, default=1.0))
    xt, yt = nice_ticks(x0, x1, 4), nice_ticks(y0, y1, 4)
    x0, x1, y0, y1 = xt[0], xt[-1], yt[0], yt[-1]

    def px(v: float) -> float:
        return left + pw * (v - x0) / (x1 - x0)

    def py(v: float) -> float:
        return top + ph - ph * (v - y0) / (y1 - y0)

    out = _open(title, width, height)
    for t in yt:
        out.append(f'<line x1="{left}" x2="{left + pw}" y1="{_f(py(t))}" y2="{_f(py(t))}" '
                   'stroke="#e3e3e3"/>')  # fmt: skip
        out.append(f'<text x="{left - 4}" y="{_f(py(t) + 4)}" text-anchor="end" {FONT}>'
                   f"{t:g}</text>")  # fmt: skip
    for t in xt:
        out.append(f'<text x="{_f(px(t))}" y="{top + ph + 14}" text-anchor="middle" {FONT}>'
                   f"{t:g}</text>")  # fmt: skip
    out.append(f'<text x="{left + pw / 2}" y="{height - 4}" text-anchor="middle" {FONT}>'
               f"{escape(x_label)}</text>")  # fmt: skip
    out.append(f'<text x="12" y="{top + ph / 2}" text-anchor="middle" {FONT} '
               f'transform="rotate(-90 12 {top + ph / 2})">{escape(y_label)}</text>')  # fmt: skip
    if diagonal:
        lo, hi = max(x0, y0), min(x1, y1)
        out.append(f'<line x1="{_f(px(lo))}" y1="{_f(py(lo))}" x2="{_f(px(hi))}" '
                   f'y2="{_f(py(hi))}" stroke="#999" stroke-dasharray="4 3"/>')  # fmt: skip
    for i, (_, pts) in enumerate(series):
        colour = PALETTE[i % len(PALETTE)]
        if len(pts) > 1:
            d = " ".join(f"{_f(px(a))},{_f(py(b))}" for a, b in pts)
            out.append(f'<polyline points="{d}" fill="none" stroke="{colour}" '
                       'stroke-width="2"/>')  # fmt: skip
        for a, b in pts:
            out.append(f'<circle cx="{_f(px(a))}" cy="{_f(py(b))}" r="3" fill="{colour}"/>')
    if len(series) > 1:
        out += _legend([name for name, _ in series], left + 8, top + 4)
    out.append("</svg>")
    return Markup("".join(out))


def hbars(title: str, items: Sequence[tuple[str, float]], *, width: int = 420) -> Markup:
    """Horizontal bars, largest first (feature importance)."""
    left, right, top, row_h = 150, 50, 6, 18
    height = top * 2 + row_h * len(items)
    vmax = max((v for _, v in items), default=0.0) or 1.0
    out = _open(title, width, height)
    for i, (label, v) in enumerate(items):
        y = top + i * row_h
        w = (width - left - right) * v / vmax
        out.append(f'<text x="{left - 6}" y="{y + 12}" text-anchor="end" {FONT}>'
                   f"{escape(label)}</text>")  # fmt: skip
        out.append(f'<rect x="{left}" y="{y + 3}" width="{_f(w)}" height="{row_h - 6}" '
                   f'fill="{PALETTE[0]}"/>')  # fmt: skip
        out.append(f'<text x="{_f(left + w + 4)}" y="{y + 12}" {FONT}>{v:.3g}</text>')
    out.append("</svg>")
    return Markup("".join(out))
