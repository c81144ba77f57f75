"""GET /leads with the reference's parameters, lead detail, create, and score endpoints."""

from datetime import timedelta

from sqlalchemy import update

from models.base import utcnow
from models.leads import Lead
from tests.conftest import Api
from tests.helpers import create_levels, ingest, leads_by_id, published_ruleset, statements_sent


def setup_leads(api, run_worker):
    levels = create_levels(api)
    rs = published_ruleset(api, {"page_view": 5, "demo_request": 30})
    for lead, events in {
        "a": ["page_view"],
        "b": ["demo_request"],
        "c": ["demo_request", "demo_request"],
        "d": ["page_view", "demo_request"],
    }.items():
        for et in events:
            ingest(api, lead, et)
    run_worker()
    return levels, rs


def test_array_form_envelope_form_and_fields(api, run_worker, tenant):
    levels, rs = setup_leads(api, run_worker)
    r = api.get("/leads")
    assert r.status_code == 200 and isinstance(r.json, list)
    assert r.headers["X-Total-Count"] == "4"
    assert [lead["lead_id"] for lead in r.json] == ["c", "d", "b", "a"]  # score descending by default
    lead = r.json[0]
    assert set(lead) >= {
        "org_id",
        "lead_id",
        "score",
        "ruleset_id",
        "last_event_at",
        "created_at",
        "updated_at",
        "owner_name",
        "engagement_scores",
        "profile_scores",
        "ruleset_names",
        "engagement_primary_ruleset_name",
        "profile_primary_ruleset_name",
        "level",
    }
    assert lead["org_id"] == tenant.org_id and lead["score"] == 60 and lead["engagement_scores"] == {rs: 60}
    assert lead["level"] == {"id": levels["Hot"], "name": "Hot", "color": "#f97316"}
    assert lead["engagement_primary_ruleset_name"] == "Engagement"
    assert lead["last_event_at"].endswith("Z")
    r = api.get("/leads?page=2&limit=3")
    assert r.json["total"] == 4 and r.json["page"] == 2 and r.json["limit"] == 3
    assert [x["lead_id"] for x in r.json["leads"]] == ["a"]
    r = api.get("/leads?page=1")
    assert r.json["limit"] == 25  # the reference's default


def test_filters_and_sort(api, app, run_worker):
    created_on = utcnow().date()
    setup_leads(api, run_worker)
    assert set(leads_by_id(api, min_score=30)) == {"b", "c", "d"}
    assert set(leads_by_id(api, max_score=30)) == {"a", "b"}
    assert set(leads_by_id(api, min_score=30, max_score=35)) == {"b", "d"}
    assert set(leads_by_id(api, event_type="page_view")) == {"a"}  # last event type per lead
    assert set(leads_by_id(api, level="Warm")) == {"b", "d"}
    assert set(leads_by_id(api, last_active="7d")) == {"a", "b", "c", "d"}
    asked_on = utcnow().date()
    today, yesterday = (set(leads_by_id(api, range=r)) for r in ("today", "yesterday"))
    if utcnow().date() == asked_on:  # else UTC midnight fell between the two reads: they are not comparable
        assert (today, yesterday) == (
            ({"a", "b", "c", "d"}, set()) if asked_on == created_on else (set(), today | yesterday)
        )
    with app.extensions["leadpulse"].Session() as s, s.begin():
        old = utcnow() - timedelta(days=40)
        s.execute(update(Lead).where(Lead.lead_id == "a").values(created_at=old, last_event_at=old))
    assert set(leads_by_id(api, last_active="30d")) == {"b", "c", "d"}
    assert set(leads_by_id(api, range="last_30d")) == {"b", "c", "d"}
    assert set(leads_by_id(api, range="last_90d")) == {"a", "b", "c", "d"}
    assert list(leads_by_id(api, sort="score")) == ["a", "b", "d", "c"]
    assert list(leads_by_id(api, sort="lead_id")) == ["a", "b", "c", "d"]


