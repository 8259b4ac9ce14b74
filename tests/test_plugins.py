"""The plugin system: discovery, stamps, errors, pinning, and one test per hook."""

from __future__ import annotations

import inspect
import json
import os
import subprocess
import sys

import pytest

import gymrl
from gymrl import Reward, hookimpl, hookspecs, plugins
from gymrl.errors import DuplicateNameError, PluginError, UnknownNameError
from gymrl.make import make_env
from plugin_helpers import fake_plugin


class _Zero(Reward):
    name = "zero"
    range = (0.0, 0.0)

    def score(self, episode):
        return 0.0


def test_first_party_plugins_load_through_entry_points(fresh_registry):
    reg = fresh_registry
    assert reg.get("env", "router").plugin.package == "gymrl-envs"
    for name in ("format", "outcome", "cost", "router_r1"):
        assert reg.get("reward", name).plugin.package == "gymrl-rewards"
    for scheme in ("scripted", "hf", "openai"):
        assert reg.get("backend", scheme).plugin.package == "gymrl"
    assert reg.plugins["router"].version == "0.1.0"


def test_unknown_name_lists_registered_with_packages(fresh_registry):
    with pytest.raises(UnknownNameError) as err:
        plugins.get("reward", "nope")
    msg = str(err.value)
    assert "'nope'" in msg and "outcome (gymrl-rewards)" in msg and "cost (gymrl-rewards)" in msg


def test_unknown_env_fails_before_work(fresh_registry):
    with pytest.raises(UnknownNameError, match="unknown env 'routr'.*router \\(gymrl-envs\\)"):
        make_env("routr")


def test_duplicate_name_names_both_packages(fresh_registry):
    @hookimpl
    def register_rewards(register):
        register("outcome", _Zero)

    module, info = fake_plugin("dup", package="gymrl-dup", register_rewards=register_rewards)
    with pytest.raises(DuplicateNameError) as err:
        fresh_registry.add_plugin(module, info)
    assert "gymrl-rewards" in str(err.value) and "gymrl-dup" in str(err.value)


def test_plugin_raising_in_register_names_plugin_and_package(fresh_registry):
    @hookimpl
    def register_rewards(register):
        raise RuntimeError("boom")

    module, info = fake_plugin("broken", package="gymrl-broken",
                               register_rewards=register_rewards)
    with pytest.raises(PluginError, match="'broken' from package gymrl-broken.*boom"):
        fresh_registry.add_plugin(module, info)


def test_plugin_failing_to_load_names_it(fresh_registry, monkeypatch):
    class EP:
        name, value = "badload", "gymrl_badload_missing"
        dist = None

        def load(self):
            raise ImportError("no module named gymrl_badload_missing")

    reg = plugins.Registry()
    monkeypatch.setattr(plugins.md, "entry_points", lambda group: [EP()])
    with pytest.raises(PluginError, match="'badload'.*failed to load.*gymrl_badload_missing"):
        reg.load_entry_points()


def test_reward_raising_on_call_names_plugin_and_package(fresh_registry):
    class Raises(Reward):
        name = "raises"
        range = (0.0, 1.0)

        def score(self, episode):
            raise ZeroDivisionError("bad math")

    @hookimpl
    def register_rewards(register):
        register("raises", Raises)

    module, info = fake_plugin("raiser", package="gymrl-raiser", register_rewards=register_rewards)
    fresh_registry.add_plugin(module, info)
    env = make_env("router", reward="raises+outcome")
    env.reset(seed=0)
    with pytest.raises(PluginError, match="reward 'raises'.*gymrl-raiser.*bad math"):
        env.step("<think>x</think><answer>y</answer>")


def test_misspelled_hook_is_rejected(fresh_registry):
    @hookimpl
    def register_reward(register):  # missing 's'
        pass

    module, info = fake_plugin("typo", register_reward=register_reward)
    with pytest.raises(PluginError, match="unknown hook"):
        fresh_registry.add_plugin(module, info)


def test_bad_name_pattern_is_rejected(fresh_registry):
    @hookimpl
    def register_rewards(register):
        register("Bad-Name", _Zero)

    module, info = fake_plugin("badname", register_rewards=register_rewards)
    with pytest.raises(PluginError, match="Bad-Name"):
        fresh_registry.add_plugin(module, info)


