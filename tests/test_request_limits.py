"""Request limits on real Redis: per credential, member, address and webhook source, shared by every web process,
in POST /ingest's lane too; sign-in holds that grow to a cap and never lock the member out where they sign in; a
Redis outage that stops no event. Tiny limits and a clock the tests move, so nothing waits."""

import base64
import dataclasses
import io
import json
import socket
import time

import pytest
from sqlalchemy import func, select

from config import Rate, Settings, parse_rate
from integrations import redis_keys as keys
from models.events import Event
from tests.auth_helpers import member_client
from tests.conftest import basic
from tests.test_webhooks import signed
from webapp import create_app
from webapp.rate_limits import client_address


class Clock:
    """Seconds, as time.time, but only moving when a test says so."""

    def __init__(self):
        self.now = time.time()

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def make_app(settings, clean, clock):
    """A web process of its own (create_app), on the suite's Redis and database, with the test's clock."""

    def make(**overrides):
        rates = {
            k: parse_rate(v) for k, v in overrides.items() if k.startswith("rate_limit_") and k != "rate_limit_mode"
        }
        app = create_app(dataclasses.replace(settings, **{**overrides, **rates}))
        app.testing = True
        app.extensions["leadpulse"].limiter.clock = clock
        return app

    return make


def at(address: str) -> dict:
    return {"REMOTE_ADDR": address}


def stored(app) -> int:
    with app.extensions["leadpulse"].Session() as s:
        return s.execute(select(func.count()).select_from(Event)).scalar()


def test_a_credentials_allowance_is_shared_by_every_web_process(make_app, tenant, other_tenant, clock):
    one, two = make_app(rate_limit_api="3/minute"), make_app(rate_limit_api="3/minute")
    a, b = one.test_client(), two.test_client()
    assert [c.get("/leads", headers=tenant.auth).status_code for c in (a, b, a)] == [200, 200, 200]
    refused = b.get("/leads", headers=tenant.auth)
    assert refused.status_code == 429
    assert refused.json["error"]["code"] == "rate_limited" and refused.json["error"]["details"] == {"limit": ["api"]}
    assert refused.headers["Retry-After"] == "20"  # one request's share of the minute is back in 20 s
    assert refused.headers["RateLimit-Limit"] == "3" and refused.headers["RateLimit-Remaining"] == "0"
    assert refused.headers["RateLimit-Policy"] == "3;w=60"
    assert a.get("/leads", headers=other_tenant.auth).status_code == 200  # another credential, its own allowance
    clock.advance(19)
    assert a.get("/leads", headers=tenant.auth).headers["Retry-After"] == "1"
    clock.advance(1)
    allowed = a.get("/leads", headers=tenant.auth)
    assert allowed.status_code == 200 and allowed.headers["RateLimit-Remaining"] == "0"


def test_ingest_is_limited_per_credential_in_the_lane_as_in_flask(make_app, tenant, clock):
    app = make_app(rate_limit_ingest="3/minute")
    c = app.test_client()

    def post(body):
        return c.post("/ingest", json=body, headers=tenant.auth)

    assert post({"lead_id": "ada", "event_type": "x"}).status_code == 202  # Flask: the credential is not cached yet
    served = app.wsgi_app.served
    assert post({"lead_id": "ada", "event_type": "x", "score": 1}).status_code == 400  # the lane hands it to Flask
    assert post({"lead_id": "ada", "event_type": "x"}).status_code == 202  # counted once each: three so far
    assert app.wsgi_app.served == served + 1
    refused = post({"lead_id": "ada", "event_type": "x"})
    assert refused.status_code == 429 and app.wsgi_app.served == served + 2  # the lane refused it, body unread
    assert refused.headers["Retry-After"] == "20" and refused.json["error"]["code"] == "rate_limited"
    batch = c.post("/ingest/batch", json={"events": [{"lead_id": "ada", "event_type": "x"}]}, headers=tenant.auth)
    assert batch.status_code == 429  # every ingest route takes from the same allowance
    assert stored(app) == 2
    assert c.get("/leads", headers=tenant.auth).status_code == 200  # other routes have an allowance of their own
    clock.advance(20)
    assert post({"lead_id": "ada", "event_type": "x"}).status_code == 202


