"""GET /admin/audit-logs: the active OU's audit log, with the reference's filters and sorting (docs/audit-log.md)."""

from __future__ import annotations

from marshmallow import ValidationError, fields, validate, validates_schema

from models.audit import AuditLog
from models.audit_records import SORTABLE, filtered, ordering
from webapp.blueprint import Blueprint
from webapp.crud import offset_page, scoped
from webapp.schema_base import OffsetArgs, StrictSchema, UTCDateTime

blp = Blueprint("audit_logs", __name__, description="Audit log")

STATUS = validate.Range(min=100, max=599)


class AuditLogArgs(OffsetArgs):
    search = fields.String(
        validate=validate.Length(min=1, max=200), metadata={"description": "substring of the user email, path or IP"}
    )
    method = fields.String(validate=validate.OneOf(["GET", "POST", "PUT", "PATCH", "DELETE"]))
    status_min = fields.Integer(validate=STATUS, metadata={"description": "inclusive"})
    status_max = fields.Integer(validate=STATUS, metadata={"description": "inclusive"})
    user_email = fields.String(validate=validate.Length(min=1, max=320), metadata={"description": "exact"})
    sort_by = fields.String(load_default="created_at", validate=validate.OneOf(list(SORTABLE)))
    sort_order = fields.String(load_default="DESC", validate=validate.OneOf(["ASC", "DESC"]))

    @validates_schema
    def _status_range(self, data, **_):
        if data.get("status_min", 0) > data.get("status_max", 999):
            raise ValidationError("must not be below status_min", "status_max")


class AuditEntrySchema(StrictSchema):
    id = fields.Integer()
    created_at = UTCDateTime()
    org_id = fields.String(allow_none=True)
    unit_id = fields.String(allow_none=True)
    member_id = fields.String(allow_none=True, metadata={"description": "the member who called, if one did"})
    user_email = fields.String(allow_none=True)
    credential_id = fields.String(
        allow_none=True, metadata={"description": "the API credential that called, if one did"}
    )
    client_id = fields.String(allow_none=True)
    credential_name = fields.String(allow_none=True)
    method = fields.String()
    path = fields.String(metadata={"description": "without the query string"})
    status = fields.Integer()
    ip = fields.String(allow_none=True)
    latency_ms = fields.Float()


class AuditPageSchema(StrictSchema):
    items = fields.List(fields.Nested(AuditEntrySchema))
    limit = fields.Integer()
    offset = fields.Integer()


ENTRIES = AuditEntrySchema(many=True)


@blp.route("/admin/audit-logs", methods=["GET"], need="own")  # the OU's Owners: who did what is theirs to see
@blp.arguments(AuditLogArgs, location="query")
@blp.response(200, AuditPageSchema)
def list_audit_logs(args):
    """Newest first unless sorted otherwise; at most 500 entries a page (100 unless limit says)."""
    return offset_page(
        filtered(scoped(AuditLog), args),
        args,
        dump=lambda rows: ENTRIES.dump(row[0] for row in rows),
        order_by=ordering(args["sort_by"], args["sort_order"]),
        default_limit=100,
    )
