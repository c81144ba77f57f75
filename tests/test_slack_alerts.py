"""Slack alerts: one per entry into Hot, cooldown, digests, outages and rate limits, first run without Slack."""

import dataclasses
import json
import time
from datetime import timedelta

import pytest
from rq import Queue
from sqlalchemy import select, text, update

from integrations.slack_alerts import CONFIG_RETRY_SECONDS
from models.base import utcnow
from models.leads import Lead
from models.slack import SlackAlert
from tests.auth_helpers import member_client
from tests.conftest import Api
from tests.fakes import FakeSlack
from tests.helpers import create_levels, published_ruleset, run_scheduled, scheduled_jobs, settle
from webapp import create_app

BOT = "xoxb-test-token"
WEIGHTS = {"page_view": 5, "demo_request": 30, "unsubscribe": -20}
POST = "/api/chat.postMessage"


@pytest.fixture
def fake_slack():
    with FakeSlack(bot_token=BOT) as fake:
        yield fake


def make_app(settings, fake, **overrides):
    app = create_app(dataclasses.replace(settings, slack_api_base=fake.base_url, **overrides))
    app.testing = True
    return app


@pytest.fixture
def alerting(settings, clean, tenant, fake_slack, monkeypatch, run_worker):
    """An OU with the reference levels, a published ruleset, the environment's bot token and a target channel."""
    monkeypatch.setenv("SLACK_API_BASE", fake_slack.base_url)
    monkeypatch.setenv("SLACK_BOT_TOKEN", BOT)
    app = make_app(settings, fake_slack, slack_bot_token=BOT)
    api = Api(app.test_client(), tenant)
    member = app.test_client()
    headers = member_client(member, tenant)
    create_levels(api)
    published_ruleset(api, WEIGHTS)
    channel = fake_slack.add_channel("sales")
    assert (
        member.put("/integrations/slack/target", json={"kind": "channel", "id": channel}, headers=headers).status_code
        == 200
    )
    run_worker()
    return api, member, headers, channel, app


def send(api, lead, *event_types, email=None, **extra):
    for event_type in event_types:
        body = {"lead_id": lead, "event_type": event_type, **extra}
        if email:
            body["aliases"] = [{"alias_kind": "email", "raw_value": email}]
        r = api.post("/ingest", json=body)
        assert r.status_code == 202, r.json


def by_lead(app, *lead_ids):
    with app.extensions["leadpulse"].Session() as s:
        rows = dict(s.execute(select(Lead.lead_id, SlackAlert).join(Lead, Lead.pk == SlackAlert.lead_pk)).all())
    return [rows[i] for i in lead_ids]


def alerts(app, **where):
    with app.extensions["leadpulse"].Session() as s:
        return s.execute(select(SlackAlert).filter_by(**where).order_by(SlackAlert.id)).scalars().all()


def test_entering_hot_posts_one_block_kit_alert(alerting, fake_slack, run_worker, settings, redis_conn):
    api, member, headers, channel, app = alerting
    assert api.post("/leads", json={"id": "ada", "metadata": {"name": "Ada Lovelace"}}).status_code == 201
    send(api, "ada", "demo_request", "page_view", email="Ada@Example.com")
    settle(app, run_worker)
    assert fake_slack.messages == []  # 35: Warm, below the alert level
    send(api, "ada", "demo_request")
    settle(app, run_worker)
    [msg] = fake_slack.messages
    assert msg["channel"] == channel
    assert msg["text"] == "Ada Lovelace (ada@example.com) entered Hot with a score of 65"
    blocks = msg["blocks"]
    assert blocks[0] == {"type": "header", "text": {"type": "plain_text", "text": "Lead entered Hot"}}
    assert "Ada Lovelace (ada@example.com)" in blocks[1]["text"]["text"]
    assert {"type": "mrkdwn", "text": "*Score*\n65"} in blocks[1]["fields"]
    assert blocks[2]["text"]["text"] == "*Why*\ndemo_request +60, page_view +5"
    recent = blocks[3]["text"]["text"]
    assert recent.startswith("*Last events*") and recent.count("• ") == 3 and "demo_request" in recent
    assert msg["args"]["attachments"][0]["color"] == "#f97316"  # Hot's color
    # the job running again (a retry, the sweep) sends nothing more
    Queue(settings.queue_name, connection=redis_conn).enqueue("worker.jobs.deliver_slack_alerts", api.tenant.unit_id)
    run_worker()
    assert len(fake_slack.messages) == 1
    [sent] = alerts(app)
    assert sent.status == "sent" and sent.ts == msg["ts"] and sent.event_received_at is not None
    status = member.get("/integrations/slack", headers=headers).json["alerts"]
    assert status["sent"] == 1 and status["pending"] == 0 and status["delivery"] == "ok" and status["last_sent_at"]
    metrics = api.get("/metrics").get_data(as_text=True)
    assert "event_to_slack_latency_seconds_count 1.0" in metrics