def test_list_bad_parameters(api):
    for qs, field in [
        ("page=0", "page"),
        ("page=x", "page"),
        ("limit=501", "limit"),
        ("limit=0", "limit"),
        ("min_score=high", "min_score"),
        ("last_active=1y", "last_active"),
        ("range=forever", "range"),
        ("sort=random", "sort"),
        ("level=Nope", "level"),
    ]:
        r = api.get(f"/leads?{qs}")
        assert r.status_code == 400 and field in r.json["error"]["details"], (qs, r.json)


def test_array_form_is_capped_at_500(api, app, tenant):
    from models.ingest import resolve_lead

    with app.extensions["leadpulse"].Session() as s, s.begin():
        for i in range(520):
            resolve_lead(s, tenant.org_id, tenant.unit_id, f"lead-{i:04d}", [])
    r = api.get("/leads")
    assert len(r.json) == 500 and r.headers["X-Total-Count"] == "520"


def test_create_and_detail(api, run_worker):
    levels = create_levels(api)
    r = api.post("/leads", json={"id": "crm-1", "metadata": {"plan": "Pro"}, "account_id": "acct-9"})
    assert r.status_code == 201
    assert r.json["id"] == "crm-1" and r.json["metadata"] == {"plan": "Pro"} and r.json["account_id"] == "acct-9"
    assert api.post("/leads", json={"id": "crm-1"}).status_code == 409
    for body, field in [
        ({}, "id"),
        ({"id": ""}, "id"),
        ({"id": "x", "metadata": []}, "metadata"),
        ({"id": "x", "org_id": "o"}, "org_id"),
    ]:
        r = api.post("/leads", json=body)
        assert r.status_code == 400 and field in r.json["error"]["details"]
    for path in ("/lead/crm-1", "/leads/crm-1"):
        r = api.get(path)
        assert r.status_code == 200 and r.json["lead"]["id"] == "crm-1" and r.json["account"] is None
    assert api.get("/lead/missing").status_code == 404
    assert api.get("/lead/crm-1").json["lead"]["level"]["id"] == levels["Cold"]  # classified at creation
    # a created lead is included with score 0 and then scored by events
    published_ruleset(api, {"page_view": 5})
    assert leads_by_id(api)["crm-1"]["score"] == 0
    ingest(api, "crm-1", "page_view")
    run_worker()
    assert api.get("/lead/crm-1").json["lead"]["score"] == 5


def test_score_endpoints(api, run_worker):
    levels, rs = setup_leads(api, run_worker)
    other = published_ruleset(api, {"page_view": 1}, name="Other", primary=False)
    for path in ("/score/d", "/leads/d/score"):
        r = api.get(path)
        assert r.status_code == 200
        assert r.json == {
            "lead_id": "d",
            "score": 35,
            "ruleset_id": rs,
            "engagement_scores": {rs: 35, other: 1},
            "profile_scores": {},
            "level": {"id": levels["Warm"], "name": "Warm", "color": "#fbbf24"},
            "decay_forecast": None,  # the OU has no decay rule
        }
    assert api.get(f"/score/d?ruleset_id={other}").json["score"] == 1
    assert api.get("/score/d?ruleset_id=nope").status_code == 404
    assert api.get("/score/nobody").status_code == 404
    r = api.post("/leads/scores", json={"lead_ids": ["a", "d", "ghost"]})
    assert r.status_code == 200
    assert r.json == [
        {"lead_id": "a", "score": 5, "ruleset_id": rs, "found": True},
        {"lead_id": "d", "score": 35, "ruleset_id": rs, "found": True},
        {"lead_id": "ghost", "score": 0, "ruleset_id": rs, "found": False},
    ]
    assert api.post("/leads/scores", json={"lead_ids": ["d"], "ruleset": "Other"}).json[0]["score"] == 1
    assert api.post("/leads/scores", json={"lead_ids": ["d"], "ruleset": other}).json[0]["score"] == 1
    assert api.post("/leads/scores", json={"lead_ids": ["d"], "ruleset": "Nope"}).status_code == 404
    for body, field in [
        ({}, "lead_ids"),
        ({"lead_ids": []}, "lead_ids"),
        ({"lead_ids": ["x"] * 501}, "lead_ids"),
        ({"lead_ids": "a"}, "lead_ids"),
        ({"lead_ids": [1]}, "lead_ids.0"),
    ]:
        r = api.post("/leads/scores", json=body)
        assert r.status_code == 400 and field in r.json["error"]["details"], (body, r.json)


