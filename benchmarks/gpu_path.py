"""The learner on a CUDA GPU (hf rollouts): throughput per model and dtype, and a learning grid.

Run on a machine with a GPU (the sessions' lent H100/H200; nothing here runs in CI)::

    python benchmarks/gpu_path.py --out DIR [--grid-deadline 300] [--skip-throughput]
    python benchmarks/gpu_path.py --out /tmp/x --device cpu --models tiny:PATH --seeds 0 \
        --variants default --episodes 2 -- sft.steps=1 learner.steps=1   # a dry run on the CPU

1. **Throughput**, one process alone on the GPU: SmolLM2-135M (the embedded default) and a
   ~0.5B model of Llama shape with random weights (no 0.5B checkpoint is reachable offline: it
   measures speed and memory, not learning), each in float32 and bfloat16. For each: the SFT warm
   start's time, then GRPO steps of the router default (2 groups x 8 rollouts, LoRA) after one
   warm-up step: rollout and update seconds, policy tokens/s, peak GPU memory. The matmul
   ceiling of the card (fp32 with TF32 off, bf16) is measured too, and each step's model FLOPs
   (2 x params per generated token; 6 x params per trained token, 4 x with LoRA) are set
   against it (MFU).
2. **Learning grid**: ``gymrl train env=router reward=cost+outcome`` for every variant x seed,
   all at once as separate processes on the one GPU, each evaluated on the same 200 held-out
   tasks at start and end and judged by ``router_learning.py``'s four checks. Runs still going at
   the deadline are stopped and reported as such.

Writes ``DIR/gpu_path.json`` after every finished part (a stop loses nothing).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from router_learning import strongest_on, verdict

from gymrl.results import atomic_write_json, versions

VARIANTS: dict[str, list[str]] = {
    "default": [],
    "default_bf16": ["learner.dtype=bfloat16"],
    "groups4x4": ["learner.groups=4", "learner.group_size=4"],
    "groups4x4_action_baseline": ["learner.groups=4", "learner.group_size=4",
                                  "learner.action_baseline=true"],
    "groups4x4_8steps": ["learner.groups=4", "learner.group_size=4", "learner.steps=8"],
}


def sync(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()


def matmul_ceiling(device: str, n: int = 8192) -> dict[str, float]:
    """TFLOP/s of a large square matmul: fp32 (TF32 off) and bf16, mean of 10 after warm-up."""
    import torch

    torch.backends.cuda.matmul.allow_tf32 = False
    out = {}
    for name, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
        a = torch.randn(n, n, device=device, dtype=dtype)
        b = torch.randn(n, n, device=device, dtype=dtype)
        for _ in range(3):
            a @ b
        sync(device)
        start = time.perf_counter()
        for _ in range(10):
            a @ b
        sync(device)
        out[f"{name}_tflops"] = 2 * n ** 3 * 10 / (time.perf_counter() - start) / 1e12
        del a, b
    return out


def random_half_b(smollm2: str, path: Path) -> str:
    """A ~0.5B Llama-shaped model with random weights and SmolLM2's tokenizer and template."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    tok = AutoTokenizer.from_pretrained(smollm2)
    config = LlamaConfig(vocab_size=len(tok), hidden_size=1024, intermediate_size=4096,
                         num_hidden_layers=28, num_attention_heads=16, num_key_value_heads=4,
                         max_position_embeddings=8192, tie_word_embeddings=True,
                         pad_token_id=tok.pad_token_id, bos_token_id=tok.bos_token_id,
                         eos_token_id=tok.eos_token_id)
    torch.manual_seed(0)
    LlamaForCausalLM(config).save_pretrained(path)
    tok.save_pretrained(path)
    return str(path)


