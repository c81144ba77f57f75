"""Property: after any sequence of ingests (late ones included), merges, event deletions, publishes, unpublishes,
pauses, decay rules and decay passes, every lead's ledger sums to its score in every ruleset, and that score is what the
published rules make of its stored events (for a ruleset not paused since it was published).

Each example is a fresh OU driven through the API (the Flask test client) on a simulated clock, with decay passes run
as the schedule runs them and scoring drained by the real worker, as the other tests do; the ledger is read with
models.explain.ledgers, the function GET /lead/{id}/score-explain calls, and at the end of each example through that
endpoint too.
"""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

from hypothesis import HealthCheck, event, given
from hypothesis import settings as examples
from hypothesis import strategies as st
from sqlalchemy import select, update

from models.accounts import bootstrap
from models.engine import DECAY
from models.events import SCORED, Event
from models.explain import ledgers
from models.leads import Lead
from models.scoring import PUBLISHED, DecayRule, Ruleset
from tests.conftest import Api, Tenant
from tests.helpers import settle
from worker.jobs import decay_pass

LEADS = ("a", "b", "c", "d")
TYPES = ("view", "demo", "unsub", "other")  # "other" has no rule anywhere at first
FIRST_WEIGHTS = {"primary": {"view": 5, "demo": 30, "unsub": -20}, "second": {"demo": 50, "unsub": -60}}
T0 = datetime(2026, 1, 1, tzinfo=UTC)  # each example's clock starts here and only moves forward
UNITS = itertools.count()

# hours before the clock: an event older than what a lead already has arrives late
ingest = st.tuples(st.just("ingest"), st.sampled_from(LEADS), st.sampled_from(TYPES), st.integers(0, 200))
merge = st.tuples(st.just("merge"), st.sampled_from(LEADS), st.sampled_from(LEADS))
delete = st.tuples(st.just("delete"), st.integers(0, 40))
publish = st.tuples(
    st.just("publish"), st.sampled_from(("primary", "second")), st.sampled_from(TYPES), st.integers(-40, 40)
)
unpublish = st.tuples(st.just("unpublish"), st.sampled_from(("primary", "second")))
pause = st.tuples(st.just("pause"), st.sampled_from(("primary", "second")), st.booleans())
decay_rule = st.tuples(st.just("decay_rule"), st.integers(1, 48), st.integers(1, 15))  # every n hours, minus d
decay = st.tuples(st.just("decay"), st.integers(0, 96))  # the clock moves on n hours, then a decay pass runs
STEPS = st.lists(
    st.one_of(ingest, ingest, ingest, merge, delete, publish, unpublish, pause, decay_rule, decay, decay),
    min_size=2,
    max_size=12,
)


