"""The router env: Gymnasium contract, protocol, accounting, scripted baselines, data."""

from __future__ import annotations

import json

import gymnasium
import pytest
from gymnasium.utils.env_checker import check_env
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import gymrl  # noqa: F401 - registers gymrl/<env>-v0
from gymrl import ConfigError, Request
from gymrl.backends.scripted import ScriptedBackend
from gymrl.evaluate import run_episodes
from gymrl.make import make_env
from gymrl_envs.router.experts import DEFAULT_POOL, LLMPool, SimulatedPool, count_tokens
from gymrl_envs.router.protocol import parse_turn
from gymrl_envs.router.tasks import generate_tasks, load_qa_jsonl


def test_gymnasium_make_and_check_env():
    env = gymnasium.make("gymrl/router-v0")
    check_env(env.unwrapped, skip_render_check=True)
    obs, info = env.reset(seed=3)
    assert isinstance(obs, str) and info["messages"][0]["role"] == "system"
    assert "frontier-405b" in info["messages"][0]["content"]


def test_gymnasium_make_passes_reward_and_options():
    env = gymnasium.make("gymrl/router-v0", reward="cost+outcome", max_calls=2)
    assert env.unwrapped.reward_fn.name == "cost+outcome" and env.unwrapped.max_calls == 2


def test_reset_is_deterministic_per_seed():
    a, b = make_env("router"), make_env("router")
    assert a.reset(seed=11)[0] == b.reset(seed=11)[0]
    texts = {make_env("router").reset(seed=s)[0] for s in range(20)}
    assert len(texts) > 10


def test_unknown_env_option_lists_valid():
    with pytest.raises(ConfigError, match="'max_call'.*valid options: max_calls"):
        make_env("router", max_call=3)


@pytest.mark.parametrize("option,value,match", [
    ("split", "dev", "train, test"), ("tasks", "foo.csv", "jsonl"), ("pool", "x", "yaml")])
def test_bad_env_values(option, value, match):
    with pytest.raises(ConfigError, match=match):
        make_env("router", **{option: value})


# -- the grammar --------------------------------------------------------------------------

@pytest.mark.parametrize("text", [
    "<think>a</think><answer>Paris</answer>",
    "<think>a</think>\n<search>atlas-8b: What is the capital of X?</search>\n",
    "  <think>multi\nline</think>  <answer> 42 </answer>  ",
])
def test_valid_turns(text):
    assert parse_turn(text).valid


@pytest.mark.parametrize("text,violation", [
    ("<think>a</think><answer>Paris", "never closed"),
    ("<think>a<answer>b</answer></think>", "nested"),
    ("<answer>Paris</answer>", "missing <think>"),
    ("<think>a</think>", "missing <search>"),
    ("<think>a</think><answer>x</answer> and more", "after </answer>"),
    ("hello <think>a</think><answer>x</answer>", "outside tags"),
    ("<think>a</think><search>no model here</search>", "MODEL: query"),
    ("<think>a</think><answer>x</answer><answer>y</answer>", "more than one action"),
    ("<think>a</think><information>x</information><answer>y</answer>", "environment"),
    ("<answer>x</answer><think>a</think>", "before the action"),
    ("<think>a</think></search><answer>x</answer>", "closes nothing"),
    ("<think>a</think><answer> </answer>", "empty <answer>"),
])
def test_invalid_turns(text, violation):
    parsed = parse_turn(text)
    assert not parsed.valid and any(violation in v for v in parsed.violations), parsed.violations


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.one_of(
    st.sampled_from(["<think>", "</think>", "<search>", "</search>", "<answer>", "</answer>",
                     "<information>", "</information>", "atlas-8b: ", "pico-math:", "\n", " "]),
    st.text(max_size=30)), max_size=12).map("".join))
def test_fuzzed_output_never_raises_and_is_penalised_unless_valid(text):
    env = make_env("router")
    env.reset(seed=0)
    done = False
    for _ in range(env.max_turns):
        _, reward, terminated, truncated, _ = env.step(text)
        done = terminated or truncated
        if done:
            break
    assert done
    if not parse_turn(text).valid:
        assert env.episode.rewards["format"] == -1.0
        assert reward <= 0.0


@settings(max_examples=300, deadline=None)
@given(st.text(min_size=0, max_size=2000))
def test_arbitrary_unicode_never_raises(text):
    env = make_env("router")
    env.reset(seed=1)
    obs, reward, *_ = env.step(text)
    assert isinstance(obs, str) and isinstance(reward, float)


