"""Summaries and before/after comparisons of evaluation records."""

from __future__ import annotations

import math

import pytest

from gymrl.evaluate import paired_change


def _rec(task, reward, accuracy, cost, seed=0):
    return {"task_id": task, "seed": seed, "reward": reward,
            "metrics": {"accuracy": accuracy, "cost_usd": cost}}


def test_paired_change_hand_computed():
    before = [_rec("a", 0.0, 0.0, 4e-5), _rec("b", 0.5, 1.0, 2e-5), _rec("c", 1.0, 1.0, 2e-5)]
    # Reordered on purpose: pairing is by (task_id, seed), not position.
    after = [_rec("c", 1.0, 1.0, 1e-5), _rec("a", 0.75, 1.0, 1e-5), _rec("b", 0.75, 1.0, 1e-5)]
    change = paired_change(before, after)
    diffs = [0.0, 0.75, 0.25]  # c, a, b
    mean = sum(diffs) / 3
    se = math.sqrt(sum((d - mean) ** 2 for d in diffs) / 2 / 3)
    assert change["episodes"] == 3
    assert change["reward_diff"] == pytest.approx(mean)
    assert change["reward_diff_stderr"] == pytest.approx(se)
    assert change["significant"] == (mean > 2 * se)
    assert change["reward_before"] == pytest.approx(0.5)
    assert change["accuracy_before"] == pytest.approx(2 / 3)
    assert change["accuracy_after"] == pytest.approx(1.0)
    assert change["cost_per_correct_usd_before"] == pytest.approx(8e-5 / 2)
    assert change["cost_per_correct_usd_after"] == pytest.approx(3e-5 / 3)


def test_paired_change_significant_when_every_episode_improves_alike():
    before = [_rec(str(i), 0.0, 0.0, 0.0) for i in range(10)]
    after = [_rec(str(i), 0.5 + 0.01 * (i % 2), 1.0, 0.0) for i in range(10)]
    change = paired_change(before, after)
    assert change["significant"] and change["reward_diff"] > 20 * change["reward_diff_stderr"]
    assert change["cost_per_correct_usd_before"] == math.inf


def test_paired_change_needs_shared_episodes():
    with pytest.raises(ValueError, match="share no episode"):
        paired_change([_rec("a", 0, 0, 0)], [_rec("a", 0, 0, 0, seed=1)])
