"""Rollout speed of the hf path's ways to generate on the CPU: the learner's own fp32 model
through oneDNN-packed weights, packed for each batch (the trainer's default there,
``rollout.hf_pack`` null), the same model unpacked (``rollout.hf_pack=false``: the default up
to commit 2fec989) and a bf16 copy (``rollout.hf_dtype=bfloat16``), packed after each sync as
the trainer packs it where the CPU multiplies bf16 natively (the same tokens as unpacked, bit
for bit; the bf16 way is skipped on other CPUs).

Each plays whole ``router`` episodes (every turn, stop strings, KV caches kept between turns)
with :func:`gymrl.learner.rollout.run_rollouts`, the trainer's own path, on the same tasks and
from the same sampling seed, at two batch sizes: one group (G=8, as ``grpo_vs_trl``) and the
main job's 4 groups of 8. What is timed is the wall time of each batch of episodes, packing
included; the rate is policy tokens per second. The fp32 ways sample the same tokens (up to
rounding in the last bits: ``same_tokens_as_default`` says whether they did); bf16 samples
other ones, so its episodes may be longer or shorter: compare tokens/s, not seconds.

Usage::

    python benchmarks/rollout_speed.py                      # SmolLM2, batches 8 and 32
    python benchmarks/rollout_speed.py --repeats 3 --groups 1 4

Writes ``benchmarks/results/rollout_speed.json`` and ``rollout_speed.png``.
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from pathlib import Path
from typing import Any

from gymrl.results import atomic_write_json, versions

ROOT = Path(__file__).resolve().parent
# name -> (HFBackend options on top of the common ones, packed for each batch as the trainer
# packs the learner's own model)
WAYS = {"default_fp32": ({"dtype": "float32"}, True),
        "unpacked_fp32": ({"dtype": "float32"}, False),
        "bf16": ({"dtype": "bfloat16"}, True)}


def play(backend: Any, groups: int, group_size: int, seed: int,
         pack: bool = False) -> tuple[float, int, list]:
    """Wall seconds, policy tokens and the sampled ids of ``groups`` groups of episodes
    (``pack``: through oneDNN-packed weights, packed for the batch and timed with it)."""
    import contextlib

    from gymrl.backends.packed import linears_packed
    from gymrl.learner.rollout import reset_group, run_rollouts
    from gymrl.learner.train import task_seed
    from gymrl.make import make_env

    rollouts = []
    for g in range(groups):
        envs = [make_env("router", split="train") for _ in range(group_size)]
        rollouts += reset_group(envs, task_seed=task_seed(seed, 0, g, groups), group=g)
    start = time.perf_counter()
    with linears_packed(backend.model) if pack else contextlib.nullcontext():
        run_rollouts(backend, rollouts)
    wall = time.perf_counter() - start
    tokens = sum(sum(r.seq.mask) for r in rollouts)
    return wall, tokens, [[i for i, m in zip(r.seq.ids, r.seq.mask, strict=True) if m]
                          for r in rollouts]


def main(argv: list[str] | None = None) -> dict[str, Any]:
    import torch

    from gymrl.backends.hf import HFBackend
    from gymrl.learner.model import resolve_model

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="smollm2")
    parser.add_argument("--groups", type=int, nargs="+", default=[1, 4])
    parser.add_argument("--group-size", type=int, default=8)
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=2, help="timed batches per way and size")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output", type=Path, default=ROOT / "results" / "rollout_speed.json")
    parser.add_argument("--no-plot", action="store_true")
    args = parser.parse_args(argv)

    from gymrl.learner.train import cpu_has_bf16_matmul

    path = resolve_model(args.model)
    ways = dict(WAYS)
    if not cpu_has_bf16_matmul():  # emulated bf16 would take hours and say nothing
        print("no avx512_bf16/AMX on this CPU: skipping the bf16 copy", flush=True)
        del ways["bf16"]
    rows = []
    for groups in args.groups:
        batch = groups * args.group_size
        backends = {name: HFBackend(path, max_new_tokens=args.max_new_tokens, batch_size=batch,
                                    temperature=1.0, seed=args.seed, **options)
                    for name, (options, _) in ways.items()}
        for name, backend in backends.items():  # warm-up, untimed
            play(backend, groups, args.group_size, args.seed + 1000, ways[name][1])
        samples: dict[str, list] = {}
        for repeat in range(args.repeats):  # the ways take turns: a slow moment hits them all
            for name, backend in backends.items():
                backend.set_sampling_state(_seeded_state(args.seed + repeat))
                wall, tokens, ids = play(backend, groups, args.group_size, args.seed + repeat,
                                         ways[name][1])
                samples.setdefault(name, []).append(ids)
                rows.append({"way": name, "batch": batch, "repeat": repeat, "wall_s": wall,
                             "policy_tokens": tokens, "tokens_per_s": tokens / wall})
                print(f"batch {batch:3d} {name:13s} {wall:6.2f} s  {tokens:5d} tokens  "
                      f"{tokens / wall:6.1f} tokens/s", flush=True)
        for row in rows:
            if row["batch"] == batch:
                row["same_tokens_as_default"] = (
                    samples[row["way"]][row["repeat"]] == samples["default_fp32"][row["repeat"]])
    summary = {}
    for batch in sorted({r["batch"] for r in rows}):
        for name in ways:
            mine = [r for r in rows if r["batch"] == batch and r["way"] == name]
            summary[f"{name}@{batch}"] = {
                "tokens_per_s": sum(r["policy_tokens"] for r in mine) / sum(r["wall_s"]
                                                                             for r in mine)}
        base = summary[f"default_fp32@{batch}"]["tokens_per_s"]
        for name in ways:
            mine = summary[f"{name}@{batch}"]
            mine["speedup"] = mine["tokens_per_s"] / base
    report = {"config": vars(args) | {"output": str(args.output), "model_path": str(path)},
              "machine": {"platform": platform.platform(), "cpus": os.cpu_count(),
                          "torch": torch.__version__, "torch_threads": torch.get_num_threads(),
                          "cpu_capability": torch.backends.cpu.get_cpu_capability()},
              "versions": versions(), "rows": rows, "summary": summary}
    atomic_write_json(args.output, report)
    if not args.no_plot:
        plot(summary, args.output.with_suffix(".png"))
    return report


def _seeded_state(seed: int) -> Any:
    """The state of an hf backend's per-call seed stream started from ``seed``."""
    import random

    return random.Random(seed).getstate()


def plot(summary: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    batches = sorted({int(k.split("@")[1]) for k in summary})
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ways = sorted({k.split("@")[0] for k in summary}, key=list(WAYS).index)
    width = 0.8 / len(ways)
    for i, name in enumerate(ways):
        values = [summary[f"{name}@{b}"]["tokens_per_s"] for b in batches]
        ax.bar([j + i * width for j in range(len(batches))], values, width, label=name)
    ax.set_xticks([j + width for j in range(len(batches))], [f"batch {b}" for b in batches])
    ax.set_ylabel("policy tokens/s")
    ax.set_title("router rollouts on the CPU, by way of generating")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    main()