def test_a_write_key_is_limited_by_itself_and_per_visitor_and_its_page_may_read_the_wait(make_app, tenant):
    c = make_app(rate_limit_ingest="3/minute", rate_limit_visitor="2/minute").test_client()
    owner = member_client(c, tenant)
    made = c.post("/secrets", json={"name": "site", "allowed_origins": ["https://shop.example"]}, headers=owner)
    assert made.status_code == 201, made.json
    page = {**basic(made.json["client_id"], ""), "Origin": "https://shop.example"}

    def send(visitor: str):
        body = {"lead_id": "v1", "event_type": "page_view"}
        return c.post("/ingest", json=body, headers=page, environ_base=at(visitor))

    sent = [send("198.51.100.1") for _ in range(3)]
    assert [r.status_code for r in sent] == [202, 202, 429]  # one visitor's share of the key
    refused = sent[2]
    assert refused.headers["Retry-After"] == "30" and refused.headers["RateLimit-Policy"] == "2;w=60"
    assert refused.headers["Access-Control-Allow-Origin"] == "https://shop.example"
    assert "Retry-After" in refused.headers["Access-Control-Expose-Headers"]
    assert [send("198.51.100.2").status_code, send("198.51.100.3").status_code] == [202, 429]  # the key's own
    assert c.post("/ingest", json={"lead_id": "v1", "event_type": "x"}, headers=tenant.auth).status_code == 202


def test_every_request_counts_against_its_address_before_its_credentials_are_checked(make_app, tenant):
    app = make_app(rate_limit_address="4/minute")
    c = app.test_client()
    wrong = basic(tenant.client_id, "not-the-secret")
    assert [c.get("/leads", headers=wrong).status_code for _ in range(3)] == [401, 401, 401]
    assert c.post("/auth/login", json={"email": "who@example.com", "password": "guess"}).status_code == 401
    refused = c.get("/leads", headers=tenant.auth)  # right credentials now, but from the same address
    assert refused.status_code == 429 and refused.headers["Retry-After"] == "15"
    assert c.get("/", headers={"X-Forwarded-For": "203.0.113.9"}).status_code == 429  # not believed by default
    assert c.get("/leads", headers=tenant.auth, environ_base=at("10.0.0.9")).status_code == 200


def test_behind_trusted_proxies_the_address_the_outermost_saw_counts(make_app):
    c = make_app(rate_limit_address="2/minute", trusted_proxies=1).test_client()

    def via(forwarded: str) -> int:
        return c.get("/", headers={"X-Forwarded-For": forwarded}).status_code

    assert [via("6.6.6.6, 203.0.113.7"), via("7.7.7.7, 203.0.113.7")] == [200, 200]
    assert via("8.8.8.8, 203.0.113.7") == 429  # what the client wrote left of it changes nothing
    assert via("203.0.113.8") == 200


def test_client_address_by_proxies_and_ipv6_prefix():
    def address(trusted=0, **environ):
        return client_address({"REMOTE_ADDR": "10.0.0.1", **environ}, trusted)

    assert address(HTTP_X_FORWARDED_FOR="1.2.3.4") == "10.0.0.1"
    assert address(2, HTTP_X_FORWARDED_FOR="1.2.3.4, 5.6.7.8") == "1.2.3.4"
    assert address(2, HTTP_X_FORWARDED_FOR="5.6.7.8") == "10.0.0.1"  # fewer entries than proxies: came around them
    assert address(REMOTE_ADDR="2001:db8:1:2:3:4:5:6") == "2001:db8:1:2::/64"  # one subscriber's whole /64
    assert address(REMOTE_ADDR="::ffff:10.1.2.3") == "10.1.2.3"
    assert address(1, HTTP_X_FORWARDED_FOR="1.2.3.4:5678") == "1.2.3.4"  # one allowance whatever the client's port
    assert address(1, HTTP_X_FORWARDED_FOR="[2001:db8::1]:443") == "2001:db8::/64"


