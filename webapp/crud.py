"""The one generic way to do OU-scoped CRUD, lookups and pagination, reused by every resource."""

from __future__ import annotations

from flask import jsonify
from flask.views import MethodView
from marshmallow import fields
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from models.locks import lock_unit
from webapp.app_state import db
from webapp.auth import current_unit, principal
from webapp.errors import ApiError, not_found
from webapp.schema_base import PageArgs, StrictSchema


def scoped(model):
    """SELECT model rows of the caller's OU only: the tenant boundary lives here."""
    return select(model).where(model.unit_id == current_unit())


def get_scoped(model, obj_id, label: str):
    """Fetch by id within the caller's OU; another OU's object is indistinguishable from a missing one."""
    obj = db().execute(scoped(model).where(model.id == obj_id)).scalar()
    if obj is None:
        raise not_found(label)
    return obj


def paginate(
    stmt, args: dict, *, dump, key: str, default_limit: int = 50, cap: int = 500, order_by=(), unpaged_key=None
):
    """The API's list semantics: with page/limit an envelope with total; without, the bare array (capped), or that
    array under unpaged_key where the reference answers an object."""
    if "page" in args or "limit" in args:
        page, limit = args.get("page", 1), args.get("limit", default_limit)
        rows, total = page_of(stmt, page, limit, order_by)
        return jsonify({key: dump(rows), "total": total, "page": page, "limit": limit})
    total = _count(stmt)
    rows = db().execute(stmt.order_by(*order_by).limit(cap) if order_by else stmt.limit(cap)).all()
    resp = jsonify({unpaged_key: dump(rows)} if unpaged_key else dump(rows))
    resp.headers["X-Total-Count"] = str(total)
    return resp


def _count(stmt) -> int:
    return db().execute(select(func.count()).select_from(stmt.order_by(None).subquery())).scalar()


def page_of(stmt, page: int, limit: int, order_by=()) -> tuple[list, int]:
    """One page of the list (page from 1) and the total: the API's page/limit, which the console's tables use too."""
    stmt = stmt.order_by(*order_by) if order_by else stmt
    return db().execute(stmt.offset((page - 1) * limit).limit(limit)).all(), _count(stmt)


def page_doc(item, key: str, unpaged=None) -> dict:
    """How paginate's answer is documented: the bare array (or the unpaged schema), or with page or limit the envelope
    naming the total (a schema to declare once per list, at module level: each call names a new component)."""
    envelope = type(
        f"{item.__name__.removesuffix('Schema')}Page",
        (StrictSchema,),
        {
            key: fields.List(fields.Nested(item)),
            "total": fields.Integer(required=True),
            "page": fields.Integer(required=True),
            "limit": fields.Integer(required=True),
        },
    )
    # anyOf: an unpaged object (its list alone) also fits the envelope's looser reading
    return {"anyOf": [unpaged or {"type": "array", "items": item}, envelope]}


def offset_page(stmt, args: dict, *, dump, order_by, default_limit: int = 100):
    """The reference's offset-paged lists: {items, limit, offset} (limit and offset from OffsetArgs); no total, so no
    count of the whole filtered set on every page."""
    limit, offset = args.get("limit", default_limit), args.get("offset", 0)
    rows = db().execute(stmt.order_by(*order_by).offset(offset).limit(limit)).all()
    return jsonify({"items": dump(rows), "limit": limit, "offset": offset})


