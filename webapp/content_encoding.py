"""Request bodies sent compressed (Content-Encoding: gzip), inflated in bounded steps: a small body never grows past the plain-body limit."""

from __future__ import annotations

import zlib

from flask import request

from webapp.errors import ApiError

GZIP = frozenset(("gzip", "x-gzip"))
MAX_MEMBERS = 16  # Segment's libraries send one; each member costs a fresh inflater and a copy of what follows it


def decoded_body() -> bytes:
    """The request body as sent, or gunzipped when Content-Encoding says gzip; any other coding is a 415."""
    raw = request.get_data(cache=True)
    encoding = request.headers.get("Content-Encoding", "").strip().lower()
    if encoding in ("", "identity"):
        return raw
    if encoding not in GZIP:
        raise ApiError(
            415,
            "unsupported_media_type",
            f"Content-Encoding {encoding[:40]!r} is not supported: send the body plain or gzip",
            {"Content-Encoding": ["identity or gzip"]},
        )
    return gunzip(raw, request.max_content_length)


def gunzip(data: bytes, limit: int) -> bytes:
    """Every gzip member of data, inflated to at most limit bytes in all (past it a 413, before more is held in memory)."""
    parts, size = [], 0
    while True:  # concatenated members are one valid gzip stream
        if len(parts) == MAX_MEMBERS:
            raise ApiError(
                400,
                "malformed_gzip",
                f"the gzip body has more than {MAX_MEMBERS} members",
                {"body": [f"at most {MAX_MEMBERS} gzip members"]},
            )
        inflater = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)  # gzip framing: header, then CRC and length checked
        try:
            part = inflater.decompress(data, limit + 1 - size)
        except zlib.error as exc:
            raise ApiError(400, "malformed_gzip", f"the gzip body is corrupt: {exc}", {"body": ["not valid gzip"]})
        size += len(part)
        if size > limit:
            raise ApiError(
                413,
                "payload_too_large",
                f"the gzip body inflates past {limit // 1024} KB",
                {"body": [f"over {limit} bytes once decompressed"]},
            )
        if not inflater.eof:
            raise ApiError(400, "malformed_gzip", "the gzip body is truncated", {"body": ["not valid gzip"]})
        parts.append(part)
        data = inflater.unused_data
        if not data:
            return b"".join(parts)
