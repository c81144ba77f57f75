"""GET /stream: one OU's new_event, score_update and level_change as Server-Sent Events, through Redis pub/sub."""

import json
import uuid

from tests.conftest import Api
from tests.helpers import create_levels, published_ruleset, settle
from worker.stream import channel


def read(it) -> tuple[str, dict]:
    """The next SSE message; two keepalives (~30 s) without one fail the test instead of hanging it."""
    keepalives = 0
    while True:
        chunk = next(it)
        text = chunk.decode() if isinstance(chunk, bytes) else chunk
        if text.startswith(":"):
            keepalives += 1
            assert keepalives < 2, "no message arrived on the stream"
            continue
        lines = dict(line.split(": ", 1) for line in text.strip().split("\n"))
        return lines["event"], json.loads(lines["data"])


def test_stream_carries_only_this_ous_news(app, client, api, tenant, other_tenant, run_worker, redis_conn):
    create_levels(api)
    published_ruleset(api, {"demo_request": 60})
    resp = client.get("/stream", headers=tenant.auth, buffered=False)
    assert resp.status_code == 200 and resp.mimetype == "text/event-stream"
    it = iter(resp.response)
    assert read(it) == ("ready", {"ou_id": tenant.unit_id})  # subscribed: nothing published from now on is missed
    Api(client, other_tenant).post("/ingest", json={"lead_id": "theirs", "event_type": "demo_request"})
    row_id = api.post("/ingest", json={"lead_id": "ada", "event_type": "demo_request", "event_id": "evt-7"}).json["id"]
    assert read(it) == (
        "new_event",
        {"id": row_id, "event_id": "evt-7", "lead_id": "ada", "event_type": "demo_request"},
    )
    settle(app, run_worker)
    kind, update = read(it)
    assert kind == "score_update" and update["lead_id"] == "ada" and update["score"] == 60
    kind, change = read(it)
    assert (
        kind == "level_change"
        and change["lead_id"] == "ada"
        and change["from_level_id"] is None
        and change["to_level_id"]
    )
    resp.close()  # the client goes away: its queue goes with it, and the process keeps one subscription for all
    assert app.extensions["leadpulse"].stream_hub.listeners(tenant.unit_id) == 0
    assert redis_conn.pubsub_numsub(channel(tenant.unit_id)) == [(channel(tenant.unit_id).encode(), 0)]


def test_stream_refuses_another_ou_and_anonymous_callers(client, tenant, other_tenant):
    assert client.get("/stream", query_string={"ouId": other_tenant.unit_id}, headers=tenant.auth).status_code == 404
    assert client.get("/stream").status_code == 401


def unique(name: str) -> str:
    """Pub/sub channels and client names are server-wide, across Redis dbs: other runs on the server use their own."""
    return f"{name}-{uuid.uuid4().hex}"


def test_a_lost_subscription_ends_the_streams_and_the_next_client_resumes(redis_conn):
    """Redis dropped the process's subscription: its clients end (EventSource reconnects), the hub subscribes again."""
    from redis import Redis

    from tests.conftest import TEST_REDIS_URL
    from webapp.stream_hub import LOST, StreamHub

    name, ou, other_ou = unique("leadpulse-test-hub"), unique("ou-x"), unique("ou-y")
    hub = StreamHub(Redis.from_url(TEST_REDIS_URL, client_name=name, socket_timeout=5))
    news = hub.join(ou)
    redis_conn.publish(channel(ou), "one")
    redis_conn.publish(channel(other_ou), "not for this client")
    assert news.get(timeout=5) == b"one"
    for client in redis_conn.client_list():  # every client of the server: another run's hub has another name
        if client["name"] == name and client["psub"] != "0":
            redis_conn.client_kill_filter(_id=client["id"])
    assert news.get(timeout=10) is LOST
    hub.leave(ou, news)
    again = hub.join(ou, timeout=10)  # returns once subscribed again
    redis_conn.publish(channel(ou), "two")
    assert again.get(timeout=5) == b"two" and news.empty()


def test_a_head_request_or_an_unread_stream_leaves_nothing_behind(app, client, tenant):
    assert client.head("/stream", headers=tenant.auth).status_code == 200
    resp = client.get("/stream", headers=tenant.auth, buffered=False)  # answered, body never read
    resp.close()
    assert app.extensions["leadpulse"].stream_hub.listeners(tenant.unit_id) == 0


def test_a_client_that_stops_reading_is_dropped_with_bounded_memory(redis_conn, monkeypatch):
    from redis import Redis

    from tests.conftest import TEST_REDIS_URL
    from webapp import stream_hub

    monkeypatch.setattr(stream_hub, "CLIENT_BACKLOG", 3)
    hub = stream_hub.StreamHub(Redis.from_url(TEST_REDIS_URL, socket_timeout=5))
    ou = unique("ou-s")
    stalled, reading = hub.join(ou), hub.join(ou)
    for n in range(5):  # one reader keeps up, the other never reads
        redis_conn.publish(channel(ou), f"m{n}")
        assert reading.get(timeout=5) == f"m{n}".encode()
    assert stalled.get(timeout=5) is stream_hub.LOST and stalled.empty()  # its backlog went; it is told to reconnect
    assert hub.listeners(ou) == 1


def test_no_redis_no_subscription(monkeypatch):
    import pytest
    from redis import Redis

    from webapp.stream_hub import StreamHub, StreamUnavailable

    hub = StreamHub(Redis.from_url("redis://127.0.0.1:1/0", socket_timeout=1, socket_connect_timeout=1))
    with pytest.raises(StreamUnavailable):
        hub.join("ou-z", timeout=0.5)
    assert hub.listeners("ou-z") == 0
