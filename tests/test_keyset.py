"""Keyset pages (models/keyset.py) over the leads list: every lead once, in the list's order, whatever the page size,
NULL last activity included (the lowest value), and cursors that were not made for the sort refused."""

from __future__ import annotations

import pytest

from models import keyset, lead_ops
from models.base import utcnow
from tests.helpers import ingest, published_ruleset, settle


@pytest.fixture
def leads(app, api, run_worker):
    published_ruleset(api, {"view": 5, "demo": 60})
    for n in range(7):
        ingest(api, f"a-{n}", "demo" if n % 3 == 0 else "view")
    for n in range(5):  # never active
        assert api.post("/leads", json={"id": f"q-{n}"}).status_code == 201
    settle(app, run_worker)


def every_page(app, tenant, sort: str, limit: int) -> list[str]:
    keys, seen, cursor = lead_ops.KEYSET_SORTS[sort], [], None
    with app.extensions["leadpulse"].Session() as session:
        stmt = lead_ops.list_statement(session, tenant.unit_id, {}, utcnow())
        expected = [r.lead_id for r in session.execute(stmt.order_by(*keyset.order_by(keys)))]
        while True:
            rows, cursor = keyset.page(session, stmt, keys, cursor, limit)
            seen += [r.lead_id for r in rows]
            assert len(rows) <= limit
            if cursor is None:
                return seen if seen == expected else pytest.fail(f"{sort} by {limit}: {seen} != {expected}")


def test_every_lead_once_in_order_whatever_the_page_size(app, tenant, leads):
    for sort in lead_ops.KEYSET_SORTS:
        for limit in (1, 2, 3, 5, 12, 50):
            seen = every_page(app, tenant, sort, limit)
            assert len(seen) == len(set(seen)) == 12, (sort, limit)
    newest = every_page(app, tenant, "-last_event_at", 4)
    assert newest[-5:] == [f"q-{n}" for n in range(4, -1, -1)]  # never active: the oldest activity
    assert every_page(app, tenant, "last_event_at", 4)[:5] == [f"q-{n}" for n in range(5)]


def test_a_cursor_not_made_for_the_sort_is_refused(app, tenant, leads):
    keys = lead_ops.KEYSET_SORTS["-score"]
    with app.extensions["leadpulse"].Session() as session:
        stmt = lead_ops.list_statement(session, tenant.unit_id, {}, utcnow())
        _, cursor = keyset.page(session, stmt, lead_ops.KEYSET_SORTS["-last_event_at"], None, 2)
        for bad in (cursor, "", "%%%", "bnVsbA", "W251bGwsIngiXQ", "WzEsMl0", "WyIxIiwieCJd", "WzEuNSwieCJd"):
            with pytest.raises(keyset.BadCursor):
                keyset.page(session, stmt, keys, bad or "x", 2)