def throughput(model: str, dtype: str, sft_steps: int, steps: int, out: Path,
               ceiling: dict[str, float], device: str, extra: list[str]) -> dict[str, Any]:
    import torch

    from gymrl.learner.config import load_train_config
    from gymrl.learner.train import Trainer, prepare_run

    run_dir = out / f"tp-{Path(model).name}-{dtype}"
    shutil.rmtree(run_dir, ignore_errors=True)
    cfg, run_dir = prepare_run(load_train_config([
        f"model={model}", "env=router", "reward=cost+outcome", f"learner.device={device}",
        f"learner.dtype={dtype}", f"sft.steps={sft_steps}", f"output_dir={run_dir}",
        "progress=false", *extra])[0])
    cuda = device.startswith("cuda")
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    trainer = Trainer(cfg, run_dir)
    load_s = time.perf_counter() - start
    params = sum(p.numel() for p in trainer.model.parameters())
    row: dict[str, Any] = {"model": model, "dtype": dtype, "params": params, "load_s": load_s}
    if sft_steps:
        start = time.perf_counter()
        row["sft"] = trainer.sft()
        row["sft_s"] = time.perf_counter() - start
    trainer.grpo_step()  # warm-up: kernels, allocator
    measured = [trainer.grpo_step() for _ in range(steps)]
    rollout_s = sum(m["time/rollout_s"] for m in measured)
    train_s = sum(m["time/train_s"] for m in measured)
    tokens = sum(m["tokens/policy"] for m in measured)
    peak = ceiling["bf16_tflops" if dtype == "bfloat16" else "fp32_tflops"] * 1e12
    # Generated tokens cost ~2N FLOPs each; the update recomputes the whole sequence
    # (prompt + observations + policy tokens) forward and backward: ~6N per token, ~4N with
    # LoRA (no gradients for the frozen base weights).
    seq_tokens = sum(m["tokens/total"] for m in measured)
    row.update({
        "steps": steps, "rollout_s_per_step": rollout_s / steps,
        "train_s_per_step": train_s / steps, "policy_tokens_per_step": tokens / steps,
        "tokens_per_s": tokens / (rollout_s + train_s),
        "rollout_mfu": 2 * params * tokens / rollout_s / peak,
        "train_mfu": (4 if cfg["learner"]["lora"] else 6) * params * seq_tokens / train_s / peak,
        "peak_memory_gib": torch.cuda.max_memory_allocated() / 2 ** 30 if cuda else None,
        "reward": [m["reward"] for m in measured],
    })
    del trainer
    if cuda:
        torch.cuda.empty_cache()
    return row