def test_no_primary_scores_zero_in_batch(api, run_worker):
    published_ruleset(api, {"page_view": 5}, primary=False)
    ingest(api, "a", "page_view")
    run_worker()
    assert api.post("/leads/scores", json={"lead_ids": ["a"]}).json[0]["score"] == 0
    assert leads_by_id(api)["a"]["score"] == 0
    assert api.get("/score/a").json["score"] == 5


def email(value):
    return {"alias_kind": "email", "raw_value": value}


def test_list_items_show_each_leads_primary_email_the_oldest_email_alias(api, client, other_tenant):
    ingest(api, "ada", "x", aliases=[email("Zed@X.io")])
    ingest(
        api, "ada", "x", aliases=[email("amy@x.io"), {"alias_kind": "phone", "raw_value": "+44 1"}]
    )  # later: not primary
    ingest(api, "bob", "x", aliases=[{"alias_kind": "cookie", "raw_value": "c-1"}])  # no email at all
    ingest(api, "cy", "x")
    Api(client, other_tenant).post(
        "/ingest", json={"lead_id": "ada", "event_type": "x", "aliases": [email("theirs@x.io")]}
    )
    listed = {lead["lead_id"]: lead["primary_email"] for lead in api.get("/leads").json}
    assert listed == {"ada": "zed@x.io", "bob": None, "cy": None}
    paged = api.get("/leads", query_string={"page": 1, "limit": 2, "sort": "lead_id"}).json["leads"]
    assert [(x["lead_id"], x["primary_email"]) for x in paged] == [("ada", "zed@x.io"), ("bob", None)]
    assert {x["lead_id"]: x["primary_email"] for x in Api(client, other_tenant).get("/leads").json} == {
        "ada": "theirs@x.io"
    }


def test_a_pages_emails_take_one_query_however_many_leads(api):
    def statements_for_page(limit):
        with statements_sent() as statements:
            r = api.get("/leads", query_string={"page": 1, "limit": limit})
        assert r.status_code == 200 and len(r.json["leads"]) == limit
        assert all(x["primary_email"] == f"{x['lead_id']}@x.io" for x in r.json["leads"])
        return [q for q in statements if "lead_aliases" in q]

    api.post(
        "/ingest/batch",
        json={"events": [{"lead_id": f"l{i}", "event_type": "x", "aliases": [email(f"l{i}@x.io")]} for i in range(30)]},
    )
    assert len(statements_for_page(2)) == len(statements_for_page(30)) == 1


def test_detail_lists_the_aliases_oldest_first_with_the_primary_email(api, client, other_tenant):
    ingest(api, "ada", "x", aliases=[email("zed@x.io")])
    ingest(api, "ada", "x", aliases=[email("amy@x.io"), {"alias_kind": "cookie", "raw_value": "c-1"}])
    lead = api.get("/lead/ada").json["lead"]
    assert lead["primary_email"] == "zed@x.io"
    assert [(a["alias_kind"], a["value"]) for a in lead["aliases"]][0] == ("email", "zed@x.io")
    assert {(a["alias_kind"], a["value"]) for a in lead["aliases"][1:]} == {("email", "amy@x.io"), ("cookie", "c-1")}
    assert all(a["created_at"].endswith("Z") for a in lead["aliases"])
    assert api.get("/lead/ada/aliases").json == lead["aliases"]  # one shape, one order
    ingest(api, "cy", "x")
    assert (api.get("/lead/cy").json["lead"]["aliases"], api.get("/lead/cy").json["lead"]["primary_email"]) == (
        [],
        None,
    )
    assert Api(client, other_tenant).get("/lead/ada").status_code == 404


def test_a_lead_is_created_only_with_metadata_within_the_limit(api, app):
    limit = app.extensions["leadpulse"].settings.max_metadata_bytes
    r = api.post("/leads", json={"id": "big", "metadata": {"blob": "x" * (limit + 1)}})
    assert r.status_code == 413 and "metadata" in r.json["error"]["details"]
    assert api.get("/lead/big").status_code == 404
    r = api.post("/leads", json={"id": "fits", "metadata": {"blob": "x" * (limit - 20)}})
    assert r.status_code == 201, r.json