def test_a_member_is_limited_by_itself_and_me_rate_limit_says_how(make_app, tenant, clock):
    app = make_app(rate_limit_api="3/minute")
    c = app.test_client()
    bearer = member_client(c, tenant)  # the sign-in takes from the address's login allowance, the OU pick from api
    me = c.get("/me/rate-limit", headers=bearer)
    assert me.status_code == 200
    member_key = me.json["key"]
    assert me.json["key_by"] == "member" and member_key.startswith("member:")
    assert me.json["limits"]["api"] == {
        "key": member_key,
        "limit": 3,
        "window_seconds": 60,
        "rps": 0.05,
        "burst": 3,
        "remaining": 1,
        "reset_seconds": 40.0,
    }
    assert me.json["limits"]["login"]["remaining"] == 9
    assert c.get("/leads", headers=bearer).status_code == 200
    assert c.get("/leads", headers=bearer).status_code == 429
    assert c.get("/leads", headers=tenant.auth).status_code == 200  # the OU's credential is another caller


def test_me_rate_limit_for_a_credential(make_app, tenant):
    c = make_app().test_client()
    got = c.get("/me/rate-limit", headers=tenant.auth).json
    key = got["key"]
    assert key.startswith("credential:") and key != f"credential:{tenant.client_id}"  # by id: no secret, stable
    assert got == {
        "enabled": True,
        "mode": "enforce",
        "key_by": "credential",
        "key": key,
        "rps": 20.0,
        "burst": 1200,
        "stage": "api",
        "redis_available": True,
        "limits": {
            "api": {
                "key": key,
                "limit": 1200,
                "window_seconds": 60,
                "rps": 20.0,
                "burst": 1200,
                "remaining": 1199,
                "reset_seconds": 0.05,
            },
            "ingest": {
                "key": key,
                "limit": 12000,
                "window_seconds": 60,
                "rps": 200.0,
                "burst": 12000,
                "remaining": 12000,
                "reset_seconds": 0.0,
            },
            "address": {
                "key": "address:127.0.0.1",
                "limit": 12000,
                "window_seconds": 60,
                "rps": 200.0,
                "burst": 12000,
                "remaining": 11999,
                "reset_seconds": 0.005,
            },
            "login": {
                "key": "address:127.0.0.1",
                "limit": 10,
                "window_seconds": 60,
                "rps": 10 / 60,
                "burst": 10,
                "remaining": 10,
                "reset_seconds": 0.0,
            },
            "unit": {
                "key": f"unit:{tenant.unit_id}",
                "limit": 120000,
                "window_seconds": 60,
                "rps": 2000.0,
                "burst": 120000,
                "remaining": 120000,
                "reset_seconds": 0.0,
            },
        },
    }


def test_an_ous_event_quota_holds_every_caller_and_source_of_it_together(make_app, tenant, other_tenant, clock):
    app = make_app(rate_limit_unit="5/minute")
    c = app.test_client()
    owner = member_client(c, tenant)
    second = c.post("/secrets", json={"name": "tracker", "scopes": ["ingest"]}, headers=owner).json
    tracker = basic(second["client_id"], second["client_secret"])
    events = [{"lead_id": f"l{n}", "event_type": "x"} for n in range(3)]
    assert c.post("/ingest/batch", json={"events": events}, headers=tenant.auth).status_code == 202
    assert c.post("/ingest", json=events[0], headers=tracker).status_code == 202  # the lane: one of the five
    refused = c.post("/ingest/batch", json={"events": events}, headers=tracker)  # 3 more than the 1 left: none in
    assert refused.status_code == 429, refused.json
    assert refused.json["error"]["details"] == {"limit": ["unit"]}
    assert "this OU's event quota is 5 events per 60 s" in refused.json["error"]["message"]
    assert refused.headers["Retry-After"] == "24"  # two events' share of the minute (12 s each) must come back
    assert stored(app) == 4
    assert c.post("/ingest/batch", json={"events": events}, headers=other_tenant.auth).status_code == 202  # its own
    source = c.post("/webhooks/sources", json={"name": "Signed"}, headers=owner).json
    data, headers = signed(source["secret"], {"lead_id": "w1", "event_type": "x"}, "w1")
    assert c.post(source["url"], data=data, headers=headers).status_code == 202  # the fifth
    data, headers = signed(source["secret"], {"lead_id": "w1", "event_type": "x"}, "w2")
    assert c.post(source["url"], data=data, headers=headers).status_code == 429  # webhooks share the OU's quota
    assert c.post("/ingest", json=events[0], headers=tenant.auth).status_code == 429  # so does the lane
    standing = c.get("/me/rate-limit", headers=tenant.auth).json["limits"]["unit"]
    assert (standing["remaining"], standing["limit"]) == (0, 5)
    clock.advance(12)
    assert c.post("/ingest", json=events[0], headers=tracker).status_code == 202
    assert stored(app) == 3 + 1 + 3 + 1 + 1


