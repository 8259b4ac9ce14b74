"""The benchmark scripts run and write their results (numbers are not asserted: no timing)."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _load(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_env_overhead_writes_json(tmp_path):
    bench = _load("env_overhead")
    out = tmp_path / "env_overhead.json"
    bench.main(["--episodes", "20", "--repeats", "1", "--warmup", "2", "--policies",
                "oracle,random", "--rewards", "router_r1", "--output", str(out), "--no-plot"])
    report = json.loads(out.read_text())
    assert {r["policy"] for r in report["results"]} == {"oracle", "random"}
    for row in report["results"]:
        assert row["episodes_per_s"] > 0 and 0 < row["env_share"] < 1
    assert report["machine"]["packages"]["gymrl"] == "0.1.0"


def test_tools_overhead_writes_json(tmp_path):
    bench = _load("tools_overhead")
    out = tmp_path / "tools_overhead.json"
    bench.main(["--calls", "5", "--episodes", "8", "--output", str(out), "--no-plot"])
    report = json.loads(out.read_text())
    assert {t["tool"] for t in report["tools"]} == {"calculator", "search", "kv_store"}
    assert all(t["errors"] == 0 and t["first_ok"] for t in report["tools"])
    assert {r["family"] for r in report["env"]} == {"function_calling", "arithmetic",
                                                    "retrieval"}


def test_inquiry_rollout_share_times_a_wrapped_env():
    """The env's share of a rollout: the env runs inside a timing wrapper (run_episodes must
    reach the env's stop strings through it)."""
    bench = _load("inquiry_overhead")
    row = bench.rollout_share("scripted:oracle", "restaurant", 4)
    assert row["episodes"] == 4 and row["policy_turns"] >= 4
    assert 0 < row["env_s"] <= row["wall_s"] and 0 < row["env_share"] <= 1