def _gymrl_list_json(env_extra: dict[str, str]) -> dict:
    env = {**os.environ, **env_extra}
    out = subprocess.run([sys.executable, "-m", "gymrl.cli", "list", "--json"], env=env,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def test_load_plugins_env_var_pins_the_set():
    data = _gymrl_list_json({"GYMRL_LOAD_PLUGINS": "gymrl-rewards,router"})
    assert set(data["plugins"]) == {"rewards", "router"}
    assert "brevity" not in data["rewards"] and "router" in data["envs"]
    assert data["backends"] == {}


def test_load_plugins_unknown_pin_is_an_error():
    env = {**os.environ, "GYMRL_LOAD_PLUGINS": "no-such-plugin"}
    out = subprocess.run([sys.executable, "-m", "gymrl.cli", "list"], env=env,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 2
    assert "no-such-plugin" in out.stderr and "installed:" in out.stderr


# -- one test per hook --------------------------------------------------------------------

def test_hook_register_envs(fresh_registry):
    from gymrl_envs.router.env import RouterEnv

    @hookimpl
    def register_envs(register):
        register("router_small", lambda: RouterEnv(max_calls=1), rewards="format+outcome")

    module, info = fake_plugin("envplug", register_envs=register_envs)
    fresh_registry.add_plugin(module, info)
    reg = plugins.get("env", "router_small")
    assert reg.plugin.package == "gymrl-fake" and reg.meta["rewards"] == "format+outcome"
    env = make_env("router_small")
    assert env.max_calls == 1 and env.reward_fn.name == "format+outcome"


def test_hook_register_rewards(fresh_registry):
    @hookimpl
    def register_rewards(register):
        register("zero", _Zero)

    module, info = fake_plugin("zeroplug", register_rewards=register_rewards)
    fresh_registry.add_plugin(module, info)
    assert plugins.get("reward", "zero").plugin.name == "zeroplug"
    assert gymrl.compose("zero+outcome").range == (0.0, 1.0)


def test_hook_register_tools(fresh_registry):
    @hookimpl
    def register_tools(register):
        register("echo", lambda: (lambda text: text), description="echoes")

    module, info = fake_plugin("toolplug", register_tools=register_tools)
    fresh_registry.add_plugin(module, info)
    tool = plugins.get("tool", "echo")
    assert tool.description == "echoes" and tool.factory()("hi") == "hi"


def test_hook_register_backends(fresh_registry):
    from gymrl import Backend, Completion

    class Const(Backend):
        def __init__(self, target):
            self.target = target

        def generate(self, requests):
            return [Completion(text=self.target) for _ in requests]

    @hookimpl
    def register_backends(register):
        register("const", Const)

    module, info = fake_plugin("constplug", register_backends=register_backends)
    fresh_registry.add_plugin(module, info)
    backend = gymrl.make_backend("const:hello")
    assert [c.text for c in backend.generate([gymrl.Request(messages=[])] * 2)] == ["hello"] * 2


def test_hook_episode_end(fresh_registry):
    seen = []

    @hookimpl
    def episode_end(episode, scores):
        seen.append((episode.task.id, dict(scores)))

    module, info = fake_plugin("observer", episode_end=episode_end)
    fresh_registry.add_plugin(module, info)
    env = make_env("router", reward="format+outcome")
    env.reset(seed=0)
    env.step("<think>t</think><answer>x</answer>")
    assert seen == [(env.episode.task.id, {"format": 0.0, "outcome": 0.0})]


def test_hook_episode_end_raising_names_plugin(fresh_registry):
    @hookimpl
    def episode_end(episode):
        raise ValueError("observer broke")

    module, info = fake_plugin("badobs", package="gymrl-badobs", episode_end=episode_end)
    fresh_registry.add_plugin(module, info)
    env = make_env("router")
    env.reset(seed=0)
    with pytest.raises(PluginError, match="'badobs' from package gymrl-badobs.*observer broke"):
        env.step("<think>t</think><answer>x</answer>")


def test_hook_log_metrics(fresh_registry, tmp_path):
    from gymrl.cli import run_eval
    from gymrl.config import EvalConfig, load_config, to_container

    seen = []

    @hookimpl
    def log_metrics(metrics, step):
        seen.append((step, metrics))

    module, info = fake_plugin("metrics", log_metrics=log_metrics)
    fresh_registry.add_plugin(module, info)
    cfg = to_container(load_config(EvalConfig, ["episodes=3", f"output_dir={tmp_path}",
                                                "progress=false"]))
    run_eval(cfg)
    assert seen and seen[0][0] == 0 and seen[0][1]["eval/episodes"] == 3


def test_every_hook_has_a_test():
    specs = [n for n, f in inspect.getmembers(hookspecs, inspect.isfunction)
             if hasattr(f, "gymrl_spec")]
    assert specs, "no hookspecs found"
    tests = {n for n in globals() if n.startswith("test_hook_")}
    assert {f"test_hook_{n}" for n in specs} <= tests