def test_an_import_that_spends_the_quota_says_from_which_line_to_send_again(make_app, tenant, clock):
    from webapp.services.event_input import BATCH_MAX

    app = make_app(rate_limit_unit=f"{BATCH_MAX + 10}/minute")
    c = app.test_client()
    rows = "".join(f"r{n},lead{n},x\n" for n in range(BATCH_MAX + 20))
    csv = io.BytesIO(f"event_id,lead_id,event_type\n{rows}".encode())
    r = c.post(
        "/import", data={"file": (csv, "e.csv", "text/csv")}, content_type="multipart/form-data", headers=tenant.auth
    )
    assert r.status_code == 429, r.json
    first_refused = BATCH_MAX + 2  # the header is line 1
    assert r.json["error"]["details"] == {"limit": ["unit"], "imported": [str(BATCH_MAX)], "line": [str(first_refused)]}
    assert f"from line {first_refused} on were not imported" in r.json["error"]["message"]
    assert stored(app) == BATCH_MAX
    clock.advance(60)
    rest = "".join(f"r{n},lead{n},x\n" for n in range(BATCH_MAX, BATCH_MAX + 20))  # from the line it named
    again = c.post(
        "/import",
        data={"file": (io.BytesIO(f"event_id,lead_id,event_type\n{rest}".encode()), "e.csv", "text/csv")},
        content_type="multipart/form-data",
        headers=tenant.auth,
    )
    assert again.status_code == 202, again.json
    assert (again.json["accepted"], again.json["duplicate"]) == (20, 0)
    assert stored(app) == BATCH_MAX + 20


def sign_in(client, email: str, password: str, address: str):
    return client.post("/auth/login", json={"email": email, "password": password}, environ_base=at(address))


def test_failed_sign_ins_hold_the_email_where_they_came_from_growing_to_a_cap(make_app, tenant, clock):
    app = make_app(login_lockout_failures=3, login_lockout_max_seconds=200, rate_limit_login="1000/minute")
    c = app.test_client()
    attacker, member = "198.51.100.66", "192.0.2.10"
    assert [sign_in(c, tenant.email, "guess", attacker).status_code for _ in range(3)] == [401, 401, 401]
    waits, first_hold = [], None
    for _ in range(4):
        held = sign_in(c, tenant.email, tenant.password, attacker)  # even the right password waits out the hold
        assert held.status_code == 429 and held.json["error"]["code"] == "too_many_failures"
        first_hold = first_hold or held.json
        waits.append(int(held.headers["Retry-After"]))
        clock.advance(waits[-1])
        assert sign_in(c, tenant.email, "guess", attacker).status_code == 401  # one more try, one more failure
    assert waits == [60, 120, 200, 200]  # doubling, capped
    assert sign_in(c, tenant.email, tenant.password, attacker).status_code == 429
    assert sign_in(c, tenant.email, tenant.password, member).status_code == 200  # the member, elsewhere, never held
    # An email no member has is held exactly alike: neither answer tells whether it exists.
    ghost = [sign_in(c, "ghost@example.com", "guess", attacker) for _ in range(4)]
    assert [r.status_code for r in ghost] == [401, 401, 401, 429]
    assert ghost[0].json == sign_in(c, tenant.email, "guess", member).json
    assert ghost[3].json == first_hold and ghost[3].headers["Retry-After"] == "60"


