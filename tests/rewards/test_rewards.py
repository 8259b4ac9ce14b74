"""Each reward's documented range, reached at both ends, and its state round trip."""

from __future__ import annotations

import pytest

from gymrl import ConfigError, Episode, Task, ToolCall, Turn, compose
from gymrl.make import make_env
from gymrl_rewards.cost import CostReward
from gymrl_rewards.format import FormatReward
from gymrl_rewards.outcome import OutcomeReward
from gymrl_rewards.router_r1 import RouterR1Reward


def _episode(answer=None, gold=("Paris",), violations=(), cost=0.0) -> Episode:
    ep = Episode(env="t", task=Task(id="t1", prompt="q", answer=list(gold)))
    turn = Turn(role="policy", text="...", facts={"format_violations": list(violations)})
    if cost:
        turn.tool_calls.append(ToolCall(name="m", arguments={}, cost_usd=cost))
    ep.turns.append(turn)
    ep.facts["answer"] = answer
    return ep


def test_format_range_both_ends():
    reward = FormatReward()
    assert reward.range == (-1.0, 0.0)
    assert reward(_episode("Paris")).total == 0.0
    bad = reward(_episode("Paris", violations=["<think> is never closed"]))
    assert bad.total == -1.0 and "never closed" in bad.diagnostics["violations"][0]
    episode_level = _episode("x")
    episode_level.facts["format_violations"] = ["no <answer> before the turn limit"]
    assert reward(episode_level).total == -1.0


def test_format_penalty_option_and_validation():
    assert FormatReward(penalty=-0.5)(_episode(violations=["x"])).total == -0.5
    with pytest.raises(ValueError, match="penalty"):
        FormatReward(penalty=1.0)


@pytest.mark.parametrize("answer,gold,em,f1", [
    ("Paris", ["Paris"], 1.0, 1.0),
    ("  the PARIS. ", ["Paris"], 1.0, 1.0),
    ("Paris, France", ["Paris"], 0.0, 2 / 3),
    ("Lyon", ["Paris", "Lyon"], 1.0, 1.0),
    ("Berlin", ["Paris"], 0.0, 0.0),
    (None, ["Paris"], 0.0, 0.0),
])
def test_outcome_em_and_f1(answer, gold, em, f1):
    assert OutcomeReward("em")(_episode(answer, gold)).total == pytest.approx(em)
    assert OutcomeReward("f1")(_episode(answer, gold)).total == pytest.approx(f1)


def test_outcome_rejects_unknown_metric():
    with pytest.raises(ConfigError, match="'acc'.*em, f1"):
        OutcomeReward("acc")


def test_cost_range_both_ends_and_warmup():
    reward = CostReward(reference_usd=1e-4, charge="always")
    assert reward(_episode(cost=0.0)).total == 0.0          # free: best end
    assert reward(_episode(cost=5e-4)).total == -1.0        # above reference: worst end
    assert reward(_episode(cost=5e-5)).total == pytest.approx(-0.5)


def test_cost_charges_a_correct_answer_only_by_default():
    reward = CostReward(reference_usd=1e-4)
    right = reward(_episode("Paris", cost=5e-5))
    assert right.total == pytest.approx(-0.5) and right.diagnostics["charged"] == 1.0
    for wrong in (_episode("Lyon", cost=5e-5), _episode(None, cost=5e-5)):
        score = reward(wrong)
        assert score.total == 0.0 and score.diagnostics["charged"] == 0.0
    assert reward(_episode("Paris", cost=5e-4)).total == -1.0  # worst end, on a right answer
    assert CostReward(reference_usd=1e-4, charge="always")(_episode("Lyon", cost=5e-5)).total \
        == pytest.approx(-0.5)


def test_cost_bounds_stay_fixed_unless_rolling():
    reward = CostReward(warmup=2, reference_usd=1e-4)
    for c in (1e-6, 2e-6, 3e-6, 4e-6):
        reward(_episode("Paris", cost=c))
    assert reward.bounds() == (0.0, 1e-4) and reward.state_dict() == {"history": []}


def test_cost_rejects_an_unknown_charge():
    with pytest.raises(ConfigError, match="'sometimes'; allowed: correct, always"):
        CostReward(charge="sometimes")


def test_cost_rolling_percentiles():
    reward = CostReward(warmup=10, low=0, high=100, rolling=True, charge="always")
    for c in range(1, 11):
        reward(_episode(cost=c * 1e-5))
    lo, hi = reward.bounds()
    assert lo == pytest.approx(1e-5) and hi == pytest.approx(1e-4)
    assert reward(_episode(cost=5.5e-5)).total == pytest.approx(-0.5)
    assert reward(_episode(cost=1e-6)).total == 0.0


