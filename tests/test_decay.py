"""Decay: rules, the pass over simulated time (an injected clock, no sleeps), its exactness however it runs, the floor,
level drops (HubSpot follows, Slack stays quiet), the command line, the forecast and the scoring settings."""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select, text, update

from models.db import session_factory
from models.decay_forecast import DecayPeriod, forecast
from models.decay_pass import decay_chunk, look_again, run_decay
from models.engine import DECAY
from models.events import SCORED, SUPPRESSED, Event, ScoreDelta
from models.leads import Lead
from models.level_rules import LevelSpec
from models.scoring import DecayRule
from tests.conftest import Api, make_tenant
from tests.helpers import create_levels, ingest, published_ruleset, settle
from worker.jobs import decay_pass, kick_scoring

DAY = timedelta(days=1)
NOW = datetime.now(UTC).replace(microsecond=0)
A = NOW - timedelta(days=20)  # every lead's first activity: far enough back for ten periods of a day


def stamp(when: datetime) -> str:
    return when.isoformat().replace("+00:00", "Z")


def configure(app, api):
    """Reference levels and a published primary ruleset (demo_request 30, page_view 5); returns how to add a decay
    rule that (as if made long ago) counts periods from before the leads' first events."""
    create_levels(api)
    published_ruleset(api, {"demo_request": 30, "page_view": 5})

    def rule(inactive_for=1, unit="days", decrease=5) -> str:
        r = api.post("/decays", json={"inactive_for": inactive_for, "unit": unit, "decrease": decrease})
        assert r.status_code == 201, r.json
        with app.extensions["leadpulse"].Session() as s, s.begin():  # as if made before the leads' first events
            s.execute(update(DecayRule).where(DecayRule.id == r.json["decay_id"]).values(applies_from=A - DAY))
        return r.json["decay_id"]

    return rule


@pytest.fixture
def scored(app, api):
    return configure(app, api)


def Session(app):
    return app.extensions["leadpulse"].Session


def decay(app, run_worker, at: datetime, unit_id: str | None = None):
    """A pass as the schedule runs it, at a simulated moment, then scoring of what it stored."""
    state = app.extensions["leadpulse"]
    out = decay_pass(state.settings, state.redis, unit_id, now=at)
    settle(app, run_worker)
    return out


def lead_row(app, lead_id: str) -> Lead:
    with Session(app)() as s:
        return s.execute(select(Lead).where(Lead.lead_id == lead_id)).scalar_one()


def decays_of(app, lead_id: str, status=SCORED) -> list[Event]:
    with Session(app)() as s:
        return (
            s.execute(
                select(Event)
                .join(Lead, Lead.pk == Event.lead_pk)
                .where(Lead.lead_id == lead_id, Event.event_type == DECAY, Event.status == status)
                .order_by(Event.occurred_at)
            )
            .scalars()
            .all()
        )


def hot_lead(api, lead_id: str, at: datetime = A, **extra):
    for n in range(2):  # 60 points: Hot
        ingest(api, lead_id, "demo_request", timestamp=stamp(at), event_id=f"{lead_id}-{n}", **extra)


# The rules -----------------------------------------------------------------------------------------------------------


def test_decay_rules_are_created_listed_changed_and_deleted_in_the_caller_s_ou(api, client, other_tenant):
    r = api.post("/decays", json={"inactive_for": 30, "unit": "days", "decrease": 25})
    assert r.status_code == 201, r.json
    rule = r.json
    assert {k: rule[k] for k in ("inactive_for", "unit", "decrease")} == {
        "inactive_for": 30,
        "unit": "days",
        "decrease": 25,
    }
    assert rule["decay_id"] and rule["applies_from"].endswith("Z")
    assert [d["decay_id"] for d in api.get("/decays").json] == [rule["decay_id"]]
    # What GET returned may be sent back: read-only fields are ignored.
    r = api.put(f"/decays/{rule['decay_id']}", json={**rule, "decrease": 10, "unit": "weeks"})
    assert r.status_code == 200, r.json
    assert (r.json["decrease"], r.json["unit"], r.json["inactive_for"]) == (10, "weeks", 30)
    assert r.json["applies_from"] >= rule["applies_from"]  # an edit applies to periods ending after it
    other = Api(client, other_tenant)
    assert other.get("/decays").json == []
    for call in (
        other.put(f"/decays/{rule['decay_id']}", json={"decrease": 1}),
        other.delete(f"/decays/{rule['decay_id']}"),
    ):
        assert call.status_code == 404
    assert api.delete(f"/decays/{rule['decay_id']}").status_code == 204
    assert api.get("/decays").json == []
    assert api.delete(f"/decays/{rule['decay_id']}").status_code == 404


