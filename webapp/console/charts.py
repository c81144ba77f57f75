"""A lead's score history as a chart drawn on the server: SVG geometry (a step line over the level bands) the template
writes out as attributes, because the page CSP allows no inline style and no script library (docs/console.md)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

WIDTH, HEIGHT = 960, 260
LEFT, RIGHT, TOP, BOTTOM = 44, 12, 10, 26  # margins: y labels on the left, dates below
PLOT_W, PLOT_H = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM


@dataclass
class Chart:
    width: int = WIDTH
    height: int = HEIGHT
    left: int = LEFT
    top: int = TOP
    plot_w: int = PLOT_W
    plot_h: int = PLOT_H
    line: str = ""  # an SVG path: the score, held between changes
    end: tuple[float, float] = (0.0, 0.0)  # where the line ends (now)
    bands: list[dict] = field(default_factory=list)  # {y, height, color, name}
    y_ticks: list[dict] = field(default_factory=list)  # {y, label}
    x_ticks: list[dict] = field(default_factory=list)  # {x, label}
    low: int = 0
    high: int = 0
    summary: str = ""


def _nice_top(value: int) -> int:
    """A round number at or above value, so the axis ends on a label a person reads at a glance."""
    for step in (10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000):
        if value <= step * 10:
            return -(-value // step) * step
    return value


def score_chart(start: datetime, end: datetime, start_score: int, points, levels) -> Chart:
    """points: HourPoint-likes (hour, score at the hour's end), oldest first; levels: rows with name, color, min_score,
    max_score. The y axis covers every score shown and every level boundary, from 0 or the lowest score up."""
    scores = [start_score, *(p.score for p in points)]
    bounds = [lv.min_score for lv in levels] + [lv.max_score + 1 for lv in levels if lv.max_score is not None]
    low = min(0, *scores)
    high = _nice_top(max(10, *scores, *(b + max(5, b // 5) for b in bounds)))
    span = max(high - low, 1)
    seconds = max((end - start).total_seconds(), 1.0)

    def x(t: datetime) -> float:
        return round(LEFT + PLOT_W * min(max((t - start).total_seconds() / seconds, 0.0), 1.0), 2)

    def y(score: float) -> float:
        return round(TOP + PLOT_H * (1 - (min(max(score, low), high) - low) / span), 2)

    path = [f"M{x(start)},{y(start_score)}"]
    for p in points:
        path.append(f"H{x(p.hour)}V{y(p.score)}")
    path.append(f"H{x(end)}")
    chart = Chart(line="".join(path), end=(x(end), y(scores[-1])), low=low, high=high)

    for lv in levels:
        top = high if lv.max_score is None else min(lv.max_score + 1, high)
        bottom = max(lv.min_score, low)
        if top > bottom:
            chart.bands.append(
                {"y": y(top), "height": round(y(bottom) - y(top), 2), "color": lv.color, "name": lv.name}
            )
    labels = sorted({low, high, *(b for b in bounds if low <= b <= high)})
    kept = []
    for value in labels:  # a label too close to the one below it would overlap it
        if not kept or y(kept[-1]) - y(value) >= 12:
            kept.append(value)
    chart.y_ticks = [{"y": y(v), "label": str(v)} for v in kept]
    days = (end - start).days
    step = max(days // 6, 1)
    for d in range(0, days - step // 2, step):  # no date label crowding the right edge
        t = start + timedelta(days=d)
        chart.x_ticks.append({"x": x(t), "label": f"{t.day} {t:%b}"})
    chart.summary = (
        f"Score over the last {days} days: {start_score} then, {scores[-1]} now, "
        f"lowest {min(scores)}, highest {max(scores)}, changed in {len(points)} hours."
    )
    return chart