def test_huge_action_is_a_format_violation_not_a_crash():
    env = make_env("router")
    env.reset(seed=0)
    huge = "<think>" + "x" * 100_000 + "</think><answer>a</answer>"
    done = False
    while not done:
        _, _, terminated, truncated, _ = env.step(huge)  # cut at max_action_chars: no answer
        done = terminated or truncated
    assert truncated and "exceeds max_action_chars" in env.episode.turns[1].facts[
        "format_violations"][0]
    assert env.episode.rewards["format"] == -1.0


# -- calls, accounting, limits ------------------------------------------------------------

def test_call_records_tokens_and_price():
    env = make_env("router")
    env.reset(seed=0)
    obs, *_ = env.step("<think>t</think><search>frontier-405b: What is 12 * 12 + 1?</search>")
    assert obs.startswith("<information>") and obs.endswith("</information>")
    (call,) = env.episode.tool_calls
    assert call.prompt_tokens > 0 and call.completion_tokens > 0
    price = next(p.price_per_mtok for p in DEFAULT_POOL if p.name == "frontier-405b")
    assert call.cost_usd == pytest.approx((call.prompt_tokens + call.completion_tokens) * price
                                          / 1e6)


def test_unknown_model_is_reported_and_free():
    env = make_env("router")
    env.reset(seed=0)
    obs, *_ = env.step("<think>t</think><search>gpt-9: hi</search>")
    assert "no model named 'gpt-9'" in obs and "atlas-8b" in obs
    assert env.episode.tool_calls[0].error == "unknown model" and env.episode.cost_usd == 0


def test_call_budget_and_turn_limit():
    env = make_env("router", max_calls=1)
    env.reset(seed=0)
    search = "<think>t</think><search>atlas-8b: What is the capital of Roba?</search>"
    _, _, term, trunc, _ = env.step(search)
    assert not term and not trunc
    obs, reward, term, trunc, _ = env.step(search)
    assert "No calls left" in obs and trunc and not term
    assert env.episode.rewards["format"] == -1.0  # no answer before the turn limit
    assert env.episode.facts["calls"] == 1


def test_step_after_done_raises_clearly():
    env = make_env("router")
    env.reset(seed=0)
    env.step("<think>t</think><answer>x</answer>")
    with pytest.raises(RuntimeError, match="reset"):
        env.step("again")


# -- scripted baselines and the reward range ----------------------------------------------

def _eval(policy: str, n: int = 200, **env_options):
    from gymrl.compose import compose

    shared = compose("router_r1")
    records = run_episodes(lambda: make_env("router", reward=shared, split="test",
                                            **env_options),
                           ScriptedBackend(policy), episodes=n, seed=0, batch_size=8)
    acc = sum(m["accuracy"] for _, m in records) / n
    cost = sum(m["cost_usd"] for _, m in records) / n
    rewards = [e.reward for e, _ in records]
    return acc, cost, rewards


def test_oracle_chain_thoughts_list_the_relations_and_name_each_step():
    """sft.policy=oracle_chain: the relations up front, each step named, no up-front count."""
    from gymrl_envs.router.scripted import CHAIN_WORDS
    from gymrl_envs.router.world import RELATIONS

    assert set(CHAIN_WORDS) == {*RELATIONS, "arithmetic"}
    env = make_env("router", split="train")
    for seed in range(60):
        env.reset(seed=seed)
        if env.unwrapped.episode.task.prompt.startswith("What is the capital of the country "
                                                        "where"):
            break
    else:
        pytest.fail("no 3-hop capital question in the first 60 training seeds")

    def thoughts(policy: str) -> list[str]:
        records = run_episodes(lambda: make_env("router", split="train"),
                               ScriptedBackend(policy), episodes=1, seed=seed)
        return [t.text.split("</think>")[0] for t in records[0][0].turns if t.role == "policy"]

    assert thoughts("oracle")[:3] == [f"<think>Step {k} of 3 is a {domain} question; "
                                      f"{expert} should answer it."
                                      for k, domain, expert in [(1, "history", "scribe-13b"),
                                                                (2, "geography", "atlas-8b"),
                                                                (3, "geography", "atlas-8b")]]
    chain = thoughts("oracle_chain")
    assert chain[0].startswith("<think>Chain: born, country, capital. Step 1 (born) is a "
                               "history question;")
    assert chain[1].startswith("<think>Step 2 (country) is a geography question;")
    assert chain[2].startswith("<think>Step 3 (capital) is a geography question;")
    assert chain[3].startswith("<think>The experts' answers lead to")


def test_oracle_matches_strongest_accuracy_for_less_money():
    acc_o, cost_o, _ = _eval("oracle")
    acc_s, cost_s, _ = _eval("strongest")
    acc_r, _, _ = _eval("random")
    assert acc_o >= 0.95 and acc_o == acc_s
    assert cost_o < 0.5 * cost_s
    assert acc_r < acc_o - 0.2


