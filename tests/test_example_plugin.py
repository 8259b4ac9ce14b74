"""The example third-party plugin, installed with pip like any package, is discovered and used."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PLUGIN = ROOT / "plugins" / "gymrl-reward-brevity"


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """pip-install the plugin (a real, non-editable install) into a fresh target folder."""
    target = tmp_path_factory.mktemp("site")
    out = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps",
                          "--no-build-isolation", "--target", str(target), str(PLUGIN)],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert (target / "gymrl_reward_brevity" / "__init__.py").is_file()
    return target


def _run(target: Path, *args: str) -> subprocess.CompletedProcess:
    # The target folder goes first on sys.path, so its copy shadows any editable install.
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(target), os.environ.get(
        "PYTHONPATH", "")])}
    return subprocess.run([sys.executable, "-m", "gymrl.cli", *args], env=env,
                          capture_output=True, text=True, timeout=300)


def test_gymrl_list_shows_the_installed_plugin(installed):
    out = _run(installed, "list", "--json")
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    brevity = data["rewards"]["brevity"]
    assert brevity["package"] == "gymrl-reward-brevity" and brevity["version"] == "0.1.0"
    assert data["plugins"]["brevity"]["path"].startswith(str(installed))


def test_reward_brevity_plus_outcome_is_used(installed, tmp_path):
    out = _run(installed, "eval", "env=router", "reward=brevity+outcome", "episodes=4",
               f"output_dir={tmp_path}", "progress=false")
    assert out.returncode == 0, out.stderr
    result = json.loads((tmp_path / "results.json").read_text())
    for episode in result["episodes"]:
        assert set(episode["rewards"]) == {"brevity", "outcome"}
        assert 0.0 < episode["rewards"]["brevity"] < 1.0
    assert result["versions"]["plugins"]["brevity"]["package"] == "gymrl-reward-brevity"