@pytest.mark.parametrize(
    "body, field",
    [
        ({"unit": "days", "decrease": 5}, "inactive_for"),
        ({"inactive_for": 0, "unit": "days", "decrease": 5}, "inactive_for"),
        ({"inactive_for": -3, "unit": "days", "decrease": 5}, "inactive_for"),
        ({"inactive_for": "3", "unit": "days", "decrease": 5}, "inactive_for"),
        ({"inactive_for": 1.5, "unit": "days", "decrease": 5}, "inactive_for"),
        ({"inactive_for": 10**9, "unit": "days", "decrease": 5}, "inactive_for"),
        ({"inactive_for": 3, "unit": "months", "decrease": 5}, "unit"),
        ({"inactive_for": 3, "unit": None, "decrease": 5}, "unit"),
        ({"inactive_for": 3, "unit": "days"}, "decrease"),
        ({"inactive_for": 3, "unit": "days", "decrease": 0}, "decrease"),
        ({"inactive_for": 3, "unit": "days", "decrease": True}, "decrease"),
        ({"inactive_for": 3, "unit": "days", "decrease": 5, "extra": 1}, "extra"),
    ],
)
def test_bad_decay_rules_are_a_400_naming_the_field(api, body, field):
    r = api.post("/decays", json=body)
    assert r.status_code == 400 and field in r.json["error"]["details"], r.json
    rule = api.post("/decays", json={"inactive_for": 1, "unit": "hours", "decrease": 1}).json
    if field not in ("extra",) and field in body:
        r = api.put(f"/decays/{rule['decay_id']}", json={field: body[field]})
        assert r.status_code == 400 and field in r.json["error"]["details"], r.json


def test_decay_events_cannot_be_sent_from_outside(api):
    r = api.post("/ingest", json={"lead_id": "x", "event_type": DECAY})
    assert r.status_code == 400 and "event_type" in r.json["error"]["details"]
    r = api.post("/ingest/batch", json={"events": [{"lead_id": "x", "event_type": DECAY}]})
    assert r.status_code == 400 and "events.0.event_type" in r.json["error"]["details"], r.json


# The pass --------------------------------------------------------------------------------------------------------


def test_decay_takes_points_once_per_period_after_1_2_and_10_periods(app, api, run_worker, scored):
    decay_id = scored()
    hot_lead(api, "ada")
    settle(app, run_worker)
    assert lead_row(app, "ada").score == 60
    assert decay(app, run_worker, A + DAY - timedelta(seconds=1)).events == 0  # not yet a whole period
    first = decay(app, run_worker, A + DAY)
    assert (first.events, first.leads, first.units) == (1, 1, {lead_row(app, "ada").unit_id: {"leads": 1, "events": 1}})
    assert lead_row(app, "ada").score == 55
    assert decay(app, run_worker, A + DAY).events == 0  # the same moment again: nothing more
    assert decay(app, run_worker, A + 2 * DAY + timedelta(hours=1)).events == 1
    assert lead_row(app, "ada").score == 50
    assert decay(app, run_worker, A + 10 * DAY + timedelta(hours=23)).events == 8  # a late pass: periods 3 to 10
    lead = lead_row(app, "ada")
    assert lead.score == 10 and lead.last_event_at == A  # decay is no activity
    events = decays_of(app, "ada")
    assert [e.occurred_at for e in events] == [A + k * DAY for k in range(1, 11)]
    assert events[2].metadata_ == {
        "channel": "system",
        "decay_id": decay_id,
        "period": 3,
        "decrease": 5,
        "inactive_for": 1,
        "unit": "days",
        "since": stamp(A).replace("Z", ".000000Z"),
    }
    with Session(app)() as s:
        deltas = s.execute(
            select(ScoreDelta.rule_id, ScoreDelta.delta).where(ScoreDelta.event_id.in_([e.id for e in events]))
        ).all()
    assert deltas == [(decay_id, -5)] * 10
    r = api.get("/events", query_string={"event_type": DECAY, "lead_id": "ada", "limit": 1})
    assert r.json["total"] == 10 and r.json["events"][0]["channel"] == "system", r.json