def test_reward_range_is_reached_at_both_ends():
    lo, hi = make_env("router").reward_fn.range
    _, _, best = _eval("oracle", 64)
    _, _, worst = _eval("costly_wrong", 64)
    assert max(best) == pytest.approx(hi) and min(worst) == pytest.approx(lo)
    for policy in ("random", "malformed", "no_call", "cheapest"):
        _, _, rewards = _eval(policy, 32)
        assert lo - 1e-9 <= min(rewards) and max(rewards) <= hi + 1e-9


# -- data ---------------------------------------------------------------------------------

def test_generated_tasks_have_splits_hops_and_domains():
    tasks = generate_tasks(0)
    assert len(tasks["train"]) + len(tasks["test"]) >= 1000 and len(tasks["test"]) >= 200
    assert not {t.id for t in tasks["train"]} & {t.id for t in tasks["test"]}
    kinds = {t.hidden["kind"] for t in tasks["train"]}
    assert kinds == {"1hop", "2hop", "3hop"}
    domains = {d for t in tasks["train"] for d in t.hidden["domains"]}
    assert domains == {"geography", "history", "literature", "science", "math"}
    assert generate_tasks(0)["test"][0].id == tasks["test"][0].id  # stable


def test_experts_differ_by_domain():
    pool = SimulatedPool()
    by_domain = {d: max(pool.profiles.values(), key=lambda p: (p.accuracy[d], -p.price_per_mtok))
                 for d in ("geography", "literature", "science", "math")}
    assert len({p.name for p in by_domain.values()}) == 4
    assert count_tokens("What is the capital of Roba?") == 7


def test_jsonl_loader_shapes(tmp_path):
    path = tmp_path / "qa.jsonl"
    rows = [{"id": "nq1", "question": "who wrote hamlet", "answers": ["Shakespeare"]},
            {"_id": "hp1", "question": "Which city?", "answer": "Paris"},
            {"question": "flash rag", "golden_answers": ["x", "y"]}]
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n\n")
    tasks = load_qa_jsonl(path)
    assert [t.id for t in tasks] == ["nq1", "hp1", "qa-3"]
    assert tasks[1].answer == ["Paris"] and tasks[2].answer == ["x", "y"]
    env = make_env("router", tasks=str(path))
    env.reset(seed=0)
    records = run_episodes(lambda: make_env("router", tasks=str(path)),
                           ScriptedBackend("oracle"), episodes=3, seed=0)
    assert all(e.facts["answer"] for e, _ in records)


@pytest.mark.parametrize("content,match", [
    ("not json\n", "not valid JSON"), ('{"q": 1}\n', "question"),
    ('{"question": "x"}\n', "answer"), ("\n", "no tasks")])
def test_jsonl_loader_errors(tmp_path, content, match):
    path = tmp_path / "bad.jsonl"
    path.write_text(content)
    with pytest.raises(ConfigError, match=match):
        load_qa_jsonl(path)


def test_llm_pool_routes_to_backends():
    from gymrl import Backend, Completion

    class Echo(Backend):
        def __init__(self, answer):
            self.answer, self.seen = answer, []

        def generate(self, requests: list[Request]):
            self.seen.extend(requests)
            return [Completion(text=self.answer, prompt_tokens=10, completion_tokens=2)]

    pool = LLMPool([{"name": "small", "backend": "scripted:x", "price_per_mtok": 1.0},
                    {"name": "big", "backend": "scripted:x", "price_per_mtok": 10.0}],
                   backends={"small": Echo("Paris"), "big": Echo("Lyon")})
    env = make_env("router")
    env.pool = pool
    env.reset(seed=0)
    obs, *_ = env.step("<think>t</think><search>big: capital of France?</search>")
    assert obs == "<information>Lyon</information>"
    assert env.episode.cost_usd == pytest.approx(12 * 10.0 / 1e6)


def test_llm_pool_yaml_errors(tmp_path):
    bad = tmp_path / "pool.yaml"
    bad.write_text("experts:\n  - name: a\n")
    with pytest.raises(ConfigError, match="lacks.*backend.*price_per_mtok"):
        make_env("router", pool=str(bad))
    with pytest.raises(ConfigError, match="does not exist"):
        make_env("router", pool=str(tmp_path / "missing.yaml"))


def test_usage_accounts_for_policy_and_call_tokens():
    records = run_episodes(lambda: make_env("router"), ScriptedBackend("oracle"), episodes=3)
    for episode, metrics in records:
        usage = episode.usage()
        assert usage["policy_tokens"] > 0
        assert usage["call_prompt_tokens"] == sum(c.prompt_tokens for c in episode.tool_calls)
        assert usage["cost_usd"] == pytest.approx(metrics["cost_usd"])
