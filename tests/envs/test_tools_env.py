"""The tools env (ToolRL): protocol, families, scripted policies, rewards at both ends."""

from __future__ import annotations

import json

import gymnasium
import pytest
from gymnasium.utils.env_checker import check_env
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import gymrl
from gymrl import ConfigError
from gymrl.backends.scripted import ScriptedBackend
from gymrl.evaluate import run_episodes, summarise
from gymrl.make import make_env
from gymrl.toolcalls import calls_match, toolrl_correctness
from gymrl_envs.tools.protocol import parse_turn

FAMILIES = ("function_calling", "arithmetic", "retrieval")


def _summary(policy, families="all", episodes=60, split="test"):
    records = run_episodes(lambda: make_env("tools", families=families, split=split),
                           ScriptedBackend(policy), episodes=episodes, seed=0)
    return summarise(records, group_by=("kind",)), records


def test_gymnasium_make_passes_check_env():
    env = gymnasium.make("gymrl/tools-v0")
    check_env(env.unwrapped, skip_render_check=True)
    assert gymrl.make_env("tools").reward_fn.name == "tool_format+tool_correctness+outcome"


@pytest.mark.parametrize("family", FAMILIES)
def test_oracle_reaches_095_on_every_family(family):
    summary, _ = _summary("oracle", family, episodes=80)
    overall = summary["overall"]
    assert overall["call_accuracy"] >= 0.95
    assert overall["format_ok"] == 1.0 and overall["tool_errors"] == 0
    if "accuracy" in overall:
        assert overall["accuracy"] >= 0.95
    if "irrelevance_accuracy" in overall:
        assert overall["irrelevance_accuracy"] >= 0.95


def test_no_tools_and_random_tools_score_clearly_lower():
    oracle = _summary("oracle")[0]["overall"]
    for policy in ("no_tools", "random_tools"):
        other = _summary(policy)[0]["overall"]
        assert other["reward"] < oracle["reward"] - 2
        assert other["call_accuracy"] < 0.5
    random_fc = _summary("random_tools", "function_calling")[0]["overall"]
    assert random_fc["irrelevance_accuracy"] == 0.0  # it calls even when nothing fits


def test_reward_range_both_ends_reached():
    env = make_env("tools")
    lo, hi = env.reward_fn.range
    assert (lo, hi) == (-3.0, 5.0)
    best = max(e.reward for e, _ in _summary("oracle", episodes=30)[1])
    worst = min(e.reward for e, _ in _summary("malformed", episodes=30)[1])
    assert best == pytest.approx(hi) and worst == pytest.approx(lo)


def test_splits_are_disjoint_and_families_selectable():
    train = make_env("tools", split="train").unwrapped
    test = make_env("tools", split="test").unwrapped
    assert not {t.prompt for t in train.tasks} & {t.prompt for t in test.tasks
                                                  if t.hidden["family"] != "function_calling"}
    assert {t.hidden["family"] for t in test.tasks} == set(FAMILIES)
    only = make_env("tools", families="arithmetic").unwrapped
    assert {t.hidden["family"] for t in only.tasks} == {"arithmetic"}
    with pytest.raises(ConfigError, match="allowed: 'all' or a comma-separated subset"):
        make_env("tools", families="chess")


def _play(env, *actions):
    env.reset(seed=0)
    out = []
    for action in actions:
        out.append(env.step(action))
        if out[-1][2] or out[-1][3]:
            break
    return out


