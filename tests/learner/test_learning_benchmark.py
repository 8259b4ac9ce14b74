"""benchmarks/router_learning.py runs the real ``gymrl train`` and reports the paired change."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

from gymrl.learner.train import cpu_has_bf16_matmul

ROOT = Path(__file__).resolve().parents[2]
HAS_BF16 = cpu_has_bf16_matmul()


def _load(name: str):
    if str(ROOT / "benchmarks") not in sys.path:  # as when run: a script's folder is on it
        sys.path.insert(0, str(ROOT / "benchmarks"))
    spec = importlib.util.spec_from_file_location(name, ROOT / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def test_router_learning_benchmark_on_a_tiny_model(tiny_chat_model, tmp_path):
    bench = _load("router_learning")
    out = tmp_path / "router_learning.json"
    report = bench.main(["--seeds", "3", "--episodes", "4", "--work", str(tmp_path / "work"),
                         "--output", str(out), "--", f"model={tiny_chat_model}",
                         "learner.steps=1", "learner.groups=1", "learner.group_size=2",
                         "sft.steps=0", "rollout.max_new_tokens=8"])
    saved = json.loads(out.read_text())
    assert saved["seeds"][0]["seed"] == 3 == report["seeds"][0]["seed"]
    change = saved["seeds"][0]["change"]
    assert change["episodes"] == 4 and "reward_diff_stderr" in change
    assert 0.05 < saved["seeds"][0]["peak_rss_gib"] < 64
    assert set(saved["seeds"][0]["checks"]) == {
        "reward_up_2se", "accuracy_not_lower", "cost_per_correct_below_start",
        "cost_per_correct_below_strongest"}
    assert saved["strongest"]["accuracy"] > 0.5
    assert (tmp_path / "router_learning" / "seed-3" / "metrics.jsonl").is_file()
    assert (tmp_path / "router_learning.png").is_file()


def test_router_hop_probe_reads_a_runs_checkpoint(tiny_chat_model, tmp_path):
    from gymrl.config import load_config, to_container
    from gymrl.learner.config import TrainConfig
    from gymrl.learner.train import train

    run = tmp_path / "run"
    train(to_container(load_config(TrainConfig, [
        f"model={tiny_chat_model}", "env=router", "reward=cost+outcome", "learner.steps=0",
        "sft.steps=0", "eval.episodes=6", f"output_dir={run}", "progress=false"])))
    out = tmp_path / "probe.json"
    report = _load("router_hop_probe").main([str(run), "--limit", "6", "--output", str(out)])
    found = json.loads(out.read_text())["runs"][f"{run}@step-0"]
    assert found == report["runs"][f"{run}@step-0"]
    assert sum(row["questions"] for row in found.values()) == 6
    for row in found.values():
        assert 0 < sum(row["mean_p"].values()) <= 1.0001
        assert sum(row["argmax"].values()) == row["questions"]


def test_grpo_vs_trl_benchmark_on_a_tiny_model(tiny_chat_model, tmp_path):
    pytest.importorskip("trl", reason="trl is the benchmark's own dependency (extra 'bench')")
    bench = _load("grpo_vs_trl")
    out = tmp_path / "grpo_vs_trl.json"
    report = bench.main(["--model", str(tiny_chat_model), "--group-size", "2", "--length", "6",
                         "--steps", "2", "--output", str(out)])
    saved = json.loads(out.read_text())
    assert saved["ratio"] == pytest.approx(report["ratio"]) and saved["ratio"] > 0
    # Where the CPU multiplies bf16 natively; elsewhere the bf16 side is left out (tested below).
    sides = ("gymrl", "gymrl_unpacked", "trl") + (
        ("gymrl_bf16_rollouts",) if HAS_BF16 else ())
    assert saved["ratio_gymrl_unpacked"] > 0
    for side in sides:
        assert saved[side]["timed_steps"] == 2
        assert 0 < saved[side]["mean_completion_length"] <= 6
        assert saved[side]["mfu"] > 0
    machine = saved["machine"]
    # Each ceiling is the best of its readings: one before the sides and one after each.
    for dtype, key in (("float32", "matmul_ceiling_flops"),
                       ("bfloat16", "matmul_ceiling_bf16_flops"))[:2 if HAS_BF16 else 1]:
        readings = machine["matmul_ceiling_readings"][dtype]
        assert len(readings) == 1 + len(sides) and machine[key] == max(readings) > 0
    # An all-fp32 side is held to the fp32 ceiling alone; the bf16 rollouts to their own.
    for side in ("gymrl", "gymrl_unpacked", "trl"):
        assert saved[side]["mfu"] == pytest.approx(saved[side]["mfu_vs_fp32_ceiling"])
    if not HAS_BF16:
        return
    assert saved["ratio_gymrl_bf16_rollouts"] > 0
    bf16 = saved["gymrl_bf16_rollouts"]
    assert bf16["rollout_dtype"] == "bfloat16" and bf16["rollout_mfu"] > 0
    flops_at = {"float32": machine["matmul_ceiling_flops"],
                "bfloat16": machine["matmul_ceiling_bf16_flops"]}
    ideal = bf16["model_flops"] / 4 / flops_at["bfloat16"] + \
        bf16["model_flops"] * 3 / 4 / flops_at["float32"]  # generation 2N, training 6N
    assert bf16["mfu"] == pytest.approx(ideal / bf16["wall_s"])


def test_grpo_vs_trl_draws_the_trainers_tasks_for_every_group(tiny_chat_model, tmp_path):
    from gymrl.learner.train import Trainer, prepare_run

    bench = _load("grpo_vs_trl")
    cfg = bench.gymrl_cfg(str(tiny_chat_model), 3, 2, 6, 2, 1e-6, 0, tmp_path / "run")
    expected = bench.drawn_tasks(cfg, 2)
    trainer = Trainer(*prepare_run(cfg))
    for step in range(2):
        batch, _, _ = trainer.draw_batch()
        assert [r.env.unwrapped.episode.task.id for r in batch[::2]] == expected[step]
        trainer.step += 1
    assert len({t for step in expected for t in step}) == 6


def test_grpo_vs_trl_with_several_prompts_a_step(tiny_chat_model, tmp_path):
    pytest.importorskip("trl", reason="trl is the benchmark's own dependency (extra 'bench')")
    out = tmp_path / "grpo_vs_trl.json"
    _load("grpo_vs_trl").main(["--model", str(tiny_chat_model), "--groups", "2",
                               "--group-size", "2", "--length", "6", "--steps", "1",
                               "--sides", "gymrl,trl", "--output", str(out)])
    saved = json.loads(out.read_text())
    assert saved["config"]["groups"] == 2
    for side in ("gymrl", "trl"):  # 2 prompts x 2 completions a step, each at most 6 tokens
        assert 4 <= saved[side]["completion_tokens"] <= 4 * 6
        assert 0 < saved[side]["mean_completion_length"] <= 6
    assert saved["ratio"] > 0


def test_train_memory_benchmark_measures_each_phase(tiny_chat_model, tmp_path):
    bench = _load("train_memory")
    out = tmp_path / "train_memory.json"
    report = bench.main(["--full", "--micro-batches", "4", "--work", str(tmp_path / "work"),
                         "--output", str(out), "--", f"model={tiny_chat_model}",
                         "reward=brevity+outcome", "learner.groups=1", "learner.group_size=4",
                         "learner.steps=1", "sft.steps=1",
                         "sft.demos=4", "sft.batch_size=2", "eval.episodes=2",
                         "rollout.max_new_tokens=8"])
    saved = json.loads(out.read_text())
    assert [p["phase"] for p in saved["phases"]] == [
        "sft", "grpo_micro_batch_4", "main_job_micro_batch_4"]
    for phase in saved["phases"]:
        assert 0.05 < phase["peak_rss_gib"] < saved["machine"]["memory_gib"]
        assert phase["command"].endswith("rollout.max_new_tokens=8")  # the overrides, saved
    assert saved["checks"] == report["checks"] == {"micro_batch_4_fits_16_gib": True}
    # The GRPO phases forked the sft run: they trained one step and did no SFT of their own.
    rows = [json.loads(line) for line in
            (tmp_path / "work" / "grpo_4" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows if "loss/policy" in r] == [1]
    assert saved["phases"][1]["tokens_trained"] > 0  # an update's peak, not a skipped one's
    assert (tmp_path / "train_memory.png").is_file()


def test_main_job_benchmark_times_the_job_and_says_whether_it_trained_alike(tiny_chat_model,
                                                                          tmp_path):
    bench = _load("main_job")
    job = [f"model={tiny_chat_model}", "learner.groups=1", "learner.group_size=2",
           "learner.steps=2", "sft.steps=1", "sft.demos=4", "sft.batch_size=2",
           "eval.episodes=2", "rollout.max_new_tokens=8"]
    first = tmp_path / "first.json"
    bench.main(["--work", str(tmp_path / "a"), "--output", str(first), "--", *job])
    report = bench.main(["--work", str(tmp_path / "b"), "--output", str(tmp_path / "b.json"),
                         "--compare", str(first), "--", *job])
    saved = json.loads(first.read_text())
    assert saved["command"].endswith("rollout.max_new_tokens=8")
    assert [s["step"] for s in saved["steps"]] == [1, 2]
    assert saved["peak_rss_gib"] > 0.05 and saved["wall_s"] > 0 and saved["sft_s"] > 0
    assert "learner:" in saved["config"] and "gymrl" in saved["versions"]
    # The same job twice trains alike, to every digit ...
    assert report["compared_with"] | {"file": None} == {
        "file": None, "wall_s": saved["wall_s"], "peak_rss_gib": saved["peak_rss_gib"],
        "steps_alike": True, "summary_alike": True, "keys_not_in_old": []}
    # ... and a run whose numbers differ anywhere does not.
    changed = json.loads(first.read_text())
    changed["steps"][1]["reward"] += 1e-9
    assert bench.same_training(report, changed)["steps_alike"] is False
    changed = json.loads(first.read_text())
    changed["summary"]["reward_after"] += 1e-9
    assert bench.same_training(report, changed)["summary_alike"] is False
    # An older result without the step numbers: not checked, and said so.
    old = json.loads(first.read_text())
    old["steps"] = [{"step": s["step"], "rollout_s": 1.0, "train_s": 1.0} for s in old["steps"]]
    assert bench.same_training(report, old)["steps_alike"] is None
    # runs_alike compares the two run folders themselves, evaluation records included.
    alike = _load("runs_alike")
    out = tmp_path / "alike.json"
    row = alike.main([str(tmp_path / "b"), str(tmp_path / "a"), "--output", str(out)])
    assert row["alike"] and set(row["evaluations_alike"]) == {"step-00000.jsonl",
                                                              "step-00002.jsonl"}
    assert json.loads(out.read_text())["rows"] == [json.loads(json.dumps(row))]
    end = tmp_path / "b" / "eval" / "step-00002.jsonl"
    end.write_text(end.read_text().replace('"reward": ', '"reward": 1e-9 + ', 1))
    row = alike.main([str(tmp_path / "b"), str(tmp_path / "a"), "--output", str(out)])
    assert not row["alike"] and row["evaluations_alike"]["step-00002.jsonl"] is False
    assert len(json.loads(out.read_text())["rows"]) == 1  # the pair's row, replaced


def test_linear_rows_benchmark_on_a_tiny_model(tiny_chat_model, tmp_path):
    out = tmp_path / "linear_rows.json"
    report = _load("linear_rows").main(["--model", str(tiny_chat_model), "--rows", "1", "4",
                                        "--output", str(out)])
    saved = json.loads(out.read_text())
    assert saved["rates"] == report["rates"]
    dtypes = {"float32", "bfloat16"} if HAS_BF16 else {"float32"}
    assert set(saved["rates"]) == set(saved["packed_rates"]) == dtypes
    for dtype, rows in [*saved["rates"].items(), *saved["packed_rates"].items()]:
        assert [r["rows"] for r in rows] == [1, 4]
        for r in rows:
            assert r["gflops"] > 0 and r["weight_gb_per_s"] > 0
            ceiling = saved["matmul_ceiling_gflops"][dtype]
            assert r["fraction_of_ceiling"] == pytest.approx(r["gflops"] / ceiling)
            stream = saved["stream_gb_per_s"][dtype]
            assert stream > 0
            assert r["fraction_of_stream"] == pytest.approx(r["weight_gb_per_s"] / stream)
    assert (tmp_path / "linear_rows.png").is_file()


def test_rollout_speed_benchmark_on_a_tiny_model(tiny_chat_model, tmp_path):
    out = tmp_path / "rollout_speed.json"
    report = _load("rollout_speed").main([
        "--model", str(tiny_chat_model), "--groups", "1", "2", "--group-size", "2",
        "--max-new-tokens", "8", "--repeats", "1", "--output", str(out)])
    saved = json.loads(out.read_text())
    assert saved["summary"] == report["summary"]
    assert {(r["way"], r["batch"]) for r in saved["rows"]} == {
        (w, b) for w in ("default_fp32", "unpacked_fp32", "bf16")[:3 if HAS_BF16 else 2]
        for b in (2, 4)}
    assert all(r["policy_tokens"] > 0 and r["tokens_per_s"] > 0 for r in saved["rows"])
    # The default against itself: the same seed samples the same tokens.
    assert all(r["same_tokens_as_default"] for r in saved["rows"] if r["way"] == "default_fp32")
    assert saved["summary"]["default_fp32@4"]["speedup"] == 1.0
    assert (tmp_path / "rollout_speed.png").is_file()


@pytest.mark.parametrize("bench", ["rollout_speed", "grpo_vs_trl"])
def test_benchmarks_skip_bf16_on_a_cpu_without_it(tiny_chat_model, tmp_path, monkeypatch,
                                                  bench):
    """Emulated bf16 would take hours: without avx512_bf16/AMX the bf16 side is left out."""
    import gymrl.learner.train as train_module

    monkeypatch.setattr(train_module, "cpu_has_bf16_matmul", lambda: False)
    out = tmp_path / f"{bench}.json"
    if bench == "rollout_speed":
        args = ["--groups", "1", "--group-size", "2", "--max-new-tokens", "4", "--repeats", "1",
                "--no-plot"]
    else:
        args = ["--group-size", "2", "--length", "4", "--steps", "1",
                "--sides", "gymrl,gymrl_bf16_rollouts"]
    _load(bench).main(["--model", str(tiny_chat_model), *args, "--output", str(out)])
    saved = json.loads(out.read_text())
    if bench == "rollout_speed":
        assert {r["way"] for r in saved["rows"]} == {"default_fp32", "unpacked_fp32"}
    else:
        assert "gymrl" in saved and "gymrl_bf16_rollouts" not in saved
        assert set(saved["machine"]["matmul_ceiling_readings"]) == {"float32"}