def test_flapping_inside_the_cooldown_sends_no_second_alert(alerting, fake_slack, run_worker):
    api, member, headers, _, app = alerting
    send(api, "bob", "demo_request", "demo_request")  # 60 Hot
    settle(app, run_worker)
    send(api, "bob", "unsubscribe")  # 40 Warm
    settle(app, run_worker)
    send(api, "bob", "page_view", "page_view")  # 50 Hot again
    settle(app, run_worker)
    assert len(fake_slack.messages) == 1
    assert [a.status for a in alerts(app)] == ["sent", "suppressed"]
    # with no cooldown the next entry alerts again
    assert member.put("/settings/ou/alerts", json={"cooldown_hours": 0}, headers=headers).status_code == 200
    send(api, "bob", "unsubscribe")  # 30 Warm
    settle(app, run_worker)
    send(api, "bob", "demo_request")  # 60 Hot
    settle(app, run_worker)
    assert len(fake_slack.messages) == 2


def test_alert_level_setting_decides_what_alerts(alerting, fake_slack, run_worker):
    api, member, headers, _, app = alerting
    assert member.put("/settings/ou/alerts", json={"alert_min_level": "Very Hot"}, headers=headers).status_code == 200
    send(api, "cy", "demo_request", "demo_request")  # 60 Hot: below Very Hot now
    settle(app, run_worker)
    assert fake_slack.messages == []
    send(api, "cy", "demo_request")  # 90 Very Hot
    settle(app, run_worker)
    assert [m["text"] for m in fake_slack.messages] == ["cy entered Very Hot with a score of 90"]


def test_a_level_edit_sends_one_digest_not_one_per_lead(alerting, fake_slack, run_worker):
    api, member, headers, _, app = alerting
    for lead in ("d1", "d2", "d3"):
        send(api, lead, "demo_request", "page_view", "page_view")  # 40: Warm
    send(api, "d4", "page_view")  # 5: Cold
    send(api, "d5", "demo_request", "demo_request")  # 60: Hot already, its own alert
    settle(app, run_worker)
    fake_slack.messages.clear()
    levels = {lv["name"]: lv["id"] for lv in api.get("/engagement-levels").json["levels"]}
    assert api.put(f"/engagement-levels/{levels['Warm']}", json={"max_score": 34}).status_code == 200
    assert api.put(f"/engagement-levels/{levels['Hot']}", json={"min_score": 35}).status_code == 200
    run_worker()
    [digest] = fake_slack.messages
    assert digest["text"] == "3 leads entered Hot after the level change"
    sample = digest["blocks"][1]["elements"][0]["text"]
    assert all(f"`{lead}`" in sample for lead in ("d1", "d2", "d3")) and "`d5`" not in sample  # those that moved
    assert [a.kind for a in alerts(app)] == ["lead", "digest"]
    # with digests off, a reclassification stays quiet
    assert (
        member.put("/settings/ou/alerts", json={"digest_on_reclassification": False}, headers=headers).status_code
        == 200
    )
    assert api.put(f"/engagement-levels/{levels['Hot']}", json={"min_score": 45}).status_code == 200  # they drop out
    assert api.put(f"/engagement-levels/{levels['Hot']}", json={"min_score": 35}).status_code == 200  # and back in
    run_worker()
    assert len(fake_slack.messages) == 1


