"""Small hand-written SVG charts for the HTML report.

No plotting library and no fonts: every chart is a few kilobytes of inline
SVG whose text uses the page's system font. Every label is escaped; every
function returns :class:`markupsafe.Markup` ready for the template. Missing
values (None) break a line instead of being drawn as zero.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

from markupsafe import Markup, escape

PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
           "#bcbd22", "#17becf")
WIDTH, HEIGHT = 440, 190
PAD_L, PAD_R, PAD_T, PAD_B = 52, 12, 22, 34
#: shades of a heatmap (cells are drawn one path per shade)
HEAT_LEVELS = 8


def color(i: int) -> str:
    return PALETTE[i % len(PALETTE)]


def _num(v: float) -> str:
    """Compact coordinate text."""
    return f"{v:.1f}".rstrip("0").rstrip(".") if abs(v) < 1e6 else f"{v:.0f}"


def _label(v: float) -> str:
    """Tick label text."""
    if v == 0:
        return "0"
    a = abs(v)
    if a >= 1e6 or a < 1e-3:
        return f"{v:.2g}"
    if a >= 1e4:
        return f"{v / 1e3:.0f}k" if a < 1e6 else f"{v:.2g}"
    return f"{v:.4g}"


def ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    """Round tick positions covering [lo, hi]."""
    if not (math.isfinite(lo) and math.isfinite(hi)) or hi <= lo:
        return [lo]
    raw = (hi - lo) / max(n - 1, 1)
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    first = math.ceil(lo / step - 1e-9) * step
    out = []
    v = first
    while v <= hi + step * 1e-9:
        out.append(0.0 if abs(v) < step * 1e-9 else v)
        v += step
    return out


def _finite(values) -> list[float]:
    return [float(v) for v in values if isinstance(v, (int, float)) and math.isfinite(v)]


def _extent(values: list[float], pad: float = 0.0) -> tuple[float, float]:
    if not values:
        return 0.0, 1.0
    lo, hi = min(values), max(values)
    if hi == lo:
        d = abs(lo) * 0.1 or 1.0
        return lo - d, hi + d
    d = (hi - lo) * pad
    return lo - d, hi + d


class Frame:
    """A plotting area with linear scales, axes and labels."""

    def __init__(self, xr, yr, *, width=WIDTH, height=HEIGHT, title=None, xlabel=None, ylabel=None,
                 xticks=True, yticks=True, aria=None, legend: Sequence[tuple[str, str]] = ()):
        self.x0, self.x1 = xr
        self.legend, legend_rows = _legend_rows(legend, width)
        self.pad_t = PAD_T + 13 * max(legend_rows - (0 if title else 1), 0)
        self.y0, self.y1 = yr
        self.w, self.h = width, height
        self.parts: list[str] = []
        self.title, self.xlabel, self.ylabel = title, xlabel, ylabel
        self.aria = aria or title or "chart"
        self.show_xticks, self.show_yticks = xticks, yticks

    def sx(self, x: float) -> float:
        return PAD_L + (x - self.x0) / ((self.x1 - self.x0) or 1.0) * (self.w - PAD_L - PAD_R)

    def sy(self, y: float) -> float:
        return self.h - PAD_B - (y - self.y0) / ((self.y1 - self.y0) or 1.0) * (self.h - self.pad_t - PAD_B)

    def add(self, svg: str) -> None:
        self.parts.append(svg)

    def _axes(self) -> str:
        out = []
        left, right, top, bottom = PAD_L, self.w - PAD_R, self.pad_t, self.h - PAD_B
        if self.show_yticks:
            for v in ticks(self.y0, self.y1):
                y = self.sy(v)
                out.append(f'<line class="g" x1="{left}" x2="{right}" y1="{_num(y)}" y2="{_num(y)}"/>'
                           f'<text x="{left - 4}" y="{_num(y + 3)}" text-anchor="end">{escape(_label(v))}</text>')
        if self.show_xticks:
            for v in ticks(self.x0, self.x1):
                x = self.sx(v)
                out.append(f'<text x="{_num(x)}" y="{bottom + 13}" text-anchor="middle">{escape(_label(v))}</text>')
        out.append(f'<rect class="ax" x="{left}" y="{top}" width="{right - left}" height="{bottom - top}"/>')
        if self.title:
            out.append(f'<text class="t" x="{left}" y="14">{escape(self.title)}</text>')
        if self.xlabel:
            out.append(f'<text x="{(left + right) / 2:.0f}" y="{self.h - 4}" text-anchor="middle">{escape(self.xlabel)}</text>')
        if self.ylabel:
            out.append(f'<text x="11" y="{(top + bottom) / 2:.0f}" text-anchor="middle" '
                       f'transform="rotate(-90 11 {(top + bottom) / 2:.0f})">{escape(self.ylabel)}</text>')
        return "".join(out)

    def svg(self) -> Markup:
        leg = []
        for name, col, x, row in self.legend:
            y = 6 + 13 * (row + (1 if self.title else 0))
            leg.append(f'<rect x="{_num(x)}" y="{y}" width="9" height="9" fill="{col}"/>'
                       f'<text x="{_num(x + 12)}" y="{y + 8}">{escape(name)}</text>')
        body = "".join(self.parts)
        return Markup(
            f'<svg class="chart" viewBox="0 0 {self.w} {self.h}" width="{self.w}" height="{self.h}" role="img" '
            f'aria-label="{escape(self.aria)}">{self._axes()}<g clip-path="none">{body}</g>{"".join(leg)}</svg>'
        )

    # -- marks -------------------------------------------------------------------

    def path(self, xs, ys, col: str, *, dash: bool = False, width: float = 1.5, gap: float | None = None) -> None:
        for seg in _segments(xs, ys, gap):
            d = "M" + "L".join(f"{_num(self.sx(x))} {_num(self.sy(y))}" for x, y in seg)
            extra = ' stroke-dasharray="4 3"' if dash else ""
            self.add(f'<path d="{d}" fill="none" stroke="{col}" stroke-width="{width}"{extra}/>')

    def band(self, xs, lows, highs, col: str, opacity: float = 0.18) -> None:
        pts = [(x, lo, hi) for x, lo, hi in zip(xs, lows, highs)
               if None not in (x, lo, hi) and math.isfinite(lo) and math.isfinite(hi)]
        if len(pts) < 2:
            return
        top = "L".join(f"{_num(self.sx(x))} {_num(self.sy(hi))}" for x, _, hi in pts)
        bottom = "L".join(f"{_num(self.sx(x))} {_num(self.sy(lo))}" for x, lo, _ in reversed(pts))
        self.add(f'<path d="M{top}L{bottom}Z" fill="{col}" fill-opacity="{opacity}" stroke="none"/>')

    def span(self, a: float, b: float) -> None:
        a, b = max(a, self.x0), min(b, self.x1)
        if b < a:
            return
        xa, xb = self.sx(a), self.sx(b)
        wdt = max(xb - xa, 2.0)
        self.add(f'<rect class="span" x="{_num(xa)}" y="{self.pad_t}" width="{_num(wdt)}" '
                 f'height="{self.h - self.pad_t - PAD_B}"/>')

    def dots(self, xs, ys, col: str, r: float = 2.5) -> None:
        for x, y in zip(xs, ys):
            if x is None or y is None or not (math.isfinite(x) and math.isfinite(y)):
                continue
            self.add(f'<circle cx="{_num(self.sx(x))}" cy="{_num(self.sy(y))}" r="{r}" fill="{col}"/>')

    def hline(self, y: float, cls: str = "ref") -> None:
        if self.y0 <= y <= self.y1:
            self.add(f'<line class="{cls}" x1="{PAD_L}" x2="{self.w - PAD_R}" y1="{_num(self.sy(y))}" '
                     f'y2="{_num(self.sy(y))}"/>')

    def vline(self, x: float, cls: str = "ref") -> None:
        if self.x0 <= x <= self.x1:
            self.add(f'<line class="{cls}" x1="{_num(self.sx(x))}" x2="{_num(self.sx(x))}" y1="{self.pad_t}" '
                     f'y2="{self.h - PAD_B}"/>')


def _legend_rows(legend, width) -> tuple[list[tuple[str, str, float, int]], int]:
    """Legend entries placed left to right, wrapping onto further rows."""
    out, x, row = [], float(PAD_L), 0
    for name, col in legend:
        w = 18 + 5.6 * len(name)
        if x + w > width and x > PAD_L:
            x, row = float(PAD_L), row + 1
        out.append((name, col, x, row))
        x += w
    return out, (row + 1 if out else 0)


def _segments(xs, ys, gap: float | None = None):
    """Runs of finite points; a missing value, or a jump in x larger than ``gap``, starts a new run."""
    seg: list[tuple[float, float]] = []
    for x, y in zip(xs, ys):
        if x is None or y is None or not (math.isfinite(x) and math.isfinite(y)):
            if seg:
                yield seg
            seg = []
            continue
        if gap is not None and seg and x - seg[-1][0] > gap:
            yield seg
            seg = []
        seg.append((float(x), float(y)))
    if seg:
        yield seg


def lines(lines_: Sequence[dict[str, Any]], *, title=None, xlabel="global step", ylabel=None,
          span: tuple[float, float] | None = None, dots: Sequence[tuple[float, float]] = (),
          xrange=None, yrange=None, width=WIDTH, height=HEIGHT, ref_y: float | None = None,
          breaks: bool = True) -> Markup:
    """Line chart; each line is ``{"name", "x", "y", "low"?, "high"?, "dash"?}``; ``span`` is shaded."""
    xs = [v for ln in lines_ for v in _finite(ln["x"])]
    ys = [v for ln in lines_ for key in ("y", "low", "high") for v in _finite(ln.get(key) or ())]
    ys += [y for _, y in dots if y is not None and math.isfinite(y)]
    if span is not None:
        xs += [v for v in span if v is not None]
    legend = [(ln["name"], ln.get("color") or color(i)) for i, ln in enumerate(lines_) if ln.get("name")]
    fr = Frame(xrange or _extent(xs), yrange or _extent(ys, 0.05), width=width, height=height, title=title,
               xlabel=xlabel, ylabel=ylabel, aria=title, legend=legend if len(legend) > 1 or not title else ())
    if span is not None:
        fr.span(*span)
    if ref_y is not None:
        fr.hline(ref_y)
    for i, ln in enumerate(lines_):
        col = ln.get("color") or color(i)
        if ln.get("low") is not None and ln.get("high") is not None:
            fr.band(ln["x"], ln["low"], ln["high"], col)
    for i, ln in enumerate(lines_):
        col = ln.get("color") or color(i)
        fr.path(ln["x"], ln["y"], col, dash=bool(ln.get("dash")), gap=_gap(ln["x"]) if breaks else None)
        if ln.get("points"):
            fr.dots(ln["x"], ln["y"], col, r=1.8)
    if dots:
        fr.dots([d[0] for d in dots], [d[1] for d in dots], "#d62728", r=3)
    return fr.svg()


def _gap(xs) -> float | None:
    """A jump in x more than three times the typical spacing (bins with no data) breaks a line."""
    fx = _finite(xs)
    if len(fx) < 3:
        return None
    diffs = sorted(b - a for a, b in zip(fx, fx[1:]) if b > a)
    return 3 * diffs[len(diffs) // 2] if diffs else None


def stacked(x: Sequence[float], layers: Sequence[tuple[str, Sequence[float]]], *, title=None,
            xlabel="global step", ylabel="share") -> Markup:
    """Stacked areas of fractions summing to at most 1 (action shares over training)."""
    fr = Frame(_extent(_finite(x)), (0.0, 1.0), title=title, xlabel=xlabel, ylabel=ylabel, aria=title,
               legend=[(name, color(i)) for i, (name, _) in enumerate(layers)])
    base = [0.0] * len(x)
    for i, (_, vals) in enumerate(layers):
        top = [b + (v or 0.0) for b, v in zip(base, vals)]
        pts_top = "L".join(f"{_num(fr.sx(a))} {_num(fr.sy(t))}" for a, t in zip(x, top))
        pts_bot = "L".join(f"{_num(fr.sx(a))} {_num(fr.sy(b))}" for a, b in zip(reversed(x), reversed(base)))
        fr.add(f'<path d="M{pts_top}L{pts_bot}Z" fill="{color(i)}" fill-opacity="0.75" stroke="none"/>')
        base = top
    return fr.svg()


def heatmap(counts: Sequence[Sequence[int]], xr: Sequence[float], yr: Sequence[float], *, title=None,
            xlabel=None, ylabel=None, size: int = 190, paths: Sequence[dict[str, Any]] = ()) -> Markup:
    """Counts on a grid (row = y bin from the bottom, column = x bin); log-scaled shading in HEAT_LEVELS steps."""
    n = len(counts)
    legend = [(p["name"], p.get("color") or color(i + 1)) for i, p in enumerate(paths)]
    rows = _legend_rows(legend, size + PAD_L + PAD_R)[1]
    fr = Frame((xr[0], xr[1]), (yr[0], yr[1]), width=size + PAD_L + PAD_R, height=size + PAD_T + PAD_B + 13 * rows,
               title=title, xlabel=xlabel, ylabel=ylabel, aria=title, legend=legend)
    top = max((c for row in counts for c in row), default=0)
    if top > 0:
        cw = (fr.w - PAD_L - PAD_R) / n
        ch = (fr.h - fr.pad_t - PAD_B) / n
        levels: dict[int, list[str]] = {}
        for yi, row in enumerate(counts):
            for xi, c in enumerate(row):
                if c <= 0:
                    continue
                level = max(1, math.ceil(HEAT_LEVELS * math.log1p(c) / math.log1p(top)))
                y = fr.h - PAD_B - (yi + 1) * ch
                levels.setdefault(level, []).append(f"M{_num(PAD_L + xi * cw)} {_num(y)}h{_num(cw)}v{_num(ch)}"
                                                    f"h-{_num(cw)}z")
        for level in sorted(levels):
            fr.add(f'<path d="{"".join(levels[level])}" fill="#08519c" '
                   f'fill-opacity="{0.1 + 0.9 * level / HEAT_LEVELS:.2f}"/>')
    for i, p in enumerate(paths):
        fr.path(p["x"], p["y"], p.get("color") or color(i + 1), width=1.4)
    return fr.svg()


def intervals(rows: Sequence[dict[str, Any]], *, title=None, xlabel=None, ref_x: float | None = None,
              width=WIDTH) -> Markup:
    """Horizontal point-and-interval chart; rows are ``{"label", "value", "low", "high"}``."""
    vals = [v for r in rows for v in _finite((r.get("value"), r.get("low"), r.get("high")))]
    if ref_x is not None:
        vals.append(ref_x)
    lo, hi = _extent(vals, 0.08)
    row_h = 22
    height = PAD_T + PAD_B + row_h * max(len(rows), 1)
    left = 150
    fr = Frame((lo, hi), (0, max(len(rows), 1)), width=width, height=height, title=title, xlabel=xlabel,
               yticks=False, aria=title)
    parts = []

    def sx(v):
        return left + (v - lo) / ((hi - lo) or 1.0) * (width - left - PAD_R)

    fr.sx = sx  # type: ignore[method-assign]
    for i, r in enumerate(rows):
        y = PAD_T + row_h * (i + 0.5)
        name = str(r["label"])
        short = name if len(name) <= 22 else name[:21] + "…"
        parts.append(f'<text x="{left - 6}" y="{_num(y + 4)}" text-anchor="end"><title>{escape(name)}</title>'
                     f'{escape(short)}</text>')
        v, a, b = r.get("value"), r.get("low"), r.get("high")
        col = r.get("color") or color(i)
        if a is not None and b is not None and math.isfinite(a) and math.isfinite(b):
            parts.append(f'<line x1="{_num(sx(a))}" x2="{_num(sx(b))}" y1="{_num(y)}" y2="{_num(y)}" '
                         f'stroke="{col}" stroke-width="3" stroke-opacity="0.55"/>')
        if v is not None and math.isfinite(v):
            parts.append(f'<circle cx="{_num(sx(v))}" cy="{_num(y)}" r="4" fill="{col}"/>')
    if ref_x is not None:
        parts.append(f'<line class="ref" x1="{_num(sx(ref_x))}" x2="{_num(sx(ref_x))}" y1="{PAD_T}" '
                     f'y2="{height - PAD_B}"/>')
    # axes drawn with the custom x scale
    axis = [f'<rect class="ax" x="{left}" y="{PAD_T}" width="{width - left - PAD_R}" height="{height - PAD_T - PAD_B}"/>']
    for t in ticks(lo, hi):
        axis.append(f'<text x="{_num(sx(t))}" y="{height - PAD_B + 13}" text-anchor="middle">{escape(_label(t))}</text>')
    if title:
        axis.append(f'<text class="t" x="{PAD_L}" y="14">{escape(title)}</text>')
    if xlabel:
        axis.append(f'<text x="{(left + width - PAD_R) / 2:.0f}" y="{height - 4}" text-anchor="middle">'
                    f'{escape(xlabel)}</text>')
    return Markup(f'<svg class="chart" viewBox="0 0 {width} {height}" width="{width}" height="{height}" role="img" '
                  f'aria-label="{escape(title or "intervals")}">{"".join(axis)}{"".join(parts)}</svg>')