def grid(seeds: list[int], variants: dict[str, list[str]], work: Path, episodes: int,
         deadline_s: float, device: str, extra: list[str]) -> list[dict[str, Any]]:
    """Every variant x seed as its own ``gymrl train`` process, all at once."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    procs = {}
    for name in variants:
        for seed in seeds:
            run_dir = work / name / f"seed-{seed}"
            shutil.rmtree(run_dir, ignore_errors=True)
            run_dir.parent.mkdir(parents=True, exist_ok=True)
            cmd = [sys.executable, "-m", "gymrl", "train", "env=router", "reward=cost+outcome",
                   f"seed={seed}", f"eval.episodes={episodes}", f"learner.device={device}",
                   f"output_dir={run_dir}", "progress=false",
                   *extra, *variants[name]]
            log = (work / name / f"seed-{seed}.log").open("w")
            procs[(name, seed)] = (subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT,
                                                    env=env), time.perf_counter(), run_dir)
    end = time.perf_counter() + deadline_s
    walls: dict[tuple[str, int], float] = {}
    while len(walls) < len(procs) and time.perf_counter() < end:
        for key, (proc, started, _) in procs.items():
            if key not in walls and proc.poll() is not None:
                walls[key] = time.perf_counter() - started
        time.sleep(1)
    rows = []
    for (name, seed), (proc, _, run_dir) in procs.items():
        row: dict[str, Any] = {"variant": name, "overrides": variants[name], "seed": seed}
        if proc.poll() is None:
            proc.kill()
            row["status"] = "stopped at the deadline"
        elif proc.returncode != 0 or not (run_dir / "summary.json").is_file():
            row["status"] = f"failed (exit {proc.returncode})"
            row["log_tail"] = (run_dir.parent / f"seed-{seed}.log").read_text()[-2000:]
        else:
            summary = json.loads((run_dir / "summary.json").read_text())
            row.update(status="done", wall_s=walls[(name, seed)], change=summary["change"],
                       start=summary["start"], end=summary["end"],
                       metrics=[json.loads(line) for line in
                                (run_dir / "metrics.jsonl").read_text().splitlines()])
        rows.append(row)
    return rows


def main(argv: list[str] | None = None) -> dict[str, Any]:
    import torch

    from gymrl.learner.model import resolve_model

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--work", type=Path, default=Path("runs/gpu_path"))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--episodes", type=int, default=200)
    parser.add_argument("--grid-deadline", type=float, default=300.0)
    parser.add_argument("--throughput-steps", type=int, default=3)
    parser.add_argument("--skip-throughput", action="store_true")
    parser.add_argument("--device", default="cuda", help="cpu: a dry run of this script")
    parser.add_argument("--models", nargs="+", default=["smollm2", "random-0.5b"],
                        help="smollm2, random-0.5b or a local model path")
    parser.add_argument("--matmul-n", type=int, default=8192)
    parser.add_argument("overrides", nargs="*", help="gymrl train overrides for every run")
    args = parser.parse_args(argv)
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        raise SystemExit("gpu_path.py needs a CUDA GPU; none is visible")
    args.out.mkdir(parents=True, exist_ok=True)
    args.work.mkdir(parents=True, exist_ok=True)
    path = args.out / "gpu_path.json"
    report: dict[str, Any] = {
        "device": torch.cuda.get_device_name(0) if args.device.startswith("cuda") else "cpu",
        "overrides": args.overrides, "versions": versions()}
    smollm2 = resolve_model("smollm2")  # converted once here, not by every grid process
    if not args.skip_throughput:
        report["matmul_ceiling"] = ceiling = matmul_ceiling(args.device, args.matmul_n)
        print("matmul ceiling", ceiling, flush=True)
        report["throughput"] = []
        for name in args.models:
            if name == "random-0.5b":
                model, sft_steps = random_half_b(smollm2, args.work / "random-0.5b"), 0
            else:  # the SFT warm start first, so rollouts are the multi-turn episodes of a run
                model, sft_steps = resolve_model(name), 24
            for dtype in ("float32", "bfloat16"):
                row = throughput(model, dtype, sft_steps, args.throughput_steps, args.work,
                                 ceiling, args.device, args.overrides)
                report["throughput"].append(row)
                print(json.dumps({k: v for k, v in row.items() if k != "sft"}), flush=True)
                atomic_write_json(path, report)
    report["grid_episodes"] = args.episodes
    report["strongest"] = strongest = strongest_on(args.episodes)
    start = time.perf_counter()
    rows = grid(args.seeds, {v: VARIANTS[v] for v in args.variants}, args.work,
                args.episodes, args.grid_deadline, args.device, args.overrides)
    report["grid_wall_s"] = time.perf_counter() - start
    for row in rows:
        if row["status"] == "done":
            row["checks"] = verdict(row["change"], strongest)
            c = row["change"]
            print(f"{row['variant']} seed {row['seed']}: reward {c['reward_before']:+.3f} -> "
                  f"{c['reward_after']:+.3f} ({c['reward_diff']:+.3f} ± "
                  f"{c['reward_diff_stderr']:.3f}), acc {c['accuracy_before']:.3f} -> "
                  f"{c['accuracy_after']:.3f}, cost/correct "
                  f"{c['cost_per_correct_usd_before']:.2e} -> "
                  f"{c['cost_per_correct_usd_after']:.2e}, pass={all(row['checks'].values())}"
                  f", {row['wall_s']:.0f} s", flush=True)
        else:
            print(row["variant"], row["seed"], row["status"], row.get("log_tail", ""),
                  flush=True)
    report["grid"] = rows
    atomic_write_json(path, report)
    return report


if __name__ == "__main__":
    main()
