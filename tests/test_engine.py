"""The pure scoring engine and level rules: order, floor, windows, classification, validation."""

from datetime import UTC, datetime, timedelta

import pytest

from models.engine import DECAY, EventSpec, RulesetSpec, RuleSpec, event_spec, primary_score, score_events, void_decays
from models.level_rules import LevelSpec, LevelTableError, classify, validate_table

T0 = datetime(2025, 8, 15, 12, 0, tzinfo=UTC)


def ruleset(rid="rs", published=True, active=True, start=None, end=None, **weights):
    rules = {et: RuleSpec(f"r-{et}", et, w) for et, w in weights.items()}
    return RulesetSpec(rid, published, active, start, end, rules)


def ev(i, et, minutes=0):
    return EventSpec(i, et, T0 + timedelta(minutes=minutes))


def test_weights_add_per_matching_rule():
    scores, deltas = score_events([ev(1, "open"), ev(2, "click"), ev(3, "unknown")], [ruleset(open=5, click=10)], {})
    assert scores == {"rs": 15}
    assert [(d.event_id, d.delta, d.score_after) for d in deltas] == [(1, 5, 5), (2, 10, 15)]


def test_floor_at_zero_makes_order_matter_and_uses_event_time():
    rs = [ruleset(open=5, unsub=-10)]
    # Arrival order differs from event time; the engine orders by (occurred_at, id).
    late_first = [ev(2, "open", minutes=5), ev(1, "unsub", minutes=0)]
    scores, deltas = score_events(late_first, rs, {})
    assert scores == {"rs": 5}  # unsub at 0 -> floor 0, then open -> 5
    assert [d.delta for d in deltas] == [0, 5]


def test_negative_scores_allowed_when_enabled():
    scores, _ = score_events([ev(1, "unsub"), ev(2, "open", 1)], [ruleset(open=5, unsub=-10)], {}, allow_negative=True)
    assert scores == {"rs": -5}


def test_incremental_equals_full_replay_for_any_split():
    rs = [ruleset(open=3, unsub=-7, demo=20)]
    events = [ev(i, et, i) for i, et in enumerate(["open", "unsub", "unsub", "open", "demo", "unsub", "open"] * 3)]
    full, _ = score_events(events, rs, {})
    for split in range(len(events) + 1):
        part, _ = score_events(events[:split], rs, {})
        rest, _ = score_events(events[split:], rs, part)
        assert rest == full


def test_draft_inactive_and_out_of_window_rulesets_score_nothing():
    events = [ev(1, "open")]
    assert score_events(events, [ruleset(published=False, open=5)], {})[0] == {}
    assert score_events(events, [ruleset(active=False, open=5)], {})[0] == {}
    assert score_events(events, [ruleset(start=T0 + timedelta(days=1), open=5)], {})[0] == {}
    assert score_events(events, [ruleset(end=T0 - timedelta(seconds=1), open=5)], {})[0] == {}
    assert score_events(events, [ruleset(start=T0, end=T0, open=5)], {})[0] == {"rs": 5}


def test_rule_window_and_active_flag():
    rule = RuleSpec("r", "open", 5, True, T0 + timedelta(minutes=1), T0 + timedelta(minutes=2))
    rs = RulesetSpec("rs", True, rules={"open": rule})
    scores, _ = score_events([ev(1, "open", 0), ev(2, "open", 1), ev(3, "open", 2), ev(4, "open", 3)], [rs], {})
    assert scores == {"rs": 10}
    off = RulesetSpec("rs", True, rules={"open": RuleSpec("r", "open", 5, active=False)})
    assert score_events([ev(1, "open")], [off], {})[0] == {}


def test_event_scores_under_every_published_ruleset():
    scores, _ = score_events([ev(1, "open")], [ruleset("a", open=5), ruleset("b", open=2)], {"b": 1})
    assert scores == {"a": 5, "b": 3}