class Crud:
    """Create/update/delete of one OU-scoped model, with hooks for a resource's own rules."""

    model = None
    label = "object"
    # Rows an OU may keep: each is configuration some pass reads whole (every decay rule costs every decay pass), and
    # the unpaged list, the reference's, always holds them all.
    max_per_unit = 1000

    def list_query(self):
        """The OU's rows, oldest first (the id breaks ties, so pages neither repeat nor skip a row); a resource with
        its own order overrides this."""
        return scoped(self.model).order_by(self.model.created_at, self.model.id)

    def get(self, obj_id):
        return get_scoped(self.model, obj_id, self.label)

    def validate(self, session, obj, creating: bool) -> None:
        """Raise ApiError when the object breaks a rule of its resource."""

    def after_change(self, session, obj, action: str) -> None:
        """Follow-up work in the same transaction (reclassify, rescore, history)."""

    def conflict_message(self, obj) -> str:
        return f"{self.label} conflicts with an existing one"

    def refuse_duplicate(self, session, obj, field: str, *same) -> None:
        """409 naming the field when another row of this model matches the conditions."""
        clash = session.execute(
            select(func.count()).select_from(self.model).where(*same, self.model.id != (obj.id or ""))
        ).scalar()
        if clash:
            message = self.conflict_message(obj)
            raise ApiError(409, "conflict", message, {field: [message]})

    @staticmethod
    def check_window(obj, start: str, end: str) -> None:
        """A time window whose end precedes its start is a 400 naming the end field."""
        if getattr(obj, start) and getattr(obj, end) and getattr(obj, start) > getattr(obj, end):
            raise ApiError(400, "validation_error", f"{end} must not be before {start}", {end: [f"before {start}"]})

    def create(self, data: dict):
        # Every write starts with the OU lock: config changes of one OU are serialized and never race scoring.
        lock_unit(db(), current_unit())
        held = db().execute(select(func.count()).select_from(scoped(self.model).subquery())).scalar()
        if held >= self.max_per_unit:
            message = (
                f"an organization unit keeps at most {self.max_per_unit} of these ({self.label}); delete one first"
            )
            raise ApiError(409, "limit_reached", message)
        p = principal()
        obj = self.model(org_id=p.org_id, unit_id=current_unit(), **data)
        return self._save(obj, creating=True)

    def update(self, obj_id, data: dict):
        lock_unit(db(), current_unit())
        obj = self.get(obj_id)
        for key, value in data.items():
            setattr(obj, key, value)
        return self._save(obj, creating=False)

    def delete(self, obj_id) -> None:
        session = db()
        lock_unit(session, current_unit())
        obj = self.get(obj_id)
        self.before_delete(session, obj)
        session.delete(obj)
        session.flush()
        self.after_change(session, obj, "delete")
        session.commit()
        self.after_commit(obj, "delete")

    def before_delete(self, session, obj) -> None:
        """Raise ApiError to refuse a delete."""

    def after_commit(self, obj, action: str) -> None:
        """Side effects that must see the committed change (enqueueing jobs)."""

    def _save(self, obj, creating: bool):
        session = db()
        try:
            with session.no_autoflush:
                self.validate(session, obj, creating)
            session.add(obj)
            session.flush()
            self.after_change(session, obj, "create" if creating else "update")
            session.commit()
        except IntegrityError:
            session.rollback()
            raise ApiError(409, "conflict", self.conflict_message(obj))
        except Exception:
            session.rollback()
            raise
        self.after_commit(obj, "create" if creating else "update")
        return obj


def register_crud(
    blp,
    crud: Crud,
    schema,
    collection: str,
    item: str,
    *,
    list_key: str | None = None,
    update_schema=None,
    statuses: dict | None = None,
    member_only: tuple[str, ...] = (),
):
    """Routes for GET/POST collection and PUT/DELETE item, documented from the same schemas (statuses: a resource's
    own beyond Crud's, by method). The list pages as every list does (paginate), its items under list_key where the
    reference answers an object, else the bare array; paged, under list_key or the collection's last word."""
    update_schema = update_schema or schema(partial=True)
    own = statuses or {}
    statuses = {**own, **{m: (409, *own.get(m, ())) for m in ("post", "put")}}  # Crud._save: a clash with another row

    listed = None
    if list_key:  # documented as answered: the items under list_key
        listed = type(
            f"{schema.__name__.removesuffix('Schema')}List",
            (StrictSchema,),
            {list_key: fields.List(fields.Nested(schema))},
        )
    key = list_key or collection.rsplit("/", 1)[-1]
    items = schema(many=True)

    class Collection(MethodView):
        @blp.arguments(PageArgs, location="query")
        @blp.alt_response(200, schema=page_doc(schema, key, listed), success=True)
        def get(self, args):
            dump = lambda rows: items.dump(row[0] for row in rows)
            return paginate(crud.list_query(), args, dump=dump, key=key, cap=crud.max_per_unit, unpaged_key=list_key)

        @blp.arguments(schema)
        @blp.response(201, schema)
        def post(self, data):
            return crud.create(data)

    class Item(MethodView):
        @blp.response(200, schema)
        def get(self, obj_id):
            return crud.get(obj_id)

        @blp.arguments(update_schema)
        @blp.response(200, schema)
        def put(self, data, obj_id):
            return crud.update(obj_id, data)

        @blp.response(204)
        def delete(self, obj_id):
            crud.delete(obj_id)

    for view_class in (Collection, Item):
        for method in member_only:
            if hasattr(view_class, method):
                getattr(view_class, method)._member_only = True  # read by webapp/access.py, before registering
    blp.route(collection, statuses=statuses)(Collection)
    blp.route(item, statuses=statuses)(Item)
    return Collection, Item