def test_slack_down_for_a_while_then_up_delivers_once(alerting, fake_slack, run_worker, settings, redis_conn):
    api, member, headers, _, app = alerting
    fake_slack.fail_next(2, 500, method="chat.postMessage")
    fake_slack.fail_next(1, 503, method="chat.postMessage")
    send(api, "eve", "demo_request", "demo_request")
    settle(app, run_worker)
    for attempt in range(1, 4):
        [alert] = alerts(app)
        # A 5xx may come after Slack took the post: the row stays "posting", and the retry looks in the channel first.
        assert (
            alert.status == "posting"
            and alert.attempts == attempt
            and alert.last_error in ("internal_error", "HTTP 503")
        )
        assert len(scheduled_jobs(settings, redis_conn)) == 1  # waiting by rescheduling, not by sleeping
        assert member.get("/integrations/slack", headers=headers).json["alerts"]["pending"] == 1
        run_scheduled(settings, redis_conn, run_worker)
    assert len(fake_slack.messages) == 1 and alerts(app)[0].status == "sent"
    assert [r.status for r in fake_slack.requests_to(POST)] == [500, 500, 503, 200]
    assert len(fake_slack.requests_to("/api/conversations.history")) == 3


def test_rate_limited_waits_retry_after_by_rescheduling(alerting, fake_slack, run_worker, settings, redis_conn):
    api, _, _, _, app = alerting
    fake_slack.fail_next(1, 429, method="chat.postMessage", retry_after=30)
    send(api, "fay", "demo_request", "demo_request")
    before = utcnow()
    settle(app, run_worker)
    after = utcnow()
    [(_, when)] = scheduled_jobs(settings, redis_conn)
    assert before + timedelta(seconds=29) <= when <= after + timedelta(seconds=30)  # RQ keeps whole seconds
    [alert] = alerts(app)
    assert alert.status == "pending" and alert.attempts == 0  # a rate limit is not a failed attempt
    run_scheduled(settings, redis_conn, run_worker)
    assert len(fake_slack.messages) == 1


def test_repeated_failures_end_visible_and_do_not_block_later_alerts(
    alerting, fake_slack, run_worker, settings, redis_conn
):
    api, member, headers, _, app = alerting
    fake_slack.fail_next(1, 200, method="chat.postMessage", error="invalid_blocks")
    send(api, "gus", "demo_request", "demo_request")
    send(api, "hal", "demo_request", "demo_request")
    settle(app, run_worker)
    run_scheduled(settings, redis_conn, run_worker)
    statuses = [a.status for a in alerts(app)]
    assert statuses == ["failed", "sent"]
    body = member.get("/integrations/slack", headers=headers).json["alerts"]
    assert body["failed"] == 1 and body["sent"] == 1 and body["last_failure"] == "invalid_blocks"
    assert body["delivery"] == "ok"  # the next alert went through


def test_a_target_the_bot_cannot_post_to_holds_alerts_until_fixed(alerting, fake_slack, run_worker):
    api, member, headers, channel, app = alerting
    fake_slack.fail_channel(channel, "not_in_channel")
    send(api, "ida", "demo_request", "demo_request")
    settle(app, run_worker)
    status = member.get("/integrations/slack", headers=headers).json["alerts"]
    assert status["delivery"] == "error" and status["pending"] == 1 and "not_in_channel" in status["last_error"]
    other = fake_slack.add_channel("sales-2")
    assert (
        member.put("/integrations/slack/target", json={"kind": "channel", "id": other}, headers=headers).status_code
        == 200
    )
    run_worker()
    assert [m["channel"] for m in fake_slack.messages] == [other]
    assert member.get("/integrations/slack", headers=headers).json["alerts"]["delivery"] == "ok"