class Run:
    """One example's OU: its API, its rulesets by role, and what the steps do to it."""

    def __init__(self, app, client, run_worker):
        self.app, self.run_worker = app, run_worker
        self.clock = T0
        with app.extensions["leadpulse"].Session() as s, s.begin():  # no member: no password to hash per example
            made = bootstrap(s, f"Prop{next(UNITS)}", "Main")
        self.tenant = Tenant(made["org_id"], made["unit_id"], made["client_id"], made["client_secret"], "", "")
        self.api = Api(client, self.tenant)
        self.rulesets = {}
        self.active = {"primary": True, "second": True}
        # The rulesets whose scores are what their rules make of every stored event (none is paused since its last
        # publish): the others keep what they scored while active.
        self.replayable = {"primary", "second"}
        for role, weights in FIRST_WEIGHTS.items():
            r = self.api.post("/rulesets", json={"name": role, "is_primary": role == "primary"})
            assert r.status_code == 201, r.json
            self.rulesets[role] = r.json["ruleset_id"]
            for event_type, weight in weights.items():
                self.rule(role, event_type, weight)
        assert self.api.post(f"/rulesets/{self.rulesets['primary']}/publish").status_code == 200

    def rule(self, role: str, event_type: str, weight: int) -> None:
        """Set the weight of the ruleset's rule for the type (created if missing); it scores once published."""
        rs = self.rulesets[role]
        rules = {r["event_type"]: r["rule_id"] for r in self.api.get(f"/rulesets/{rs}/rules").json}
        if event_type in rules:
            r = self.api.put(f"/rules/{rules[event_type]}", json={"weight": weight})
            assert r.status_code == 200, r.json
        else:
            r = self.api.post("/rules", json={"ruleset_id": rs, "event_type": event_type, "weight": weight})
            assert r.status_code == 201, r.json

    def step(self, step: tuple) -> None:
        kind, *args = step
        if kind == "ingest":
            lead, event_type, hours_ago = args
            at = (self.clock - timedelta(hours=hours_ago)).isoformat()
            r = self.api.post("/ingest", json={"lead_id": lead, "event_type": event_type, "timestamp": at})
            assert r.status_code == 202, r.json
        elif kind == "merge":
            target, source = args
            r = self.api.post("/leads/merge", json={"targetLeadId": target, "sourceLeadIds": [source]})
            assert r.status_code in (200, 400, 404, 409), r.json  # itself, unknown yet, or already merged
        elif kind == "delete":
            ids = sorted(e["id"] for e in self.api.get("/events", query_string={"limit": 500}).json["events"])
            if ids:
                r = self.api.delete("/events/batch", json={"ids": [ids[args[0] % len(ids)]]})
                assert r.status_code == 200 and r.json["deleted"] == 1, r.json
        elif kind == "publish":
            role, event_type, weight = args
            self.rule(role, event_type, weight)
            assert self.api.post(f"/rulesets/{self.rulesets[role]}/publish").status_code == 200
            if self.active[role]:
                self.replayable.add(role)
            else:  # published while paused: it scores nothing until resumed, and then only what comes after
                self.replayable.discard(role)
        elif kind == "unpublish":
            assert self.api.post(f"/rulesets/{self.rulesets[args[0]]}/unpublish").status_code == 200
            self.replayable.add(args[0])  # a draft has no scores, as the contract computed afresh says
        elif kind == "pause":
            role, active = args
            r = self.api.put(f"/rulesets/{self.rulesets[role]}", json={"active": active})
            assert r.status_code == 200, r.json
            self.active[role] = active
            if not active:
                self.replayable.discard(role)
        elif kind == "decay_rule":
            every, decrease = args
            r = self.api.post("/decays", json={"inactive_for": every, "unit": "hours", "decrease": decrease})
            assert r.status_code == 201, r.json
            with self.app.extensions["leadpulse"].Session() as s, s.begin():  # as if made before the first event
                s.execute(
                    update(DecayRule)
                    .where(DecayRule.id == r.json["decay_id"])
                    .values(applies_from=T0 - timedelta(days=30))
                )
        elif kind == "decay":
            self.clock += timedelta(hours=args[0])
            state = self.app.extensions["leadpulse"]
            decay_pass(state.settings, state.redis, self.tenant.unit_id, now=self.clock)

    def check(self) -> None:
        """Every lead's ledger sums to its stored score in every ruleset, which is what the rules make of its events."""
        replayable = {self.rulesets[role] for role in self.replayable}
        with self.app.extensions["leadpulse"].Session() as s:
            leads = s.execute(select(Lead).where(Lead.unit_id == self.tenant.unit_id)).scalars().all()
            rulesets = s.execute(select(Ruleset).where(Ruleset.unit_id == self.tenant.unit_id)).scalars().all()
            expected = expected_ledgers(s, rulesets, [lead.pk for lead in leads])
            by_lead = ledgers(s, self.tenant.unit_id, [lead.pk for lead in leads])
            for lead in leads:
                got = {lg.ruleset_id: lg for lg in by_lead[lead.pk]}
                assert set(got) == {rs.id for rs in rulesets}
                for rs in rulesets:
                    ledger = got[rs.id]
                    assert ledger.total == ledger.score, (lead.lead_id, rs.name, ledger)
                    if rs.id in replayable:
                        want = expected[lead.pk].get(rs.id, {"score": 0, "floor": 0})
                        assert as_expected(ledger) == want, (lead.lead_id, rs.name, ledger)
                primary = got[self.rulesets["primary"]]
                assert primary.is_primary and primary.score == lead.score, (lead.lead_id, primary, lead.score)

    def check_api(self) -> None:
        """The endpoint says the same: each ruleset's parts sum to its score, the primary's to the lead's."""
        for lead in self.api.get("/leads").json:
            body = self.api.get(f"/lead/{lead['lead_id']}/score-explain").json
            assert [lg["ruleset_id"] for lg in body["ledger"]][0] == self.rulesets["primary"]
            for ledger in body["ledger"]:
                assert sum(p["points"] for p in ledger["parts"]) == ledger["score"], (lead, ledger)
            assert body["ledger"][0]["score"] == lead["score"] == body["score"]
            parts = [p for ledger in body["ledger"] for p in ledger["parts"] if p["count"]]
            for kind in ("decay", "floor"):  # what the examples reached (hypothesis' statistics)
                event(f"a lead with {kind} in its ledger", any(p["kind"] == kind for p in parts))


def expected_ledgers(session, rulesets: list[Ruleset], lead_pks: list[int]) -> dict[int, dict[str, dict]]:
    """The contract computed afresh, without the engine: each lead's scored events in (time, id) order under each
    published ruleset's snapshot weights (a DECAY: minus its decrease, in every ruleset), floored at 0 (the caller skips
    paused rulesets; none here is windowed); per lead and ruleset its score, (count, points) per rule or decay rule,
    and what the floor added back."""
    events = session.execute(
        select(Event.lead_pk, Event.event_type, Event.metadata_)
        .where(Event.lead_pk.in_(lead_pks), Event.status == SCORED)
        .order_by(Event.lead_pk, Event.occurred_at, Event.id)
    ).all()
    out: dict[int, dict[str, dict]] = {pk: {} for pk in lead_pks}
    for rs in rulesets:
        if rs.status != PUBLISHED:
            continue
        weights = {r["event_type"]: r["weight"] for r in rs.published_rules}
        for e in events:
            if e.event_type == DECAY:
                key, points = ("decay", e.metadata_["decay_id"]), -e.metadata_["decrease"]
            elif e.event_type in weights:
                key, points = ("rule", e.event_type), weights[e.event_type]
            else:
                continue
            ledger = out[e.lead_pk].setdefault(rs.id, {"score": 0, "floor": 0})
            after = max(0, ledger["score"] + points)
            ledger["floor"] += after - ledger["score"] - points
            ledger["score"] = after
            count, total = ledger.get(key, (0, 0))
            ledger[key] = (count + 1, total + points)
    return out


def as_expected(ledger) -> dict:
    """A ledger in expected_ledgers' terms."""
    out = {"score": ledger.score, "floor": 0}
    for p in ledger.parts:
        if p.kind == "floor":
            out["floor"] = p.points
        else:
            out[(p.kind, p.event_type if p.kind == "rule" else p.rule_id)] = (p.count, p.points)
    return out


def test_every_ledger_sums_to_its_score_after_any_sequence(app, client, run_worker):
    @examples(max_examples=15, deadline=None, database=None, derandomize=True, suppress_health_check=list(HealthCheck))
    @given(steps=STEPS)
    def run(steps):
        world = Run(app, client, run_worker)
        for step in steps:
            world.step(step)
            settle(app, run_worker)
            world.check()
        world.check_api()

    run()
