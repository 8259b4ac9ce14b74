"""Summaries, before/after comparisons and drawings of evaluation records."""

from __future__ import annotations

import math

import pytest

from gymrl import ConfigError, Episode, LLMEnv, Task
from gymrl.evaluate import check_can_render, paired_change, render_episodes, summarise


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


# -- pooled ratios and drawing episodes ---------------------------------------------------------
def _episode(task_id, **metrics):
    return Episode(env="t", task=Task(id=task_id, prompt="q")), metrics


def test_summary_ratios_pool_numerator_and_denominator_per_group():
    records = [_episode("a", bits=9.0, questions=9, ratio=1.0, kind="x"),
               _episode("b", bits=3.0, questions=1, ratio=3.0, kind="x"),
               _episode("c", bits=0.0, questions=0, kind="y")]
    summary = summarise(records, ratios={"ratio": ("bits", "questions")})
    assert summary["overall"]["ratio"] == pytest.approx(12 / 10)  # not the mean 2.0
    assert summary["by_kind"]["x"]["ratio"] == pytest.approx(12 / 10)
    assert "ratio" not in summary["by_kind"]["y"]  # no question asked: no ratio
    assert summarise(records)["overall"]["ratio"] == pytest.approx(2.0)  # undeclared: a mean


class _WordEnv(LLMEnv):
    """One turn: the policy says a word and the episode ends."""

    name = "plain"

    def sample_task(self, options):
        return Task(id=f"t{int(self.np_random.integers(1000))}", prompt="say a word")

    def respond(self, action, turn):
        self.episode.facts["answer"] = action
        return "", True


class _DrawnWordEnv(_WordEnv):
    """Draws each finished episode (as text: no matplotlib needed to test the protocol)."""

    name = "drawn"

    def render_episode_png(self, episode, path):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f"{episode.task.id}:{episode.facts['answer']}")
        return path


def test_render_episodes_draws_finished_records_after_the_env_moved_on(tmp_path):
    env = _DrawnWordEnv()
    records = []
    for i in range(3):
        env.reset(seed=i)
        env.step(f"word{i}")
        records.append((env.episode, {}))
    env.reset(seed=99)  # live state is another episode now
    paths = render_episodes(env, records, tmp_path / "render", 2)
    assert [p.name for p in paths] == ["episode-0000.png", "episode-0001.png"]
    assert [p.read_text() for p in paths] == [f"{e.task.id}:word{i}"
                                              for i, (e, _) in enumerate(records[:2])]


def test_an_env_that_cannot_draw_is_a_config_error_naming_it(tmp_path):
    env = _WordEnv()
    with pytest.raises(ConfigError, match="env 'plain' cannot draw episodes as PNG"):
        check_can_render(env)
    with pytest.raises(ConfigError, match="env 'plain'"):
        render_episodes(env, [], tmp_path, 1)
    with pytest.raises(ConfigError, match="env 'object' cannot draw"):
        check_can_render(object())