def test_not_configured_waits_then_delivers_with_old_alerts_in_one_digest(
    settings, clean, tenant, fake_slack, monkeypatch, run_worker
):
    monkeypatch.setenv("SLACK_API_BASE", fake_slack.base_url)
    app = make_app(settings, fake_slack)
    api = Api(app.test_client(), tenant)
    create_levels(api)
    published_ruleset(api, WEIGHTS)
    for lead in ("old1", "old2", "new1"):
        send(api, lead, "demo_request", "demo_request")
    settle(app, run_worker)
    member = app.test_client()
    headers = member_client(member, tenant)
    status = member.get("/integrations/slack", headers=headers).json
    assert (
        status["connected"] is False
        and status["alerts"]["delivery"] == "not configured"
        and status["alerts"]["pending"] == 3
    )
    with app.extensions["leadpulse"].Session() as s, s.begin():  # two of them waited two days
        old = select(Lead.pk).where(Lead.lead_id.in_(["old1", "old2"]))
        s.execute(update(SlackAlert).where(SlackAlert.lead_pk.in_(old)).values(created_at=utcnow() - timedelta(days=2)))
    # connect: the environment's token (as after a restart with SLACK_BOT_TOKEN) and a target
    monkeypatch.setenv("SLACK_BOT_TOKEN", BOT)
    app = make_app(settings, fake_slack, slack_bot_token=BOT)
    member = app.test_client()
    headers = member_client(member, tenant)
    channel = fake_slack.add_channel("sales")
    assert (
        member.put("/integrations/slack/target", json={"kind": "channel", "id": channel}, headers=headers).status_code
        == 200
    )
    run_worker()
    texts = sorted(m["text"] for m in fake_slack.messages)
    assert len(texts) == 2 and texts[0].startswith("2 leads entered Hot while Slack alerts could not be delivered")
    assert texts[1] == "new1 entered Hot with a score of 60"
    assert sorted(a.status for a in alerts(app)) == ["sent", "sent", "summarized", "summarized"]


def test_lead_data_cannot_ping_the_channel_and_a_zero_cooldown_alerts_at_once(alerting, fake_slack, run_worker):
    api, member, headers, _, app = alerting
    assert member.put("/settings/ou/alerts", json={"cooldown_hours": 0}, headers=headers).status_code == 200
    assert (
        api.post(
            "/leads", json={"id": "mal", "metadata": {"name": "<!channel> <https://evil.example|click>"}}
        ).status_code
        == 201
    )
    send(api, "mal", "demo_request", "demo_request")
    settle(app, run_worker)
    [msg] = fake_slack.messages
    assert msg["text"] == "&lt;!channel&gt; &lt;https://evil.example|click&gt; entered Hot with a score of 60"
    assert "<!channel>" not in json.dumps(msg["blocks"])
    assert [a.kind for a in alerts(app)] == ["lead"]  # a fresh alert is not a catch-up digest, whatever the cooldown


def test_a_post_that_went_out_before_a_crash_is_not_sent_again(alerting, fake_slack, run_worker, redis_conn, settings):
    """The job died after Slack accepted the post and before the commit, and Redis lost everything: the row's committed
    "posting" state says look first, and it is there."""
    api, _, _, channel, app = alerting
    fake_slack.fail_channel(channel, "not_in_channel")  # hold the alerts pending while we stage the crash
    send(api, "gil", "demo_request", "demo_request")
    send(api, "hal", "demo_request", "demo_request")
    settle(app, run_worker)
    gil, hal = by_lead(app, "gil", "hal")
    assert (gil.status, hal.status) == ("pending", "pending")
    fake_slack.channel_errors.clear()
    posted_ts = f"{time.time():.6f}"
    with fake_slack.lock:  # what the dead job had posted for gil
        fake_slack.messages.append(
            {
                "channel": channel,
                "channel_name": "sales",
                "text": "gil entered Hot",
                "blocks": None,
                "ts": posted_ts,
                "team_id": "T0000TEST",
                "args": {},
                "metadata": {"event_type": "leadpulse_alert", "event_payload": {"key": gil.key}},
            }
        )
    with app.extensions["leadpulse"].Session() as s, s.begin():  # both were being posted; hal's never reached Slack
        s.execute(update(SlackAlert).where(SlackAlert.id.in_([gil.id, hal.id])).values(status="posting"))
    redis_conn.flushdb()
    # the retry scheduled at the end of the refused target's wait (retry=True)
    Queue(settings.queue_name + "-urgent", connection=redis_conn).enqueue(
        "worker.jobs.deliver_slack_alerts", api.tenant.unit_id, True
    )
    run_worker()
    assert sorted(m["text"] for m in fake_slack.messages) == ["gil entered Hot", "hal entered Hot with a score of 60"]
    gil, hal = by_lead(app, "gil", "hal")
    assert (gil.status, gil.ts, hal.status) == ("sent", posted_ts, "sent")
    assert fake_slack.messages[-1]["metadata"] == {"event_type": "leadpulse_alert", "event_payload": {"key": hal.key}}
    assert len(fake_slack.requests_to("/api/conversations.history")) == 2  # only the rows found posting are looked up


