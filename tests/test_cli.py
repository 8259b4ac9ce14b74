"""The gymrl command, run as a user runs it."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from gymrl.cli import main


def gymrl(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "gymrl.cli", *args], capture_output=True,
                          text=True, timeout=600)


def test_list_shows_things_with_packages_and_versions():
    out = gymrl("list")
    assert out.returncode == 0, out.stderr
    for word in ("router", "format", "outcome", "cost", "router_r1", "brevity",
                 "gymrl-envs", "gymrl-rewards", "gymrl-reward-brevity", "0.1.0"):
        assert word in out.stdout


def test_help_lists_config_keys():
    out = gymrl("eval", "--help")
    assert out.returncode == 0 and "reward.weights" in out.stdout and "episodes" in out.stdout


def _eval(tmp_path, policy, n=200, *extra):
    out_dir = tmp_path / policy.replace(":", "_")
    code = main(["eval", "env=router", f"policy={policy}", f"episodes={n}", "seed=0",
                 f"output_dir={out_dir}", "progress=false", *extra])
    assert code == 0
    return json.loads((out_dir / "results.json").read_text())


def test_eval_oracle_strongest_random(tmp_path):
    oracle = _eval(tmp_path, "scripted:oracle")["summary"]["overall"]
    strongest = _eval(tmp_path, "scripted:strongest")["summary"]["overall"]
    random = _eval(tmp_path, "scripted:random")["summary"]["overall"]
    assert oracle["accuracy"] >= 0.95 and oracle["accuracy"] == strongest["accuracy"]
    assert oracle["cost_usd"] < strongest["cost_usd"]
    assert random["accuracy"] < oracle["accuracy"] - 0.2


def test_results_json_has_config_versions_components_and_episodes(tmp_path):
    result = _eval(tmp_path, "scripted:oracle", 5, "reward=cost+outcome",
                   "reward.weights.cost=0.3")
    assert result["config"]["reward"]["weights"] == {"cost": 0.3}
    assert result["versions"]["plugins"]["router"]["package"] == "gymrl-envs"
    assert len(result["episodes"]) == 5
    first = result["episodes"][0]
    assert set(first["rewards"]) == {"cost", "outcome"}
    assert first["reward"] == pytest.approx(0.3 * first["rewards"]["cost"]
                                            + first["rewards"]["outcome"])
    assert "reward/cost" in result["summary"]["overall"]
    assert "by_kind" in result["summary"]


def test_eval_default_output_dir_is_fresh(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["eval", "episodes=2", "progress=false"]) == 0
    assert main(["eval", "episodes=2", "progress=false"]) == 0
    runs = sorted((tmp_path / "runs").iterdir())
    assert len(runs) == 2 and all((r / "results.json").is_file() for r in runs)


@pytest.mark.parametrize("args,message", [
    (["env=nope"], "unknown env 'nope'; registered envs: inquiry (gymrl-envs), router"),
    (["reward=cost+nope"], "unknown reward 'nope'"),
    (["policy=nope:x"], "unknown backend 'nope'; registered backends: hf (gymrl)"),
    (["policy=oracle"], "must look like SCHEME:NAME"),
    (["policy=scripted:genius"], "unknown scripted policy 'genius'"),
    (["episods=3"], "unknown config key 'episods'"),
    (["env.max_call=3"], "unknown option(s) ['max_call'] for env 'router'"),
    (["episodes=0"], "episodes must be >= 1"),
])
def test_bad_input_gets_a_clear_error(args, message):
    extra = [] if any(a.startswith("episodes=") for a in args) else ["episodes=2"]
    out = gymrl("eval", *args, *extra)
    assert out.returncode == 2
    assert message in out.stderr, out.stderr
    assert "Traceback" not in out.stderr


def test_check_proves_reward_range():
    out = gymrl("check", "env=router", "episodes=48")
    assert out.returncode == 0, out.stdout + out.stderr
    assert "check_env: ok" in out.stdout
    assert "best end 0.8000: reached" in out.stdout and "worst end -1.0000: reached" in out.stdout


def test_train_bad_input_gets_a_clear_error():
    out = gymrl("train", "learner.loss_type=ppo")
    assert out.returncode == 2 and "loss_type 'ppo'; allowed: grpo, dr_grpo, dapo" in out.stderr
    out = gymrl("train", "learner.stepz=3")
    assert out.returncode == 2 and "stepz" in out.stderr and "Traceback" not in out.stderr
