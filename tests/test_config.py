"""Config loading: shorthands, YAML files, and errors that list the valid keys."""

from __future__ import annotations

import pytest

from gymrl import ConfigError
from gymrl.config import EvalConfig, load_config, rewrite_override, to_container


@pytest.mark.parametrize("item,expected", [
    ("env=router", "env.name=router"),
    ("env.max_calls=3", "env.options.max_calls=3"),
    ("reward=cost+outcome", "reward.spec=cost+outcome"),
    ("reward.weights.cost=0.3", "reward.weights.cost=0.3"),
    ("reward.cost.window=5", "reward.options.cost.window=5"),
    ("policy=hf:/m", "policy.spec=hf:/m"),
    ("policy.temperature=0.7", "policy.options.temperature=0.7"),
    ("episodes=5", "episodes=5"),
])
def test_shorthands(item, expected):
    assert rewrite_override(item) == expected


def test_overrides_build_typed_config():
    cfg = to_container(load_config(EvalConfig, [
        "env=router", "env.max_calls=3", "reward=cost+outcome", "reward.weights.cost=0.3",
        "policy=scripted:random", "episodes=7"]))
    assert cfg["env"] == {"name": "router", "options": {"max_calls": 3}}
    assert cfg["reward"]["spec"] == "cost+outcome" and cfg["reward"]["weights"] == {"cost": 0.3}
    assert cfg["policy"]["spec"] == "scripted:random" and cfg["episodes"] == 7


def test_yaml_file_then_overrides(tmp_path):
    path = tmp_path / "eval.yaml"
    path.write_text("env: router\nreward:\n  spec: cost+outcome\nepisodes: 9\nseed: 4\n")
    cfg = to_container(load_config(EvalConfig, [f"config={path}", "episodes=3"]))
    assert cfg["env"]["name"] == "router" and cfg["episodes"] == 3 and cfg["seed"] == 4


@pytest.mark.parametrize("items,match", [
    (["episode=3"], "unknown config key 'episode'; valid keys: env, reward, policy, episodes"),
    (["episodes=many"], "episodes"),
    (["episodes"], "not KEY=VALUE"),
    (["config=/nope.yaml"], "does not exist"),
])
def test_bad_overrides(items, match):
    with pytest.raises(ConfigError, match=match):
        load_config(EvalConfig, items)


def test_yaml_with_unknown_key(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("env: router\nepisods: 3\n")
    with pytest.raises(ConfigError, match="episods"):
        load_config(EvalConfig, [f"config={path}"])


def test_malformed_yaml(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("env: [router\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(EvalConfig, [f"config={path}"])


@pytest.mark.parametrize("text, shape", [("- env: router\n", "a list"), ("5\n", "an int"),
                                         ("", "nothing")])
def test_yaml_that_is_not_a_mapping(tmp_path, text, shape):
    path = tmp_path / "top.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=rf"config file .*top.yaml.* must hold a mapping at the "
                                          rf"top, not {shape}"):
        load_config(EvalConfig, [f"config={path}"])


def test_yaml_that_is_not_utf8(tmp_path):
    path = tmp_path / "latin1.yaml"
    path.write_bytes("env: caf\xe9\n".encode("latin-1"))
    with pytest.raises(ConfigError, match="latin1.yaml.* is not valid YAML"):
        load_config(EvalConfig, [f"config={path}"])
