"""A lead's metadata: merge semantics and the one way its 100 KB limit is measured."""

from __future__ import annotations

import json


def merged_metadata(current: dict | None, changes: dict) -> dict:
    """Keys given are set, a key given as None is removed, others stay (PATCH semantics, also for identify traits)."""
    out = dict(current or {})
    for key, value in changes.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = value
    return out


def metadata_size(metadata) -> int:
    """Bytes of metadata as JSON, measured one way everywhere the 100 KB limit applies."""
    return len(json.dumps(metadata, separators=(",", ":"), ensure_ascii=False, default=str).encode())


def metadata_within(metadata, limit: int) -> bool:
    """metadata_size(metadata) <= limit; the usual small flat dict passes on an upper bound, unserialized (ingest is hot).

    A character takes at most 6 bytes in the JSON (an escape like \\u0001; UTF-8 needs at most 4), a float or an int
    under 10**30 at most 32, quotes, colon and comma 4 per item.
    """
    if type(metadata) is dict and len(metadata) <= 64:
        bound = 2
        for key, value in metadata.items():
            kind = type(value)
            if type(key) is not str:
                break
            if kind is str:
                bound += 6 * (len(key) + len(value)) + 6
            elif kind in _SHORT_SCALARS and (kind is not int or -(10**30) < value < 10**30):
                bound += 6 * len(key) + 4 + 32
            else:
                break
        else:
            if bound <= limit:
                return True
    return metadata_size(metadata) <= limit


_SHORT_SCALARS = (int, float, bool, type(None))