def test_a_pass_after_three_days_down_applies_exactly_what_daily_passes_do(app, api, client, run_worker, settings):
    configure(app, api)()
    down = Api(client, make_tenant(settings, org="Down", unit="Main"))  # an OU no pass looked at for three days
    configure(app, down)()
    hot_lead(api, "daily")
    hot_lead(down, "late")
    settle(app, run_worker)
    for day in (1, 2, 3):
        decay(app, run_worker, A + day * DAY + timedelta(minutes=5), unit_id=api.tenant.unit_id)
    assert decay(app, run_worker, A + 3 * DAY + timedelta(minutes=5), unit_id=down.tenant.unit_id).events == 3
    daily = [(e.occurred_at, e.metadata_["period"]) for e in decays_of(app, "daily")]
    late = [(e.occurred_at, e.metadata_["period"]) for e in decays_of(app, "late")]
    assert daily == late and len(daily) == 3
    assert lead_row(app, "daily").score == lead_row(app, "late").score == 45


def test_the_scheduled_job_applies_periods_that_ended_while_no_worker_ran(
    app, api, run_worker, scored, redis_conn, settings
):
    """Event times moved back three days (and a bit): the sweep's job, on the real clock, stores those three periods."""
    from worker.sweep import sweep_once

    scored()
    hot_lead(api, "gone", at=NOW - 3 * DAY - timedelta(hours=1))
    settle(app, run_worker)
    sweep_once(Session(app), redis_conn, settings.queue_name, settings.scoring_parallelism, settings)
    settle(app, run_worker)
    assert [e.metadata_["period"] for e in decays_of(app, "gone")] == [1, 2, 3]
    assert lead_row(app, "gone").score == 45
    sweep_once(Session(app), redis_conn, settings.queue_name, settings.scoring_parallelism, settings)
    settle(app, run_worker)  # within LEADPULSE_DECAY_SECONDS no second pass is enqueued; and one would add nothing
    assert run_decay(session_factory(settings.database_url, writer=True)).events == 0