def sweep(app, settings, redis_conn, run_worker):
    from worker.sweep import sweep_once

    sweep_once(
        app.extensions["leadpulse"].Session,
        redis_conn,
        settings.queue_name,
        settings.scoring_parallelism,
        dataclasses.replace(settings, slack_bot_token=BOT),
    )
    run_worker()


def test_activity_and_the_sweep_never_cut_a_backoff_short(alerting, fake_slack, run_worker, settings, redis_conn):
    """While delivery waits out an outage, new level changes are examined but nothing is posted until the retry."""
    api, _, _, _, app = alerting
    fake_slack.fail_next(1, 500, method="chat.postMessage")
    send(api, "ivy", "demo_request", "demo_request")
    settle(app, run_worker)
    assert len(fake_slack.requests_to(POST)) == 1 and len(scheduled_jobs(settings, redis_conn)) == 1
    send(api, "jon", "demo_request", "demo_request")  # activity kicks delivery
    settle(app, run_worker)
    sweep(app, settings, redis_conn, run_worker)  # and so does the sweep
    assert len(fake_slack.requests_to(POST)) == 1  # Slack was not called again before the retry
    # ivy's post met a 500 (it may have gone out: looked up before the retry posts it); jon's entry was examined
    assert [(a.status, a.attempts) for a in alerts(app)] == [("posting", 1), ("pending", 0)]
    run_scheduled(settings, redis_conn, run_worker)
    assert sorted(m["text"].split()[0] for m in fake_slack.messages) == ["ivy", "jon"]


def test_a_refused_target_is_not_retried_by_every_sweep(alerting, fake_slack, run_worker, settings, redis_conn):
    api, _, _, channel, app = alerting
    fake_slack.fail_channel(channel, "not_in_channel")
    refused_from = utcnow()
    send(api, "kit", "demo_request", "demo_request")
    settle(app, run_worker)
    refused_by = utcnow()
    calls = len(fake_slack.requests)
    sweep(app, settings, redis_conn, run_worker)
    sweep(app, settings, redis_conn, run_worker)
    assert len(fake_slack.requests) == calls
    [(_, when)] = scheduled_jobs(settings, redis_conn)  # it looks again later on its own (someone may fix it on Slack)
    wait = timedelta(
        seconds=CONFIG_RETRY_SECONDS
    )  # from the refusal, however long this test took; RQ keeps whole seconds
    assert refused_from + wait - timedelta(seconds=1) <= when <= refused_by + wait


def test_an_alert_that_cannot_be_prepared_fails_alone(alerting, fake_slack, run_worker, settings, redis_conn):
    """A broken row (a lead alert without its lead) is marked failed; it does not hold back the alerts after it."""
    api, member, headers, _, app = alerting
    with app.extensions["leadpulse"].Session() as s, s.begin():
        s.add(SlackAlert(unit_id=api.tenant.unit_id, key="broken", kind="lead", lead_pk=None, score=99, payload={}))
    send(api, "lou", "demo_request", "demo_request")
    settle(app, run_worker)
    run_worker()
    [broken, lou] = alerts(app)
    assert (broken.key, broken.status, broken.last_error) == ("broken", "failed", "internal error (LookupError)")
    assert lou.status == "sent" and [m["text"].split()[0] for m in fake_slack.messages] == ["lou"]
    assert member.get("/integrations/slack", headers=headers).json["alerts"]["failed"] == 1