def test_a_guess_spread_over_addresses_holds_new_ones_but_not_where_the_member_signed_in(make_app, tenant, clock):
    app = make_app(login_lockout_failures=100, login_lockout_email_failures=4, rate_limit_login="1000/minute")
    c = app.test_client()
    home, new = "192.0.2.10", "203.0.113.5"
    assert sign_in(c, tenant.email, tenant.password, home).status_code == 200
    assert [sign_in(c, tenant.email, "guess", f"198.51.100.{n}").status_code for n in range(4)] == [401] * 4
    held = sign_in(c, tenant.email, tenant.password, new)
    assert held.status_code == 429 and held.headers["Retry-After"] == "60"
    assert sign_in(c, tenant.email, "guess", "198.51.100.99").status_code == 429
    assert sign_in(c, tenant.email, tenant.password, home).status_code == 200  # where the member signed in before
    clock.advance(60)
    assert sign_in(c, tenant.email, tenant.password, new).status_code == 200


def test_attempts_arriving_together_as_a_hold_ends_get_one_try_between_them(make_app, clock):
    lockout = make_app().extensions["leadpulse"].lockout  # 5 failures, then a minute
    for _ in range(5):
        assert lockout.wait("a@example.com", "192.0.2.1") == 0
        lockout.failed("a@example.com", "192.0.2.1")
    assert lockout.wait("a@example.com", "192.0.2.1") == 60
    clock.advance(60)
    assert lockout.wait("a@example.com", "192.0.2.1") == 0
    assert lockout.wait("a@example.com", "192.0.2.1") == 120  # as if that try had failed, until it says otherwise
    lockout.succeeded("a@example.com", "192.0.2.1")
    assert lockout.wait("a@example.com", "192.0.2.1") == 0


def test_sign_in_attempts_have_a_strict_allowance_per_address(make_app, tenant):
    c = make_app(rate_limit_login="3/minute").test_client()
    emails = ["a@example.com", "b@example.com", tenant.email]
    assert [sign_in(c, e, "guess", "198.51.100.1").status_code for e in emails] == [401, 401, 401]
    refused = sign_in(c, tenant.email, tenant.password, "198.51.100.1")
    assert refused.status_code == 429 and refused.json["error"]["code"] == "rate_limited"
    assert refused.headers["Retry-After"] == "20"
    assert sign_in(c, tenant.email, tenant.password, "198.51.100.2").status_code == 200


def test_webhook_sources_are_limited_once_their_delivery_is_known_to_be_theirs(make_app, tenant):
    app = make_app(rate_limit_webhook="2/minute")
    c = app.test_client()
    member = member_client(c, tenant)
    segment = c.post("/webhooks/sources", json={"name": "Segment", "kind": "segment"}, headers=member).json
    other = c.post("/webhooks/sources", json={"name": "Other", "kind": "segment"}, headers=member).json
    standard = c.post("/webhooks/sources", json={"name": "Signed"}, headers=member).json

    def track(source, n):
        auth = base64.b64encode(f"{source['write_key']}:".encode()).decode()
        body = {"type": "track", "event": "Clicked", "userId": "u1", "messageId": f"m{n}"}
        return c.post("/webhooks/segment", json=body, headers={"Authorization": f"Basic {auth}"}).status_code

    assert [track(segment, n) for n in range(3)] == [200, 200, 429]
    assert track(other, 9) == 200
    # Refused before the source is known to have sent them: they take nothing from its allowance.
    data, headers = signed(standard["secret"], {"lead_id": "l1", "event_type": "x"}, "u1")
    unsigned = {k: v for k, v in headers.items() if k != "webhook-signature"}
    assert [c.post(standard["url"], data=data, headers=unsigned).status_code for _ in range(3)] == [400] * 3
    deliveries = [signed(standard["secret"], {"lead_id": "l1", "event_type": "x"}, f"w{n}") for n in range(3)]
    assert [c.post(standard["url"], data=d, headers=h).status_code for d, h in deliveries] == [202, 202, 429]