def test_two_passes_at_once_store_each_period_once(app, api, run_worker, scored, settings, redis_conn):
    scored()
    scored(inactive_for=12, unit="hours", decrease=1)
    batch = [
        {"lead_id": f"l{n}", "event_type": "demo_request", "timestamp": stamp(A + timedelta(minutes=n))}
        for n in range(40)
    ]
    assert api.post("/ingest/batch", json={"events": batch}).status_code == 202
    settle(app, run_worker)
    at = A + 3 * DAY + timedelta(hours=2)
    start, runs = threading.Barrier(2), []

    def one_pass(streams: int):
        Sessions = session_factory(settings.database_url, writer=True)  # each thread its own connections
        start.wait()
        runs.append(run_decay(Sessions, now=at, chunk=7, streams=streams))

    # one pass on a single connection, the other splitting its leads over three at once
    threads = [threading.Thread(target=one_pass, args=(streams,)) for streams in (1, 3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    per_lead = 3 + 6  # three days of the daily rule, six half-days of the other
    assert sum(r.events for r in runs) == 40 * per_lead  # each period stored by exactly one of the passes
    kick_scoring(redis_conn, settings.queue_name, settings.scoring_parallelism)
    settle(app, run_worker)
    with Session(app)() as s:
        stored = s.execute(select(func.count()).select_from(Event).where(Event.event_type == DECAY)).scalar()
        scores = set(s.execute(select(Lead.score).where(Lead.lead_id.like("l%"))).scalars())
    assert stored == 40 * per_lead and scores == {30 - 3 * 5 - 6 * 1}


def test_a_pass_and_scoring_rewrite_the_bookkeeping_in_place(app, api, run_worker, scored):
    """HOT updates on PostgreSQL: the due time is in no index and each page has room (docs/scoring.md, "Cost")."""
    scored()
    batch = [{"lead_id": f"l{n}", "event_type": "page_view", "timestamp": stamp(A)} for n in range(10)]
    assert api.post("/ingest/batch", json={"events": batch}).status_code == 202
    settle(app, run_worker)
    rewrites = text("SELECT n_tup_upd, n_tup_hot_upd FROM pg_stat_xact_user_tables WHERE relname = 'lead_decay'")

    def rewritten(s, step) -> tuple[int, int]:
        """(updates, HOT updates) of lead_decay by `step`; the counters may hold this connection's earlier work."""
        before = s.execute(rewrites).one()
        step()
        after = s.execute(rewrites).one()
        return after[0] - before[0], after[1] - before[1]

    with Session(app)() as s, s.begin():  # every lead's bookkeeping: three periods stored, the fourth next
        assert rewritten(s, lambda: decay_chunk(s, A + 3 * DAY, None, 0, 1000)) == (10, 10)
    with Session(app)() as s, s.begin():  # new activity: scoring clears the due time
        leads = {lead.pk: (lead.unit_id, False) for lead in s.execute(select(Lead)).scalars()}
        assert rewritten(s, lambda: look_again(s, leads)) == (10, 10)
        options = s.execute(text("SELECT reloptions FROM pg_class WHERE relname = 'lead_decay'")).scalar()
    assert options == ["fillfactor=50"]


def test_new_activity_restarts_the_clock_and_a_late_or_deleted_event_is_accounted_for(app, api, run_worker, scored):
    scored()
    hot_lead(api, "bo")
    settle(app, run_worker)
    decay(app, run_worker, A + 2 * DAY)  # 60 - 2 x 5
    assert lead_row(app, "bo").score == 50
    # A late event inside the inactivity: the second period (counted from A) did not happen after all.
    late = ingest(api, "bo", "page_view", timestamp=stamp(A + DAY + timedelta(hours=12)))
    settle(app, run_worker)
    assert lead_row(app, "bo").score == 60 - 5 + 5
    [void] = decays_of(app, "bo", status=SUPPRESSED)
    assert void.metadata_["period"] == 2 and void.suppressed_reason.startswith("decay void")
    assert lead_row(app, "bo").last_event_at == A + DAY + timedelta(hours=12)
    # The clock restarted at the late event: its first period ends a day after it, not before.
    assert decay(app, run_worker, A + 2 * DAY + timedelta(hours=11)).events == 0
    assert decay(app, run_worker, A + 2 * DAY + timedelta(hours=12)).events == 1
    assert lead_row(app, "bo").score == 55
    # Deleting the late event brings back the period it had voided, and voids the one counted from it.
    assert api.delete("/events/batch", json={"ids": [late["id"]]}).status_code == 200
    settle(app, run_worker)
    assert [e.metadata_["period"] for e in decays_of(app, "bo")] == [1, 2]
    assert lead_row(app, "bo").score == 50 and lead_row(app, "bo").last_event_at == A
    assert decay(app, run_worker, A + 3 * DAY).events == 1  # and it goes on from A
    assert lead_row(app, "bo").score == 45


def test_a_merged_lead_s_decay_periods_are_not_stored_again_for_the_lead_it_joined(app, api, run_worker, scored):
    """The source's DECAY events move with its events; the target then counts from the same last activity, whose
    periods are stored already (each period once, whichever lead it was first stored for)."""
    scored()
    hot_lead(api, "src")  # last active at A
    hot_lead(api, "dst", at=A - timedelta(hours=12))
    settle(app, run_worker)
    assert decay(app, run_worker, A + 2 * DAY).events == 4  # two periods each
    r = api.post("/leads/merge", json={"targetLeadId": "dst", "sourceLeadIds": ["src"]})
    assert r.status_code == 200, r.json
    settle(app, run_worker)
    # dst's own periods counted from before src's activity: void; src's, counted from A, hold for dst.
    assert [e.metadata_["period"] for e in decays_of(app, "dst")] == [1, 2]
    assert lead_row(app, "dst").score == 120 - 2 * 5
    assert decay(app, run_worker, A + 2 * DAY + timedelta(hours=1)).events == 0
    assert decay(app, run_worker, A + 3 * DAY).events == 1
    assert [e.metadata_["period"] for e in decays_of(app, "dst")] == [1, 2, 3]
    assert lead_row(app, "dst").score == 120 - 3 * 5


@pytest.mark.sqlite
def test_on_sqlite_too_each_period_is_stored_once_and_found_when_counting_from_another_activity(tmp_path, settings):
    """The embedded default runs the same pass: its JSON look-up of stored periods and its per-OU counts included."""
    import dataclasses

    from models.leads import LeadDecay
    from models.migrate import upgrade

    lite = dataclasses.replace(settings, database_url=f"sqlite:///{tmp_path}/lp.db")
    upgrade(lite)
    tenant = make_tenant(lite, org="Lite")
    Sessions = session_factory(lite.database_url, writer=True)
    with Sessions() as s, s.begin():
        s.add(DecayRule(org_id=tenant.org_id, unit_id=tenant.unit_id, inactive_for=1, unit="days", decrease=5))
        s.flush()
        s.execute(update(DecayRule).values(applies_from=A - DAY))
        lead = Lead(org_id=tenant.org_id, unit_id=tenant.unit_id, lead_id="ada", last_event_at=A)
        s.add(lead)
        s.flush()
        s.add(LeadDecay(lead_pk=lead.pk, unit_id=tenant.unit_id))  # as scoring adds it at the first activity
    first = run_decay(Sessions, now=A + 2 * DAY)
    assert first.as_dict()["units"] == [{"unit_id": tenant.unit_id, "leads": 1, "events": 2}]
    assert run_decay(Sessions, now=A + 2 * DAY).events == 0
    with Sessions() as s, s.begin():  # bookkeeping that counts from another activity: the stored periods are found
        s.execute(update(LeadDecay).values(anchor_at=A - DAY, checked_at=None, next_at=None))
    assert run_decay(Sessions, now=A + 3 * DAY).events == 1
    with Sessions() as s:
        periods = s.execute(select(Event.metadata_).where(Event.event_type == DECAY).order_by(Event.occurred_at))
        assert [m["period"] for m in periods.scalars()] == [1, 2, 3]


def test_decay_stops_at_the_floor_unless_negative_scores_are_allowed(app, api, run_worker, scored):
    decay_id = scored()
    ingest(api, "low", "page_view", timestamp=stamp(A))  # 5 points
    ingest(api, "low", "page_view", timestamp=stamp(A), event_id="low-2")  # 10
    settle(app, run_worker)
    decay(app, run_worker, A + 3 * DAY)
    with Session(app)() as s:
        deltas = s.execute(
            select(ScoreDelta.delta, ScoreDelta.score_after, ScoreDelta.rule_id)
            .join(Event, Event.id == ScoreDelta.event_id)
            .where(Event.event_type == DECAY)
            .order_by(Event.occurred_at)
        ).all()
    assert deltas == [(-5, 5, decay_id), (-5, 0, decay_id), (0, 0, decay_id)]  # the change after the floor
    assert lead_row(app, "low").score == 0
    r = api.put("/settings/scoring", json={"allow_negative_scores": True})
    assert r.status_code == 200 and r.json["allow_negative_scores"] is True
    assert lead_row(app, "low").score == -5  # rescored from the stored events at once
    assert api.put("/settings/scoring", json={"allow_negative_scores": False}).json["allow_negative_scores"] is False
    assert lead_row(app, "low").score == 0


def test_rescoring_and_publishing_see_decay(app, api, run_worker, scored):
    scored()
    hot_lead(api, "cy")
    settle(app, run_worker)
    decay(app, run_worker, A + 2 * DAY)
    second = published_ruleset(api, {"demo_request": 10}, name="Second", primary=False)
    r = api.get("/score/cy", query_string={"ruleset_id": second})
    assert r.json["score"] == 20 - 2 * 5
    primary = api.get("/rulesets").json[0]["ruleset_id"]
    assert api.post(f"/rulesets/{primary}/publish").status_code == 200  # rebuilt from stored events, decay included
    assert lead_row(app, "cy").score == 50


# Level drops: HubSpot follows, Slack stays quiet -------------------------------------------------------------------


def test_a_decay_that_drops_a_level_reaches_hubspot_and_sends_no_alert(
    settings, clean, tenant, monkeypatch, run_worker
):
    import dataclasses

    from models.slack import SlackAlert
    from tests.auth_helpers import member_client
    from tests.fakes import FakeHubSpot, FakeSlack
    from webapp import create_app

    token, bot = "pat-na1-0123456789abcdef", "xoxb-test-token"
    with FakeHubSpot(tokens=[token]) as hubspot, FakeSlack(bot_token=bot) as slack:
        monkeypatch.setenv("HUBSPOT_API_BASE", hubspot.url)
        monkeypatch.setenv("SLACK_API_BASE", slack.base_url)
        monkeypatch.setenv("SLACK_BOT_TOKEN", bot)
        app = create_app(
            dataclasses.replace(
                settings, hubspot_api_base=hubspot.url, slack_api_base=slack.base_url, slack_bot_token=bot
            )
        )
        api, member = Api(app.test_client(), tenant), app.test_client()
        create_levels(api)
        published_ruleset(api, {"demo_request": 30})
        channel = slack.add_channel("sales")
        target = {"kind": "channel", "id": channel}
        assert (
            member.put("/integrations/slack/target", json=target, headers=member_client(member, tenant)).status_code
            == 200
        )
        assert api.put("/integrations/hubspot", json={"access_token": token}).status_code == 200
        hubspot.add_contact("ada@x.io")
        r = api.post("/decays", json={"inactive_for": 1, "unit": "days", "decrease": 5})
        with app.extensions["leadpulse"].Session() as s, s.begin():
            s.execute(update(DecayRule).where(DecayRule.id == r.json["decay_id"]).values(applies_from=A - DAY))
        hot_lead(api, "ada", aliases=[{"alias_kind": "email", "raw_value": "ada@x.io"}])
        settle(app, run_worker)
        run_worker()
        assert hubspot.contact_by_email("ada@x.io")["properties"]["engagement_level"] == "Hot"
        assert len(slack.messages) == 1  # entering Hot
        decay(app, run_worker, A + 3 * DAY)  # 60 -> 45: Warm
        run_worker()
        props = hubspot.contact_by_email("ada@x.io")["properties"]
        assert (props["engagement_score"], props["engagement_level"]) == ("45", "Warm")
        assert len(slack.messages) == 1
        with app.extensions["leadpulse"].Session() as s:
            assert s.execute(select(func.count()).select_from(SlackAlert)).scalar() == 1


# The command line ------------------------------------------------------------------------------------------------


def test_leadpulse_decay_run_prints_what_it_stored_per_ou(app, api, run_worker, scored, settings, capsys):
    from worker.cli import main

    scored()
    hot_lead(api, "old", at=NOW - 2 * DAY - timedelta(hours=1))
    settle(app, run_worker)
    unit = lead_row(app, "old").unit_id
    main(["decay", "run", "--unit-id", unit])
    out = json.loads(capsys.readouterr().out)
    assert (out["leads"], out["events"]) == (1, 2) and out["units"] == [{"unit_id": unit, "leads": 1, "events": 2}]
    settle(app, run_worker)  # the command woke scoring
    assert lead_row(app, "old").score == 50
    main(["decay", "run"])
    assert json.loads(capsys.readouterr().out)["events"] == 0
    with pytest.raises(SystemExit, match="no organization unit"):
        main(["decay", "run", "--unit-id", "no-such-ou"])


# The forecast ------------------------------------------------------------------------------------------------------

LEVELS = [LevelSpec("cold", "Cold", 0, 24), LevelSpec("warm", "Warm", 25, 49), LevelSpec("hot", "Hot", 50, None)]
T = datetime(2025, 3, 1, tzinfo=UTC)


def test_the_forecast_is_the_first_period_end_that_takes_the_score_below_its_level():
    weekly = DecayPeriod(timedelta(weeks=1), 5, T - DAY)
    f = forecast(60, LEVELS, [weekly], last_activity=T)
    assert (f.at, f.score, f.level.name) == (T + 3 * timedelta(weeks=1), 45, "Warm")
    # Periods already applied are in the score: counting goes on after them.
    f = forecast(55, LEVELS, [weekly], last_activity=T, applied_through=T + timedelta(weeks=1))
    assert f.at == T + 3 * timedelta(weeks=1) and f.score == 45
    # Two rules: whichever period ends first takes its share.
    daily = DecayPeriod(DAY, 2, T - DAY)
    f = forecast(60, LEVELS, [weekly, daily], last_activity=T)
    assert f.at == T + 6 * DAY and f.score == 48 and f.level.name == "Warm"
    # A rule made later counts only periods ending after it.
    late_rule = DecayPeriod(DAY, 20, T + 10 * DAY)
    assert forecast(60, LEVELS, [late_rule], last_activity=T).at == T + 11 * DAY
    # The floor keeps the lowest level; negative scores fall out of every level.
    assert forecast(10, LEVELS, [daily], last_activity=T) is None
    f = forecast(10, LEVELS, [daily], last_activity=T, allow_negative=True)
    assert (f.at, f.score, f.level) == (T + 6 * DAY, -2, None)
    # None: no rule, no activity, no level, or after the primary ruleset ends.
    assert forecast(60, LEVELS, [], last_activity=T) is None
    assert forecast(60, LEVELS, [weekly], last_activity=None) is None
    assert forecast(60, [], [weekly], last_activity=T) is None
    assert forecast(60, LEVELS, [weekly], last_activity=T, until=T + 2 * timedelta(weeks=1)) is None
    assert forecast(2**62, LEVELS, [weekly], last_activity=T) is None  # not before the calendar ends


def test_the_lead_and_its_score_carry_the_forecast(app, api, run_worker, scored):
    scored(inactive_for=1, unit="weeks", decrease=5)
    hot_lead(api, "hot")
    ingest(api, "cold", "page_view", timestamp=stamp(A))
    settle(app, run_worker)
    expected = {"at": stamp(A + 3 * timedelta(weeks=1)), "score": 45}
    for body in (api.get("/lead/hot").json["lead"], api.get("/score/hot").json):
        f = body["decay_forecast"]
        assert {k: f[k] for k in ("at", "score")} == expected and f["level"]["name"] == "Warm", body
    assert api.get("/lead/cold").json["lead"]["decay_forecast"] is None  # the floor keeps it Cold
    assert api.get("/score/cold").json["decay_forecast"] is None


# Scoring settings --------------------------------------------------------------------------------------------------


def test_scoring_settings_default_change_and_refuse_bad_values(api, client, settings):
    assert api.get("/settings/scoring").json == {
        "allow_negative_scores": False,
        "abm_enabled": False,
        "session_timeout_minutes": 30,
    }
    r = api.put("/settings/scoring", json={"abm_enabled": True, "session_timeout_minutes": 45})
    assert r.status_code == 200 and r.json == {
        "allow_negative_scores": False,
        "abm_enabled": True,
        "session_timeout_minutes": 45,
    }
    for body, field in (
        ({"session_timeout_minutes": 0}, "session_timeout_minutes"),
        ({"session_timeout_minutes": "5"}, "session_timeout_minutes"),
        ({"allow_negative_scores": "maybe"}, "allow_negative_scores"),
        ({"abm_enabled": None}, "abm_enabled"),
        ({"other": 1}, "other"),
    ):
        r = api.put("/settings/scoring", json=body)
        assert r.status_code == 400 and field in r.json["error"]["details"], (body, r.json)
    other = make_tenant(settings, org="Initech", unit="West")
    assert Api(client, other).get("/settings/scoring").json["abm_enabled"] is False  # per OU
