"""Inline SVG charts for the report: a score histogram, bar charts, two ECDFs.

Hand-written SVG (no plotting library): the page stays one self-contained
file that any browser draws, charts scale with the page, and every bar carries
a ``<title>`` so hovering names its exact count. Colours come from CSS classes
that the page's stylesheet defines. Pure functions: numbers in, markup out.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from html import escape

import numpy as np

from stylefix_core.qa_report.stats import Histogram, KSResult

_ECDF_POINTS = 500
Scale = Callable[[float], float]


@dataclass(frozen=True)
class Frame:
    """A plot area inside an SVG canvas (pixels in the viewBox)."""

    width: int = 720
    height: int = 260
    left: int = 52
    right: int = 20
    top: int = 22
    bottom: int = 40

    @property
    def inner_width(self) -> float:
        return self.width - self.left - self.right

    @property
    def inner_height(self) -> float:
        return self.height - self.top - self.bottom

    @property
    def baseline(self) -> float:
        return self.height - self.bottom


def fmt(value: float) -> str:
    """A short human number: about 3 significant digits, no trailing zeros."""
    if not math.isfinite(value):
        return str(value)
    magnitude = abs(value)
    if magnitude == 0:
        return "0"
    if magnitude >= 1000 or magnitude < 0.001:
        return f"{value:.3g}"
    text = f"{value:.{max(0, 2 - math.floor(math.log10(magnitude)))}f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


def nice_ticks(low: float, high: float, count: int = 5) -> list[float]:
    """Round tick values (steps of 1, 2 or 5 times a power of ten) within [low, high]."""
    if high <= low:
        return [low]
    raw = (high - low) / max(1, count)
    power = 10 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 5, 10) if m * power >= raw)
    first = math.ceil(low / step - 1e-9) * step
    ticks = []
    value = first
    while value <= high + step * 1e-9:
        ticks.append(round(value, 12))
        value += step
    return ticks


def histogram_svg(histogram: Histogram, threshold: float | None, label: str) -> str:
    """Bars of the score histogram; bars past the threshold in the alert colour."""
    frame = Frame()
    counts = histogram.counts
    slots = len(counts) + (1 if histogram.overflow else 0)
    low, high = float(histogram.edges[0]), float(histogram.edges[-1])
    binned_width = frame.inner_width * len(counts) / slots
    x_of = _scaler(low, high, frame.left, frame.left + binned_width)
    top_count = max(int(counts.max(initial=0)), histogram.overflow, 1)
    y_ticks = [t for t in nice_ticks(0, top_count, 4) if t == int(t)]
    y_max = max(top_count, int(y_ticks[-1]) if y_ticks else 1)
    parts = [_open(frame, label), *_y_axis(frame, y_ticks, y_max)]
    parts += _histogram_bars(frame, histogram, threshold, frame.inner_width / slots, y_max)
    parts += _x_axis(frame, low, high, x_of)
    parts += _threshold_mark(frame, threshold, low, high, x_of, labelled=True)
    parts.append("</svg>")
    return "".join(parts)


def _histogram_bars(
    frame: Frame, histogram: Histogram, threshold: float | None, width: float, y_max: int
) -> list[str]:
    edges = histogram.edges
    parts = []
    for index, count in enumerate(histogram.counts):
        low, high = float(edges[index]), float(edges[index + 1])
        over = threshold is not None and low >= threshold
        tip = f"{fmt(low)} to {fmt(high)}: {int(count)} image(s)"
        parts.append(_bar(frame, index * width, width, int(count), y_max, over, tip))
    if histogram.overflow:
        top = float(edges[-1])
        x = len(histogram.counts) * width
        tip = f"above {fmt(top)}: {histogram.overflow} image(s)"
        parts.append(_bar(frame, x, width, histogram.overflow, y_max, True, tip, "overflow"))
        parts.append(_text(frame.left + x + width / 2, frame.baseline + 30, f">{fmt(top)}", "tick"))
    return parts


def bars_svg(items: Sequence[tuple[str, int]], label: str, unit: str = "image(s)") -> str:
    """Horizontal bars, one per item, longest first as given; label left, count right."""
    row = 26
    frame = Frame(height=row * max(1, len(items)) + 16, left=170, right=60, top=8, bottom=8)
    peak = max((count for _, count in items), default=0) or 1
    parts = [_open(frame, label)]
    for index, (name, count) in enumerate(items):
        y = frame.top + index * row
        width = frame.inner_width * count / peak
        parts.append(
            f'<rect class="bar" x="{frame.left}" y="{y + 4:.1f}" width="{width:.1f}" '
            f'height="{row - 8}"><title>{escape(name)}: {count} {unit}</title></rect>'
        )
        parts.append(_text(frame.left - 8, y + row / 2 + 4, name, "bar-label", "end"))
        parts.append(
            _text(frame.left + width + 6, y + row / 2 + 4, str(count), "bar-value", "start")
        )
    parts.append("</svg>")
    return "".join(parts)


def ecdf_svg(
    previous: np.ndarray, current: np.ndarray, drift: KSResult, threshold: float | None
) -> str:
    """Both runs' cumulative score distributions, with the KS gap marked."""
    frame = Frame(height=280)
    before, now = np.sort(previous), np.sort(current)
    pooled = np.concatenate([before, now])
    marks = [] if threshold is None else [threshold]
    low = float(min([pooled.min(), *marks]))
    high = float(max([np.quantile(pooled, 0.99), *marks]))
    high = high if high > low else low + 1.0
    x_of = _scaler(low, high, frame.left, frame.left + frame.inner_width)
    y_of = _scaler(0.0, 1.0, frame.baseline, frame.top)
    parts = [_open(frame, "cumulative distribution of anomaly scores, previous and this run")]
    parts += _y_axis(frame, [0.0, 0.25, 0.5, 0.75, 1.0], 1.0, fractions=True)
    parts += _x_axis(frame, low, high, x_of)
    parts.append(_step_line(before, low, high, x_of, y_of, "ecdf previous"))
    parts.append(_step_line(now, low, high, x_of, y_of, "ecdf current"))
    if drift.statistic > 0 and low <= drift.location <= high:
        x = x_of(drift.location)
        y1 = y_of(float(np.searchsorted(before, drift.location, "right")) / before.size)
        y2 = y_of(float(np.searchsorted(now, drift.location, "right")) / now.size)
        parts.append(_line(x, y1, x, y2, "ks-gap"))
        parts.append(_text(x + 5, (y1 + y2) / 2, f"D = {drift.statistic:.3f}", "ks-label", "start"))
    parts += _threshold_mark(frame, threshold, low, high, x_of, labelled=False)
    parts += _legend(frame, [("previous run", "ecdf previous"), ("this run", "ecdf current")])
    parts.append("</svg>")
    return "".join(parts)