def test_observe_mode_refuses_nothing_and_off_leaves_redis_alone(make_app, tenant, redis_conn):
    c = make_app(rate_limit_mode="observe", rate_limit_api="1/minute").test_client()
    answers = [c.get("/leads", headers=tenant.auth) for _ in range(3)]
    assert [a.status_code for a in answers] == [200, 200, 200]
    assert answers[-1].headers["RateLimit-Remaining"] == "0"
    assert 'rate_limited_total{limit="api",mode="observe"} 2.0' in c.get("/metrics").get_data(as_text=True)
    redis_conn.flushdb()
    off = make_app(rate_limit_mode="off", rate_limit_api="1/minute").test_client()
    answers = [off.get("/leads", headers=tenant.auth) for _ in range(3)]
    assert [a.status_code for a in answers] == [200, 200, 200] and "RateLimit-Limit" not in answers[-1].headers
    assert redis_conn.keys(keys.RATE(limit="*", caller="*")) == []
    assert off.get("/me/rate-limit", headers=tenant.auth).json["enabled"] is False


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_with_redis_down_events_are_accepted_unlimited_and_sign_in_waits(make_app, tenant):
    app = make_app(redis_url=f"redis://127.0.0.1:{closed_port()}/0", rate_limit_ingest="1/minute")
    c = app.test_client()
    for _ in range(3):  # first through Flask, then the lane
        r = c.post("/ingest", json={"lead_id": "ada", "event_type": "x"}, headers=tenant.auth)
        assert r.status_code == 202 and "RateLimit-Limit" not in r.headers
    assert app.wsgi_app.served == 2 and stored(app) == 3
    assert c.get("/leads", headers=tenant.auth).status_code == 200
    me = c.get("/me/rate-limit", headers=tenant.auth).json
    assert me["redis_available"] is False and me["limits"]["ingest"]["remaining"] is None
    refused = sign_in(c, tenant.email, tenant.password, "192.0.2.10")  # fails closed: guessing would go unchecked
    assert refused.status_code == 503 and refused.headers["Retry-After"] == "5"
    assert refused.json["error"]["code"] == "unavailable"


def test_rates_are_read_from_the_environment_and_garbage_stops_the_start():
    s = Settings.from_env(
        {
            "LEADPULSE_RATE_LIMIT_INGEST": "500/10s",
            "LEADPULSE_RATE_LIMIT_MODE": "Observe",
            "LEADPULSE_TRUSTED_PROXIES": "2",
        }
    )
    assert (s.rate_limit_ingest, s.rate_limit_mode, s.trusted_proxies) == (Rate(500, 10), "observe", 2)
    assert [parse_rate(t) for t in ("20/s", "5 / hour", "1/day", "3/minutes")] == [
        Rate(20, 1),
        Rate(5, 3600),
        Rate(1, 86400),
        Rate(3, 60),
    ]
    for env in ({"LEADPULSE_RATE_LIMIT_API": "2 per fortnight"}, {"LEADPULSE_RATE_LIMIT_MODE": "maybe"}):
        with pytest.raises(SystemExit) as stopped:
            Settings.from_env(env)
        assert next(iter(env)) in str(stopped.value)
    for text in ("0/minute", "5/0s", "5"):
        with pytest.raises(ValueError):
            parse_rate(text)


def test_a_429_answered_by_the_lane_is_the_envelope_flask_would_give(make_app, tenant):
    c = make_app(rate_limit_ingest="1/minute").test_client()
    c.post("/ingest", json={"lead_id": "ada", "event_type": "x"}, headers=tenant.auth)
    by_lane = c.post("/ingest", json={"lead_id": "ada", "event_type": "x"}, headers=tenant.auth)
    by_flask = c.post("/ingest/batch", json={"events": []}, headers=tenant.auth)
    assert by_lane.status_code == by_flask.status_code == 429
    assert json.loads(by_lane.get_data()) == by_flask.json
    assert {k: v for k, v in by_lane.headers.items() if k.startswith(("Retry", "RateLimit"))} == {
        k: v for k, v in by_flask.headers.items() if k.startswith(("Retry", "RateLimit"))
    }
