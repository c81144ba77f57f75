"""Live news for GET /stream through Redis pub/sub: any web process serves any OU's listeners."""

from __future__ import annotations

import json
from collections import defaultdict

from integrations.redis_keys import STREAM
from models.ingest import public_ids


def channel(unit_id: str) -> str:
    return STREAM(unit_id=unit_id)


def announce_events(redis, news: list[tuple[str, list[tuple]]]) -> None:
    """new_event: one message per OU per commit, however many events it held (PUBLISH to no one is cheap)."""
    by_unit: dict[str, list] = defaultdict(list)
    for unit_id, events in news:
        by_unit[unit_id] += [
            {**public_ids(key, row_id), "lead_id": lead_id, "event_type": event_type}
            for row_id, key, lead_id, event_type in events
        ]
    pipe = redis.pipeline(transaction=False)
    for unit_id, items in by_unit.items():
        pipe.publish(channel(unit_id), json.dumps({"type": "new_event", "items": items}))
    pipe.execute()


def announce_scores(redis, updates: list[tuple]) -> None:
    """score_update for every lead a batch changed, level_change for those that moved: one message per OU and kind."""
    scores: dict[str, list] = defaultdict(list)
    levels: dict[str, list] = defaultdict(list)
    for unit_id, lead_id, score, level_id, old_level_id in updates:
        scores[unit_id].append({"lead_id": lead_id, "score": score, "level_id": level_id})
        if level_id != old_level_id:
            levels[unit_id].append(
                {"lead_id": lead_id, "from_level_id": old_level_id, "to_level_id": level_id, "score": score}
            )
    if not scores:
        return
    pipe = redis.pipeline(transaction=False)
    for unit_id, items in scores.items():
        pipe.publish(channel(unit_id), json.dumps({"type": "score_update", "items": items}))
    for unit_id, items in levels.items():
        pipe.publish(channel(unit_id), json.dumps({"type": "level_change", "items": items}))
    pipe.execute()
