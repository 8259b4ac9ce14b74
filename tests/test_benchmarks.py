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


def test_router_by_hop_tabulates_eval_records(tmp_path, monkeypatch):
    """On the oracle's records: every 1-hop question goes whole to one expert, a multi-hop one
    is asked hop by hop (never whole), and the counts add up to the episodes."""
    from gymrl.evaluate import episode_record, run_episodes
    from gymrl.make import make_backend, make_env

    bench = _load("router_by_hop")
    records = [json.loads(json.dumps(episode_record(e, m), default=str))
               for e, m in run_episodes(lambda: make_env("router", split="test"),
                                        make_backend("scripted:oracle"), episodes=40)]
    table = bench.by_hop(records)
    assert sum(row["n"] for row in table.values()) == 40
    assert set(table) >= {"1hop", "2hop"}
    assert table["1hop"]["whole"] == table["1hop"]["n"] and table["1hop"]["calls"] == 1.0
    assert table["2hop"]["whole"] == 0 and table["2hop"]["calls"] == 2.0
    assert table["2hop"]["accuracy_rest"] == table["2hop"]["accuracy"]
    assert all(row["unanswered"] == 0 for row in table.values())
    path = tmp_path / "step-00000.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    monkeypatch.setattr(sys, "argv", ["router_by_hop", str(path), "--json",
                                      str(tmp_path / "t.json")])
    bench.main()
    assert json.loads((tmp_path / "t.json").read_text())[str(path)]["1hop"]["n"] == \
        table["1hop"]["n"]