def test_frozen_cost_scores_against_fixed_bounds_and_never_records():
    live = CostReward(warmup=2, reference_usd=1e-4, rolling=True, charge="always")
    for c in (1e-6, 2e-6, 3e-6):
        live(_episode(cost=c))
    frozen = live.frozen()
    assert live.bounds() != (0.0, 1e-4)
    for _ in range(50):
        assert frozen(_episode(cost=5e-5)).total == pytest.approx(-0.5)  # cost / reference
    assert frozen.bounds() == (0.0, 1e-4) and frozen.state_dict() == {"history": []}
    assert len(live.history) == 3  # the copy shares nothing with the original


def test_frozen_composite_freezes_each_component():
    reward = compose("cost+outcome", options={"cost": {
        "warmup": 1, "reference_usd": 1e-4, "rolling": True, "charge": "always"}})
    frozen = reward.frozen()
    assert frozen.weights == reward.weights and frozen.range == reward.range
    for _ in range(5):
        assert frozen(_episode(cost=5e-5)).components["cost"] == pytest.approx(-0.5)
    assert frozen.state_dict()["cost"] == {"history": []}


def test_cost_state_round_trip_is_exact():
    a = CostReward(warmup=3, rolling=True, charge="always")
    for c in (1e-5, 3e-5, 2e-5, 8e-5):
        a(_episode(cost=c))
    b = CostReward(warmup=3, rolling=True, charge="always")
    b.load_state_dict(a.state_dict())
    assert b.bounds() == a.bounds()
    assert b(_episode(cost=4e-5)).total == a(_episode(cost=4e-5)).total


def test_router_r1_range_both_ends():
    reward = RouterR1Reward(alpha=0.2)
    assert reward.range == pytest.approx((-1.0, 0.8))
    best = reward(_episode("Paris"))
    assert best.total == pytest.approx(0.8)
    assert best.components == {"outcome": 1.0, "format": 0.0, "cost": 0.0}
    worst = reward(_episode("Rome", violations=["x"], cost=1.0))
    assert worst.total == pytest.approx(-1.0)


def test_router_r1_alpha_validated():
    with pytest.raises(ValueError, match="alpha"):
        RouterR1Reward(alpha=1.5)


def test_composite_weights_and_components():
    reward = compose("cost+outcome", weights={"cost": 0.3})
    assert reward.range == pytest.approx((-0.3, 1.0))
    score = reward(_episode("Paris", cost=1.0))
    assert score.components == {"cost": -1.0, "outcome": 1.0}
    assert score.total == pytest.approx(0.7)


@pytest.mark.parametrize("spec,match", [
    ("", "empty"),
    ("cost++outcome", "not a reward name"),
    ("Cost", "not a reward name"),
    ("cost+cost", "twice"),
])
def test_bad_specs(spec, match):
    with pytest.raises(ConfigError, match=match):
        compose(spec)


def test_weight_for_component_not_in_spec():
    with pytest.raises(ConfigError, match="'outcome'.*not in the reward spec.*cost"):
        compose("cost", weights={"outcome": 2})


def test_unknown_reward_option_lists_valid():
    with pytest.raises(ConfigError,
                       match="'windw'.*valid options: charge, high, low, reference_usd"):
        compose("cost", options={"cost": {"windw": 3}})


def test_env_logs_every_component():
    env = make_env("router", reward="cost+outcome+format")
    env.reset(seed=0)
    env.step("<think>t</think><answer>x</answer>")
    assert set(env.episode.rewards) == {"cost", "outcome", "format"}


def test_cost_percentiles_match_numpy_over_a_sliding_window():
    import numpy as np

    rng = np.random.default_rng(0)
    reward = CostReward(window=50, warmup=1, rolling=True)
    for cost in rng.exponential(1e-4, size=300):
        reward(_episode(cost=float(cost)))
        if len(reward.history) < 2:
            continue  # one cost: lo == hi, widened on purpose
        expected = np.percentile(np.array(reward.history), [5, 95])
        assert reward.bounds() == pytest.approx(tuple(expected), rel=1e-12)


def test_cost_rejects_nonsense_costs():
    with pytest.raises(ValueError, match="finite and >= 0"):
        CostReward()(_episode(cost=float("nan")))
