"""Inquiry rewards: info_gain sums to the entropy drop, ranges reached, dense turns."""

from __future__ import annotations

import math

import pytest

from gymrl import ConfigError, Episode, Task, Turn
from gymrl.backends.scripted import ScriptedBackend
from gymrl.evaluate import run_episodes
from gymrl.make import make_env
from gymrl_rewards.inquiry_rewards import (
    InfoGainReward,
    NousReward,
    QuestionCostReward,
    SpecOutcomeReward,
)


def _episodes(policy, user, reward="nous", episodes=20, domain="restaurant"):
    records = run_episodes(lambda: make_env("inquiry", domain=domain, user=user, reward=reward,
                                            split="test"),
                           ScriptedBackend(policy), episodes=episodes, seed=0)
    return [episode for episode, _ in records]


@pytest.mark.parametrize("policy,user", [("oracle", "novice"), ("random_ask", "intermediate"),
                                         ("oracle", "expert"), ("never_ask", "expert"),
                                         ("malformed", "novice")])
def test_info_gain_per_turn_sums_to_the_total_entropy_reduction(policy, user):
    reward = InfoGainReward()
    for episode in _episodes(policy, user):
        score = reward(episode)
        facts = episode.facts
        assert len(score.per_turn) == len(episode.policy_turns)
        assert math.fsum(score.per_turn) == pytest.approx(score.total, abs=1e-12)
        assert score.total == pytest.approx(
            facts["initial_entropy_bits"] - facts["entropy_bits"], abs=1e-9)
        assert all(math.isfinite(g) for g in score.per_turn)


def test_noisy_answers_can_lose_bits_but_entropy_stays_valid():
    gains = [g for e in _episodes("oracle", "novice", episodes=40)
             for g in InfoGainReward()(e).per_turn]
    assert min(gains) < 0 < max(gains)  # a wrong answer can spread the belief


def test_info_gain_fraction_reaches_one_when_the_belief_collapses():
    reward = InfoGainReward(unit="fraction")
    assert reward.range == (-math.inf, 1.0)
    best = max(reward(e).total for e in _episodes("oracle", "expert"))
    assert best == pytest.approx(1.0)
    assert all(reward(e).total == 0.0 for e in _episodes("never_ask", "expert", episodes=5))


def test_spec_outcome_range_both_ends():
    reward, exact = SpecOutcomeReward(), SpecOutcomeReward("exact")
    assert reward.range == (0.0, 1.0)
    good = _episodes("oracle", "expert")
    bad = _episodes("malformed", "expert", episodes=3)
    assert max(reward(e).total for e in good) == 1.0
    assert min(reward(e).total for e in bad) == 0.0
    assert {exact(e).total for e in _episodes("never_ask", "expert")} <= {0.0, 1.0}


def test_question_cost_range_both_ends_and_dense_turns():
    reward = QuestionCostReward()
    assert reward.range == (-0.1, 0.0)
    assert max(reward(e).total for e in _episodes("never_ask", "novice", episodes=3)) == 0.0
    # Under nous (the default here) information gain pays too, so the oracle keeps asking.
    many = _episodes("oracle", "novice", episodes=5)
    assert min(reward(e).total for e in many) == pytest.approx(-0.1)
    for episode in many:
        score = reward(episode)
        assert math.fsum(score.per_turn) == pytest.approx(score.total)
    assert QuestionCostReward(per_question=0.1, cap=0.3).range == (-0.3, 0.0)


def test_nous_composite_reports_components_and_dense_turns():
    episode = _episodes("oracle", "expert", episodes=1)[0]
    assert set(episode.rewards) >= {"spec_outcome", "info_gain", "question_cost", "format"}
    r = episode.rewards
    assert episode.reward == pytest.approx(r["spec_outcome"] + 0.5 * r["info_gain"]
                                           + r["question_cost"] + r["format"])
    dense = [t.rewards["total"] for t in episode.policy_turns]
    assert math.fsum(dense) == pytest.approx(0.5 * r["info_gain"] + r["question_cost"])
    lo, hi = NousReward().range
    assert lo == -math.inf and hi == pytest.approx(1.5)
    worst = _episodes("malformed", "expert", episodes=2)[0]
    assert worst.reward == pytest.approx(-1.0)  # format penalty, nothing else


@pytest.mark.parametrize("user", ["expert", "novice"])
def test_default_reward_ends_are_the_clairvoyant_and_the_stalling_policies(user):
    default = "spec_outcome+question_cost+format"
    best = _episodes("clairvoyant", user, reward=default, episodes=5)
    worst = _episodes("stall", user, reward=default, episodes=5)
    assert all(e.rewards == {"spec_outcome": 1.0, "question_cost": 0.0, "format": 0.0}
               and e.reward == 1.0 and e.facts["questions"] == 0 for e in best)
    for episode in worst:  # twelve unmappable questions, no spec, truncated
        assert episode.rewards == pytest.approx(
            {"spec_outcome": 0.0, "question_cost": -0.1, "format": -1.0})
        assert episode.reward == pytest.approx(-1.1)
        assert episode.facts["understood"] == 0 and episode.facts["spec"] is None
    # Under nous they score alike: neither policy's turns gain a bit.
    assert all(e.reward == 1.0 for e in _episodes("clairvoyant", user, episodes=3))
    assert all(e.reward == pytest.approx(-1.1) for e in _episodes("stall", user, episodes=3))


def test_default_question_cost_lets_good_questions_beat_guessing():
    """The default reward under the default env (mixed users): asking the right questions is
    worth its cost, so oracle > random_ask > never_ask in mean reward."""
    def mean_reward(policy):
        episodes = _episodes(policy, "mixed", reward=None, episodes=60, domain="diagram")
        return math.fsum(e.reward for e in episodes) / len(episodes)

    oracle, rand, never = (mean_reward(p) for p in ("oracle", "random_ask", "never_ask"))
    assert oracle > rand + 0.05 and rand > never + 0.05


def test_info_gain_plus_outcome_reaches_the_learner_through_the_episode():
    """``gymrl train env=inquiry reward=info_gain+outcome``: the learner reads
    ``turn.rewards["total"]`` (dense) and ``episode.reward``."""
    episode = _episodes("oracle", "expert", reward="info_gain+outcome", episodes=1)[0]
    dense = [t.rewards["total"] for t in episode.policy_turns]
    assert dense[0] > 0 and dense[-1] == 0.0  # questions gain, the spec turn does not
    assert episode.rewards["outcome"] == 1.0  # the exact spec matches the canonical intent
    assert episode.reward == pytest.approx(math.fsum(dense) + 1.0)


def test_rewards_not_applicable_outside_inquiry():
    episode = Episode(env="t", task=Task(id="t", prompt="q"))
    episode.turns.append(Turn(role="policy", text="x"))
    assert InfoGainReward()(episode).diagnostics["applicable"] is False
    assert InfoGainReward()(episode).per_turn == [0.0]
    assert SpecOutcomeReward()(episode).diagnostics["applicable"] is False


def test_bad_options_name_what_is_allowed():
    with pytest.raises(ConfigError, match="allowed: bits, fraction"):
        InfoGainReward(unit="nats")
    with pytest.raises(ConfigError, match="allowed: share, exact"):
        SpecOutcomeReward(metric="f1")
    with pytest.raises(ConfigError, match="per_question >= 0"):
        QuestionCostReward(per_question=-1)
    with pytest.raises(ConfigError, match="gain_weight"):
        NousReward(gain_weight=-0.1)
