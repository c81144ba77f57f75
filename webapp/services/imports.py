"""CSV import: rows read one by one from the upload (never whole in memory), each checked as POST /ingest, 500 per transaction."""

from __future__ import annotations

import csv
import io
from itertools import islice

from marshmallow import ValidationError

from models.leads import ALIAS_KINDS
from webapp.app_state import state
from webapp.blueprint import strict_json_loads
from webapp.errors import ApiError
from webapp.services.event_input import BATCH_MAX
from webapp.services.ingest import ingest_items, parse_event

MAX_ERRORS = 1000  # reported row errors; the counts stay exact


def row_body(row: dict) -> dict:
    """A CSV row as a POST /ingest body: alias columns become aliases[], metadata is a JSON object."""
    body: dict = {"event_type": row.get("event_type") or ""}
    for key in ("lead_id", "timestamp", "event_id"):
        if row.get(key):
            body[key] = row[key]
    aliases = [{"alias_kind": kind, "raw_value": row[kind]} for kind in ALIAS_KINDS if row.get(kind)]
    if aliases:
        body["aliases"] = aliases
    if row.get("metadata"):
        try:
            body["metadata"] = strict_json_loads(row["metadata"])  # NaN, Infinity, 1e999: refused like in a JSON body
        except ValueError:
            raise ValidationError({"metadata": ["is not valid JSON"]})
    return body


def import_events(stream, quiet: bool, org_id: str, unit_id: str) -> dict:
    """Good rows go in, bad rows are reported by line; a row's event_id makes a re-import safe."""
    reader = csv.DictReader(io.TextIOWrapper(stream, encoding="utf-8-sig", newline=""))
    try:
        header = reader.fieldnames or []
    except (UnicodeDecodeError, csv.Error) as exc:
        raise ApiError(415, "unsupported_media_type", f"not a UTF-8 CSV file: {exc}", {"file": ["not CSV"]})
    if "event_type" not in header:
        raise ApiError(
            400, "validation_error", "the CSV needs an event_type column", {"file": ["missing column event_type"]}
        )
    limit = state().settings.max_metadata_bytes
    broken: list = []  # what ended the reading early, and the last line read before it

    def numbered_rows():
        line = 1
        try:
            for row in reader:
                line = reader.line_num
                yield line, row
        except (UnicodeDecodeError, csv.Error) as exc:  # the rows before it are still imported
            broken.append((line, exc))

    def event(row: dict):
        if None in row:
            raise ValidationError({"_schema": ["more fields than columns"]})
        incoming = parse_event(row_body(row), limit)
        incoming.quiet = quiet
        return incoming

    counts = {"accepted": 0, "duplicate": 0, "rejected": 0}
    errors: list[dict] = []
    rows = numbered_rows()
    while chunk := list(islice(rows, BATCH_MAX)):
        try:
            results = ingest_items(chunk, org_id, unit_id, event)
        except ApiError as exc:
            if exc.status != 429:
                raise
            raise quota_spent(exc, chunk[0][0], counts) from exc
        for result in results:
            counts[result["status"]] += 1
            if result["status"] == "rejected" and len(errors) < MAX_ERRORS:
                errors.append({"line": result["index"], "error": result["error"]["details"]})
    if broken:
        line, exc = broken[0]
        raise ApiError(
            400,
            "malformed_csv",
            f"line {line + 1}: {exc}; rows before it were imported",
            {"file": [str(exc)], "imported": [str(counts["accepted"] + counts["duplicate"])]},
        )
    return {**counts, "skip_triggers": quiet, "errors": errors, "errors_truncated": counts["rejected"] > len(errors)}


def quota_spent(exc: ApiError, line: int, counts: dict) -> ApiError:
    """The OU's event quota ran out mid-file: say where, so the rest can be sent from that line after Retry-After
    (every row sent takes from the quota, duplicates too: a whole file again costs it whole)."""
    imported = counts["accepted"] + counts["duplicate"]
    return ApiError(
        429,
        exc.code,
        f"{exc.message}: rows from line {line} on were not imported; rows before it were",
        {**exc.details, "imported": [str(imported)], "line": [str(line)]},
        headers=exc.headers,
    )