def test_a_post_that_cannot_be_recorded_is_retried_and_found_not_resent(
    alerting, fake_slack, run_worker, settings, redis_conn
):
    """Slack accepted the post, then the database refused the commit: the alert stays posting (not 'failed'),
    and the retry finds the message in the channel instead of posting it twice."""
    api, _, _, _, app = alerting
    from models.db import get_engine

    engine = get_engine(settings.database_url)
    with engine.begin() as conn:  # the next change of an alert to 'sent' fails once, as a lost connection would
        conn.execute(text("CREATE SEQUENCE IF NOT EXISTS test_fail_once"))
        conn.execute(
            text("""CREATE OR REPLACE FUNCTION test_fail_once() RETURNS trigger AS $$
            BEGIN IF NEW.status = 'sent' AND nextval('test_fail_once') = 1 THEN RAISE EXCEPTION 'staged failure'; END IF;
            RETURN NEW; END $$ LANGUAGE plpgsql""")
        )
        conn.execute(
            text(
                "CREATE TRIGGER test_fail_once BEFORE UPDATE ON slack_alerts FOR EACH ROW EXECUTE FUNCTION test_fail_once()"
            )
        )
    try:
        send(api, "kim", "demo_request", "demo_request")
        settle(app, run_worker)
        [alert] = alerts(app)
        assert len(fake_slack.messages) == 1
        assert (alert.status, alert.attempts, alert.last_error) == (
            "posting",
            1,
            "internal error after posting (ProgrammingError)",
        )
        run_scheduled(settings, redis_conn, run_worker)
        [alert] = alerts(app)
        assert alert.status == "sent" and alert.ts == fake_slack.messages[0]["ts"]
        assert len(fake_slack.messages) == 1 and len(fake_slack.requests_to(POST)) == 1
    finally:
        with engine.begin() as conn:
            conn.execute(text("DROP TRIGGER test_fail_once ON slack_alerts"))
            conn.execute(text("DROP FUNCTION test_fail_once()"))
            conn.execute(text("DROP SEQUENCE test_fail_once"))


def test_a_database_lost_while_slack_refuses_a_post_leaves_the_alert_to_the_next_run(
    alerting, fake_slack, run_worker, settings, redis_conn, monkeypatch
):
    """Slack answers a post 503 while the database drops the delivering job's connection (a restart, a failover): the
    alert is not given up as failed; it stays posting, and the next run looks it up in the channel and posts it once."""
    from models.db import get_engine
    from tests.fakes._server import Fault

    api, _, _, _, app = alerting
    serve = fake_slack.handle

    def handle(request, record):
        if request.path != POST or len(fake_slack.requests_to(POST)) > 1:
            return serve(request, record)
        with get_engine(settings.database_url).connect() as conn:  # the job's transaction waits for this answer
            dropped = conn.execute(
                text(
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE datname = current_database() "
                    "AND state = 'idle in transaction' AND pid <> pg_backend_pid()"
                )
            ).scalar()
        assert dropped == 1
        return fake_slack.fault_response(Fault("status", 1, status=503), request)

    monkeypatch.setattr(fake_slack, "handle", handle)
    send(api, "kim", "demo_request", "demo_request")
    settle(app, run_worker)
    [alert] = alerts(app)
    assert (alert.status, alert.attempts) == ("posting", 0) and not fake_slack.messages
    sweep(app, settings, redis_conn, run_worker)
    [alert] = alerts(app)
    assert alert.status == "sent" and len(fake_slack.messages) == 1 and len(fake_slack.requests_to(POST)) == 2
