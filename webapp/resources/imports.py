"""POST /import: a CSV of events, read row by row from the upload (never whole in memory), 500 rows per transaction."""
from __future__ import annotations

import csv
import io

from flask import jsonify, request
from marshmallow import ValidationError

from models.leads import ALIAS_KINDS
from webapp.auth import current_unit, principal
from webapp.blueprint import Blueprint, strict_json_loads
from webapp.errors import ApiError
from webapp.resources.ingest import BATCH_MAX, parse_event, rejection, store
from webapp.app_state import state

blp = Blueprint("imports", __name__, description="CSV import")
CSV_TYPES = {"text/csv", "application/csv", "text/plain", "application/vnd.ms-excel"}
MAX_ERRORS = 1000  # reported row errors; the counts stay exact
TRUE = {"1", "true", "yes", "on"}


def _accepts_any_body(view):
    view._accepts_any_body = True  # multipart, not JSON: the JSON-body check does not apply
    return view


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


@blp.route("/import", methods=["POST"], statuses=(202,))
@_accepts_any_body
def import_csv():
    """Good rows go in, bad rows are reported by line; a row's event_id makes a re-import safe."""
    settings = state().settings
    request.max_content_length = settings.import_max_bytes + 8 * 1024  # the file plus the multipart framing
    if request.mimetype != "multipart/form-data":
        raise ApiError(415, "unsupported_media_type", "send the CSV as multipart/form-data in a field named file")
    upload = request.files.get("file")
    if upload is None:
        raise ApiError(400, "validation_error", "the CSV goes in a multipart field named file", {"file": ["required"]})
    if upload.mimetype not in CSV_TYPES and not (upload.filename or "").lower().endswith(".csv"):
        raise ApiError(415, "unsupported_media_type", f"expected a CSV file, got {upload.mimetype}", {"file": ["not CSV"]})
    quiet = (request.form.get("skip_triggers") or "").lower() in TRUE
    org_id, unit_id = principal().org_id, current_unit()
    reader = csv.DictReader(io.TextIOWrapper(upload.stream, encoding="utf-8-sig", newline=""))
    try:
        header = reader.fieldnames or []
    except (UnicodeDecodeError, csv.Error) as exc:
        raise ApiError(415, "unsupported_media_type", f"not a UTF-8 CSV file: {exc}", {"file": ["not CSV"]})
    if "event_type" not in header:
        raise ApiError(400, "validation_error", "the CSV needs an event_type column", {"file": ["missing column event_type"]})
    counts = {"accepted": 0, "duplicate": 0, "rejected": 0}
    errors: list[dict] = []
    chunk: list = []

    def flush():
        for result in store(chunk, org_id, unit_id):
            counts["duplicate" if result.duplicate else "accepted"] += 1
        chunk.clear()

    line = 1
    try:
        for row in reader:
            line = reader.line_num
            try:
                if None in row:
                    raise ValidationError({"_schema": ["more fields than columns"]})
                incoming = parse_event(row_body(row), settings.max_metadata_bytes)
                incoming.quiet = quiet
                chunk.append(incoming)
            except (ValidationError, ApiError) as exc:
                counts["rejected"] += 1
                if len(errors) < MAX_ERRORS:
                    errors.append({"line": line, "error": rejection(exc)["details"]})
            if len(chunk) >= BATCH_MAX:
                flush()
    except (UnicodeDecodeError, csv.Error) as exc:
        if chunk:
            flush()
        raise ApiError(400, "malformed_csv", f"line {line + 1}: {exc}; rows before it were imported",
                       {"file": [str(exc)], "imported": [str(counts["accepted"] + counts["duplicate"])]})
    if chunk:
        flush()
    resp = jsonify({**counts, "skip_triggers": quiet, "errors": errors, "errors_truncated": counts["rejected"] > len(errors)})
    resp.status_code = 202
    return resp