@pytest.mark.parametrize("body,expect", [
    ("<tool_call>[{\"name\": \"nope\", \"parameters\": {}}]</tool_call>", "unknown tool 'nope'"),
    ("<tool_call>{not json</tool_call>", "not valid JSON"),
    ("<tool_call>[{\"name\": \"get_weather\", \"parameters\": {\"city\": 5}}]</tool_call>",
     "invalid parameters"),
    ("<tool_call>[{\"name\": \"get_weather\", \"parameters\": {}}]</tool_call>",
     "invalid parameters"),
    ("<tool_call>[{\"name\": \"get_weather\", \"parameters\": {\"city\": \"" + "x" * 20_000
     + "\"}}]</tool_call>", "invalid parameters"),
    # Past max_action_chars the action is cut, so its tag is never closed.
    ("<tool_call>[{\"name\": \"get_weather\", \"parameters\": {\"city\": \"" + "x" * 100_000
     + "\"}}]</tool_call>", "never closed"),
    ("<tool_call>[1, 2]</tool_call>", "not an object"),
])
def test_malformed_calls_become_tool_errors_or_format_penalties(body, expect):
    env = make_env("tools", families="function_calling").unwrapped
    env.reset(seed=0)
    env.episode.task.hidden["functions"].append("get_weather")  # offered, for this test
    obs, reward, terminated, truncated, _ = env.step(f"<think>t</think>{body}")
    assert expect in obs and not terminated
    calls = env.episode.tool_calls
    violations = env.episode.format_violations()
    assert (calls and calls[-1].error) or violations


def test_a_turn_limit_without_response_is_a_format_violation():
    env = make_env("tools", families="function_calling", max_turns=2).unwrapped
    steps = _play(env, "<think>a</think><tool_call>[]</tool_call>", "no tags at all")
    assert steps[-1][3]  # truncated
    assert "no <response> before the turn limit" in env.episode.format_violations()
    assert env.episode.rewards["tool_format"] == 0.0


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.sampled_from(["<think>", "</think>", "<tool_call>", "</tool_call>",
                                 "<response>", "</response>", "<obs>", "[", "{", "\"name\"",
                                 ":", "\"calculator\"", "}", "]", "x", " ", "\n", "ü"]),
                max_size=30).map("".join) | st.text(max_size=300))
def test_fuzzed_turns_never_crash(text):
    parsed = parse_turn(text)
    assert parsed.valid or parsed.violations
    env = make_env("tools", families="function_calling").unwrapped
    env.reset(seed=1)
    obs, reward, terminated, truncated, _ = env.step(text)
    assert isinstance(obs, str)


def test_parse_turn_accepts_toolrl_layouts():
    one = parse_turn('<think>t</think><tool_call>{"name": "a", "parameters": {"x": 1}}'
                     '</tool_call>')
    lines = parse_turn('<think>t</think><tool_call>\n{"name": "a", "parameters": {}}\n'
                       '{"name": "b", "parameters": {}}\n</tool_call>')
    assert one.valid and one.calls == [{"name": "a", "parameters": {"x": 1}}]
    assert lines.valid and [c["name"] for c in lines.calls] == ["a", "b"]
    both = parse_turn("<think>t</think><tool_call>[]</tool_call><response>r</response>")
    assert "more than one action" in " ".join(both.violations)


def test_toolrl_correctness_hand_computed():
    gold = [{"name": "a", "parameters": {"x": 1, "y": "Paris"}}]
    assert toolrl_correctness(gold, gold) == 3.0
    assert toolrl_correctness([], gold) == -3.0
    # name 1 + parameter names 1/2 + one value: 2.5 of S_max = 4 -> 6 * 2.5 / 4 - 3
    assert toolrl_correctness([{"name": "a", "parameters": {"x": 1.0}}], gold) == 0.75
    assert toolrl_correctness([], []) == 3.0 and toolrl_correctness(gold, []) == -3.0
    two = gold + [{"name": "b", "parameters": {"z": "Q"}}]
    assert toolrl_correctness(two[::-1], two) == 3.0  # order does not matter
    assert calls_match([{"name": "a", "parameters": {"y": " paris ", "x": "1"}}], gold)


def test_episode_records_calls_and_results():
    env = make_env("tools", families="function_calling").unwrapped
    env.reset(seed=3)
    action = env.scripted_policies["oracle"](env)
    obs, *_ = env.step(action)
    gold = env.episode.task.hidden["gold_calls"]
    if gold:
        assert obs.startswith("<obs>") and len(env.episode.tool_calls) == len(gold)
        assert all(c.result and c.error is None for c in env.episode.tool_calls)
    json.dumps(env.episode.to_dict())  # the record is JSON-ready