def _x_axis(frame: Frame, low: float, high: float, x_of: Scale) -> list[str]:
    parts = []
    for tick in nice_ticks(low, high, 6):
        parts.append(_line(x_of(tick), frame.baseline, x_of(tick), frame.baseline + 5, "axis"))
        parts.append(_text(x_of(tick), frame.baseline + 18, fmt(tick), "tick"))
    middle = frame.left + frame.inner_width / 2
    parts.append(_text(middle, frame.height - 4, "anomaly score", "axis-label"))
    return parts


def _threshold_mark(
    frame: Frame, threshold: float | None, low: float, high: float, x_of: Scale, labelled: bool
) -> list[str]:
    if threshold is None or not low <= threshold <= high:
        return []
    x = x_of(threshold)
    parts = [_line(x, frame.top - (6 if labelled else 0), x, frame.baseline, "threshold")]
    if labelled:
        label = f"threshold {fmt(threshold)}"
        parts.append(_text(x + 4, frame.top - 8, label, "threshold-label", "start"))
    return parts


def _open(frame: Frame, label: str) -> str:
    return (
        f'<svg class="chart" viewBox="0 0 {frame.width} {frame.height}" role="img" '
        f'aria-label="{escape(label)}" xmlns="http://www.w3.org/2000/svg">'
        f"<title>{escape(label)}</title>"
    )


def _y_axis(frame: Frame, ticks: Sequence[float], top: float, fractions: bool = False) -> list[str]:
    parts = [_line(frame.left, frame.top, frame.left, frame.baseline, "axis")]
    for tick in ticks:
        y = frame.baseline - frame.inner_height * tick / top
        parts.append(_line(frame.left, y, frame.left + frame.inner_width, y, "grid"))
        text = f"{tick:.2f}" if fractions else str(int(tick))
        parts.append(_text(frame.left - 6, y + 4, text, "tick", "end"))
    parts.append(
        _line(frame.left, frame.baseline, frame.left + frame.inner_width, frame.baseline, "axis")
    )
    return parts


def _bar(
    frame: Frame,
    x: float,
    width: float,
    count: int,
    top: int,
    over: bool,
    tip: str,
    extra: str = "",
) -> str:
    height = frame.inner_height * count / top
    classes = " ".join(c for c in ("bar", "over" if over else "", extra) if c)
    return (
        f'<rect class="{classes}" x="{frame.left + x + 1:.1f}" y="{frame.baseline - height:.1f}" '
        f'width="{max(width - 2, 1):.1f}" height="{height:.1f}"><title>{escape(tip)}</title></rect>'
    )


def _step_line(
    values: np.ndarray, low: float, high: float, x_of: Scale, y_of: Scale, css: str
) -> str:
    """The ECDF of sorted ``values`` as a step polyline over [low, high].

    Small samples get one step per value; large ones are drawn from the ECDF
    at ``_ECDF_POINTS`` positions, so the page stays small for a million scores.
    """
    inside = values[(values >= low) & (values <= high)]
    xs = inside if inside.size <= _ECDF_POINTS else np.linspace(low, high, _ECDF_POINTS)
    levels = np.searchsorted(values, xs, "right") / values.size
    level = float(np.sum(values < low)) / values.size
    points = [(low, level)]
    for x, step in zip(xs.tolist(), levels.tolist(), strict=True):
        points += [(x, level), (x, step)]
        level = step
    points.append((high, level))
    coords = " ".join(f"{x_of(x):.1f},{y_of(y):.1f}" for x, y in points)
    return f'<polyline class="{css}" points="{coords}"/>'


def _legend(frame: Frame, entries: Sequence[tuple[str, str]]) -> list[str]:
    parts = []
    x = frame.left + 12
    for index, (name, css) in enumerate(entries):
        y = frame.top + 10 + index * 16
        parts.append(_line(x, y, x + 22, y, css))
        parts.append(_text(x + 28, y + 4, name, "legend", "start"))
    return parts


def _scaler(low: float, high: float, start: float, end: float) -> Scale:
    span = high - low

    def scale(value: float) -> float:
        return start + (value - low) / span * (end - start)

    return scale


def _line(x1: float, y1: float, x2: float, y2: float, css: str) -> str:
    return f'<line class="{css}" x1="{x1:.1f}" y1="{y1:.1f}" x2="{x2:.1f}" y2="{y2:.1f}"/>'


def _text(x: float, y: float, text: str, css: str, anchor: str = "middle") -> str:
    return (
        f'<text class="{css}" x="{x:.1f}" y="{y:.1f}" text-anchor="{anchor}">{escape(text)}</text>'
    )
