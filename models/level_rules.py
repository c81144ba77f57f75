"""Pure rules of a level table: validation and classification of a score."""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

COLOR_RE = re.compile(r"^#[0-9a-fA-F]{6}$")


@dataclass(frozen=True)
class LevelSpec:
    id: str
    name: str
    min_score: int
    max_score: int | None


class LevelTableError(ValueError):
    """A level table that breaks a rule; carries the offending field for the 400 body."""

    def __init__(self, field: str, message: str, code: str = "invalid_levels"):
        super().__init__(message)
        self.field, self.message, self.code = field, message, code


def valid_color(color: str) -> bool:
    return bool(COLOR_RE.match(color))


def _upper(level: LevelSpec) -> float:
    return float("inf") if level.max_score is None else level.max_score


def validate_table(levels: Iterable[LevelSpec]) -> None:
    """Ranges inclusive, min <= max, no overlap, names unique (case-insensitive)."""
    levels = sorted(levels, key=lambda lv: lv.min_score)
    seen: set[str] = set()
    for lv in levels:
        if lv.max_score is not None and lv.max_score < lv.min_score:
            raise LevelTableError(
                "max_score", f"max_score ({lv.max_score}) is below min_score ({lv.min_score}) for level '{lv.name}'"
            )
        key = lv.name.strip().lower()
        if key in seen:
            raise LevelTableError("name", f"a level named '{lv.name}' already exists", code="duplicate_name")
        seen.add(key)
    for lower, upper in zip(levels, levels[1:]):
        if _upper(lower) >= upper.min_score:
            raise LevelTableError(
                "min_score",
                f"score ranges overlap: '{lower.name}' ({_fmt(lower)}) and '{upper.name}' ({_fmt(upper)})",
                code="overlapping_ranges",
            )


def _fmt(level: LevelSpec) -> str:
    return f"{level.min_score}-{level.max_score}" if level.max_score is not None else f"{level.min_score}+"


def classify(score: int, levels: Sequence[LevelSpec]) -> LevelSpec | None:
    """The level whose inclusive range holds the score, or None (Unclassified)."""
    for lv in levels:
        if lv.min_score <= score and (lv.max_score is None or score <= lv.max_score):
            return lv
    return None


def unclassified_ranges(levels: Iterable[LevelSpec]) -> list[tuple[int | None, int | None]]:
    """The inclusive score ranges no level holds, low to high (None: unbounded): where Unclassified leads score."""
    gaps: list[tuple[int | None, int | None]] = []
    start: int | None = None  # the lowest score not yet covered (None: from the lowest there is)
    for lv in sorted(levels, key=lambda lv: lv.min_score):
        if start is None or lv.min_score > start:
            gaps.append((start, lv.min_score - 1))
        if lv.max_score is None:
            return gaps
        start = lv.max_score + 1
    return [*gaps, (start, None)]