def test_primary_score():
    assert primary_score({"a": 5, "b": 9}, "a") == 5
    assert primary_score({"a": 5}, None) == 0
    assert primary_score({}, "a") == 0


LEVELS = [
    LevelSpec("c", "Cold", 0, 24),
    LevelSpec("w", "Warm", 25, 49),
    LevelSpec("h", "Hot", 50, 74),
    LevelSpec("v", "Very Hot", 75, None),
]


@pytest.mark.parametrize(
    "score,name",
    [
        (0, "Cold"),
        (20, "Cold"),
        (24, "Cold"),
        (25, "Warm"),
        (35, "Warm"),
        (65, "Hot"),
        (74, "Hot"),
        (75, "Very Hot"),
        (10**6, "Very Hot"),
    ],
)
def test_classify_reference_example(score, name):
    assert classify(score, LEVELS).name == name


def test_classify_outside_every_range_is_unclassified():
    assert classify(-1, LEVELS) is None
    assert classify(30, [LevelSpec("c", "Cold", 0, 24)]) is None


def test_validate_table_rules():
    validate_table(LEVELS)
    with pytest.raises(LevelTableError) as exc:
        validate_table(LEVELS + [LevelSpec("x", "Overlap", 40, 60)])
    assert exc.value.code == "overlapping_ranges"
    with pytest.raises(LevelTableError) as exc:
        validate_table([LevelSpec("a", "Top", 10, None), LevelSpec("b", "Higher", 100, None)])
    assert exc.value.code == "overlapping_ranges"
    with pytest.raises(LevelTableError) as exc:
        validate_table([LevelSpec("a", "Hot", 0, 10), LevelSpec("b", "hot", 11, 20)])
    assert exc.value.code == "duplicate_name"
    with pytest.raises(LevelTableError) as exc:
        validate_table([LevelSpec("a", "Bad", 10, 5)])
    assert exc.value.field == "max_score"
    validate_table([LevelSpec("a", "A", 0, 10), LevelSpec("b", "B", 11, None)])


def decay_ev(i, days, since_days=0, decrease=5, rule="dc"):
    return EventSpec(i, DECAY, T0 + timedelta(days=days), -decrease, rule, T0 + timedelta(days=since_days))


def test_a_decay_takes_its_points_in_every_ruleset_scoring_at_its_time_after_the_floor():
    rs = [ruleset("a", open=5), ruleset("b", end=T0 + timedelta(days=1), open=5), ruleset("c", published=False)]
    scores, deltas = score_events([ev(1, "open"), decay_ev(2, 1), decay_ev(3, 2)], rs, {})
    assert scores == {"a": 0, "b": 0}  # c is a draft; b's window ends before the second decay
    assert [(d.event_id, d.ruleset_id, d.rule_id, d.delta) for d in deltas] == [
        (1, "a", "r-open", 5),
        (1, "b", "r-open", 5),
        (2, "a", "dc", -5),
        (2, "b", "dc", -5),
        (3, "a", "dc", 0),  # the floor: the change after it
    ]


def test_a_decay_is_void_unless_the_last_activity_before_it_is_the_one_it_counts_from():
    events = [
        ev(1, "open"),
        decay_ev(2, 1),
        ev(3, "open", minutes=36 * 60),
        decay_ev(4, 2),
        decay_ev(5, 3, since_days=1.5),
    ]
    assert void_decays(events) == {4}  # 4 counts from 0, but there was activity at 1.5 days
    assert void_decays(events[3:], last_activity=T0) == {5}  # incremental: the last activity scored before
    assert void_decays([decay_ev(2, 1)], last_activity=None) == {2}  # no activity at all
    spec = event_spec(9, DECAY, T0, {"decrease": 7, "decay_id": "dc", "since": "2025-08-15T12:00:00.000000Z"})
    assert (spec.points, spec.rule_id, spec.since, spec.is_activity) == (-7, "dc", T0, False)
    assert event_spec(9, "open", T0, None) == EventSpec(9, "open", T0)
