"""POST /import: parse the multipart upload, hand the CSV to the import service, answer 202 with its counts."""

from __future__ import annotations

from flask import request
from marshmallow import fields

from webapp.app_state import state
from webapp.auth import current_unit, principal
from webapp.blueprint import Blueprint
from webapp.errors import ApiError
from webapp.schema_base import StrictSchema
from webapp.services.imports import import_events

blp = Blueprint("imports", __name__, description="CSV import")
CSV_TYPES = {"text/csv", "application/csv", "text/plain", "application/vnd.ms-excel"}
TRUE = {"1", "true", "yes", "on"}


def _accepts_any_body(view):
    view._accepts_any_body = True  # multipart, not JSON: the JSON-body check does not apply
    return view


UPLOAD = {  # the multipart form the view reads itself (a CSV is no JSON body for webargs to parse)
    "required": True,
    "content": {
        "multipart/form-data": {
            "schema": {
                "type": "object",
                "required": ["file"],
                "properties": {
                    "file": {"type": "string", "format": "binary", "description": "the CSV, header row first"},
                    "skip_triggers": {"type": "string", "description": "1, true, yes or on: no triggers fire"},
                },
            },
            "encoding": {"file": {"contentType": "text/csv"}},
        }
    },
}


class RowErrorSchema(StrictSchema):
    line = fields.Integer(metadata={"description": "the line of the file the row ends on (the header is line 1)"})
    error = fields.Dict(
        keys=fields.String(), values=fields.List(fields.String()), metadata={"description": "field -> problems"}
    )


class ImportedSchema(StrictSchema):
    accepted = fields.Integer()
    duplicate = fields.Integer()
    rejected = fields.Integer()
    skip_triggers = fields.Boolean()
    errors = fields.List(fields.Nested(RowErrorSchema), metadata={"description": "the first 1000 rejected rows"})
    errors_truncated = fields.Boolean(metadata={"description": "more rows were rejected than errors lists"})


@blp.route("/import", methods=["POST"], statuses=(202,))
@blp.doc(requestBody=UPLOAD)
@blp.alt_response(202, schema=ImportedSchema, success=True)
@_accepts_any_body
def import_csv():
    """Good rows go in, bad rows are reported by line; a row's event_id makes a re-import safe."""
    request.max_content_length = state().settings.import_max_bytes + 8 * 1024  # the file plus the multipart framing
    if request.mimetype != "multipart/form-data":
        raise ApiError(415, "unsupported_media_type", "send the CSV as multipart/form-data in a field named file")
    upload = request.files.get("file")
    if upload is None:
        raise ApiError(400, "validation_error", "the CSV goes in a multipart field named file", {"file": ["required"]})
    if upload.mimetype not in CSV_TYPES and not (upload.filename or "").lower().endswith(".csv"):
        raise ApiError(
            415, "unsupported_media_type", f"expected a CSV file, got {upload.mimetype}", {"file": ["not CSV"]}
        )
    quiet = (request.form.get("skip_triggers") or "").lower() in TRUE
    return import_events(upload.stream, quiet, principal().org_id, current_unit()), 202
