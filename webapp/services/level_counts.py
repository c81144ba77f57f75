"""The levels bar's figures: exact for an OU of ordinary size; for a large one, counted at most once per
LARGE_OU_SECONDS and shared by every page and live refresh of the OU meanwhile (docs/console.md, "Pagination")."""

from __future__ import annotations

import hashlib
import json

from redis.exceptions import RedisError

from models.level_queries import level_counts
from webapp.app_state import db, state

LARGE_OU_LEADS = 20_000  # from here a count reads enough rows (~5 ms per 20,000) to be worth keeping
LARGE_OU_SECONDS = 30


def recent_level_counts(unit_id: str, levels, large_from: int = LARGE_OU_LEADS) -> dict[str | None, int]:
    """How many of the OU's leads each level holds (None: no level), as level_counts answers; a large OU's kept in
    Redis for LARGE_OU_SECONDS under its level table (ids and ranges), so an edit of the levels shows at once."""
    table = ",".join(f"{lv.id}:{lv.min_score}:{lv.max_score}" for lv in levels)
    key = f"lp:level-counts:{unit_id}:{hashlib.sha256(table.encode()).hexdigest()[:16]}"
    try:
        kept = state().redis.get(key)
    except RedisError:
        kept = None  # Redis away: count, as for a small OU
    if kept is not None:
        return {(k or None): n for k, n in json.loads(kept).items()}
    counts = level_counts(db(), unit_id)
    if sum(counts.values()) >= large_from:
        try:
            state().redis.set(key, json.dumps({k or "": n for k, n in counts.items()}), ex=LARGE_OU_SECONDS)
        except RedisError:
            pass
    return counts
