"""benchmarks/router_learning.py runs the real ``gymrl train`` and reports the paired change."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_router_learning_benchmark_on_a_tiny_model(tiny_chat_model, tmp_path):
    spec = importlib.util.spec_from_file_location(
        "router_learning", ROOT / "benchmarks" / "router_learning.py")
    bench = importlib.util.module_from_spec(spec)
    sys.modules["router_learning"] = bench
    spec.loader.exec_module(bench)
    out = tmp_path / "router_learning.json"
    report = bench.main(["--seeds", "3", "--episodes", "4", "--work", str(tmp_path / "work"),
                         "--output", str(out), "--", f"model={tiny_chat_model}",
                         "learner.steps=1", "learner.groups=1", "learner.group_size=2",
                         "sft.steps=0", "rollout.max_new_tokens=8"])
    saved = json.loads(out.read_text())
    assert saved["seeds"][0]["seed"] == 3 == report["seeds"][0]["seed"]
    change = saved["seeds"][0]["change"]
    assert change["episodes"] == 4 and "reward_diff_stderr" in change
    assert set(saved["seeds"][0]["checks"]) == {
        "reward_up_2se", "accuracy_not_lower", "cost_per_correct_below_start",
        "cost_per_correct_below_strongest"}
    assert saved["strongest"]["accuracy"] > 0.5
    assert (tmp_path / "router_learning" / "seed-3" / "metrics.jsonl").is_file()
    assert (tmp_path / "router_learning.png").is_file()
