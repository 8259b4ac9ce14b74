"""gymrl's GRPO step against TRL's ``GRPOTrainer``: same model, prompts, G, length and steps.

Both sides train SmolLM2-135M-Instruct (the embedded model; ``--model`` for another) with full
fine-tuning, ``beta=0`` (no reference model), ``loss_type=grpo``, group scaling, temperature 1,
no top-k/top-p, on the first-turn prompts of the ``router`` env (``env.max_turns=1``: one
policy turn per episode), scored by ``brevity+cost+outcome`` (TRL gets it as a reward function
that plays the completion in a gymrl env). ``brevity`` (the example plugin: shorter text scores
higher) is there so that every group's rewards differ: the untrained model earns the same 0
from ``cost+outcome`` on every completion, and gymrl skips the update of a group whose rewards
are all equal (its gradient is 0) while TRL still runs it, which would compare rollouts alone
with rollouts plus training. ``--groups`` prompts per step (1 by default, as in the issue's
TRL reference; gymrl's default job trains 4), G completions each, at most ``--length`` new
tokens each. The tasks are the ones gymrl's trainer draws, in the same order, so both sides see
the same prompts; with several groups, TRL generates a step's completions together and trains
them in micro-batches of one group (``gradient_accumulation_steps=groups``), as gymrl's
``learner.micro_batch=G`` does. TRL runs first, as its users run it: gymrl's trainer makes glibc
keep freed memory for reuse (``gymrl.learner.memory``), which holds for the rest of the process.

gymrl stops a completion at the env's stop strings (``</search>``, ``</answer>``) or EOS; TRL
stops at EOS or the length. The rate compared is policy (completion) tokens per second of
wall time over the timed steps (after one untimed warm-up step on each side), and the mean
completion length of each side is reported next to it.

MFU: the model FLOPs a step needs are ``2 N`` per token for generation plus ``6 N`` per token
for training (forward and backward), N the parameter count, over the step's distinct tokens:
the group's prompt once (the G completions share it) and every completion token, counted from
each side's own completions. Work a side repeats (encoding the same prompt G times) is not
model FLOPs, so MFU stays <= 100%. Divided by the wall time and by the fp32 matmul ceiling
measured here (2048x2048 matrices on the same threads, the faster of ``torch.mm`` and oneDNN
on reordered weights), taken as the best of readings before, between and after the sides (a
shared machine's slow moment would otherwise flatter every MFU).

Sides: ``gymrl`` (the default config, everything in fp32, compared with TRL for ``ratio``;
on the CPU its own model multiplies through oneDNN-packed weights in the rollouts and in the
update's forward passes, ``rollout.hf_pack``), ``gymrl_unpacked`` (``rollout.hf_pack=false``:
the plain layers throughout, as the default was up to commit 2fec989; an fp32 rollout copy
packs as the default does, so it has no side of its own), ``gymrl_bf16_rollouts``
(``rollout.hf_dtype=bfloat16``: a bf16 copy generates; the learner trains in fp32 on every
side), each with its ``ratio_<side>``, and ``trl``. A side's ``mfu`` holds each part to the
ceiling of its own precision (generation's 2N FLOPs per token at the bf16 matmul ceiling when
it runs in bf16); ``mfu_vs_fp32_ceiling`` holds everything to the fp32 one.

Usage::

    pip install "trl==1.16.0" torch==2.13.0    # benchmark-only dependency
    python benchmarks/grpo_vs_trl.py                   # G=8, 32 tokens, 5 timed steps
    python benchmarks/grpo_vs_trl.py --steps 3 --group-size 4
    python benchmarks/grpo_vs_trl.py --groups 4 --steps 3 \
        --output benchmarks/results/grpo_vs_trl_groups4.json   # the default job's batch shape
    python benchmarks/grpo_vs_trl.py --sides gymrl,gymrl_bf16_rollouts   # gymrl only
    python benchmarks/grpo_vs_trl.py --sides gymrl_unpacked,gymrl   # in that order (TRL first)

Writes ``benchmarks/results/grpo_vs_trl.json`` (numbers, config, machine and versions).
"""

from __future__ import annotations

import argparse
import importlib.metadata
import os
import platform
import tempfile
import time
from pathlib import Path
from typing import Any

from gymrl.results import atomic_write_json

ROOT = Path(__file__).resolve().parent
ENV_OPTIONS = {"max_turns": 1}
REWARD = "brevity+cost+outcome"


def matmul_ceiling(dtype: str = "float32", size: int = 2048, repeats: int = 10) -> float:
    """FLOP/s of a large square matmul in ``dtype`` on this machine and thread count: the faster
    of torch's ``mm`` (MKL) and oneDNN on weights reordered once (the kernel gymrl's packed
    generation uses; on the 2-core build machine ~220 GFLOP/s in fp32 against mm's ~188), so
    that no kernel at hand beats the ceiling an MFU is held to."""
    import torch

    a, b = (torch.randn(size, size).to(getattr(torch, dtype)) for _ in range(2))
    kernels = [lambda: torch.mm(a, b)]
    if torch.backends.mkldnn.is_available():
        reordered = torch.ops.mkldnn._reorder_linear_weight(b)
        kernels.append(lambda: torch.ops.mkldnn._linear_pointwise(a, reordered, None, "none",
                                                                   [], ""))
    best = 0.0
    for kernel in kernels:
        kernel()
        start = time.perf_counter()
        for _ in range(repeats):
            kernel()
        best = max(best, 2 * size ** 3 * repeats / (time.perf_counter() - start))
    return best


class Ceilings:
    """The matmul ceilings, measured several times through the run (before, between and after
    the sides); each is the best reading, since a slow moment on a shared machine would make
    every side's MFU look better than it is."""

    def __init__(self, dtypes: tuple[str, ...] = ("float32", "bfloat16")) -> None:
        self.readings: dict[str, list[float]] = {d: [] for d in dtypes}

    def measure(self) -> None:
        for dtype, readings in self.readings.items():
            readings.append(matmul_ceiling(dtype))
        print("matmul ceilings (GFLOP/s): " + ", ".join(
            f"{d} {r[-1] / 1e9:.1f}" for d, r in self.readings.items()), flush=True)

    def best(self, dtype: str) -> float:
        return max(self.readings[dtype])


def gymrl_cfg(model: str, groups: int, group_size: int, length: int, steps: int, lr: float,
              seed: int, out: Path, *extra: str) -> dict[str, Any]:
    from gymrl.config import load_config, to_container
    from gymrl.learner.config import TrainConfig

    return to_container(load_config(TrainConfig, [
        f"model={model}", "env=router", "env.max_turns=1", f"reward={REWARD}",
        f"learner.groups={groups}", f"learner.group_size={group_size}", f"learner.steps={steps}",
        "learner.lora=false", "learner.loss_type=grpo", "learner.beta=0",
        # TRL's default AdamW (transformers' with torch >= 2.8) is the fused one: the same here.
        "learner.optim=adamw_torch_fused",
        f"learner.lr={lr}", f"learner.micro_batch={group_size}",
        f"rollout.max_new_tokens={length}", f"rollout.batch_size={groups * group_size}",
        "sft.steps=0", f"seed={seed}", f"output_dir={out}", "progress=false", *extra]))


def drawn_tasks(cfg: dict[str, Any], steps: int) -> list[list[str]]:
    """The task ids gymrl's trainer draws at each step, one per group (its first env's)."""
    from gymrl.learner.train import task_seed
    from gymrl.make import make_env

    env = make_env("router", split="train", **ENV_OPTIONS)
    groups = cfg["learner"]["groups"]
    ids = []
    for step in range(steps):
        ids.append([])
        for k in range(groups):  # as Trainer.draw_batch draws them (no resample_flat)
            env.reset(seed=task_seed(cfg["seed"], step, k, groups))
            ids[-1].append(env.unwrapped.episode.task.id)
    return ids


def run_gymrl(cfg: dict[str, Any], steps: int) -> dict[str, Any]:
    from gymrl.learner.train import Trainer, prepare_run

    cfg, run_dir = prepare_run(cfg)
    trainer = Trainer(cfg, run_dir)
    rows = []
    for step in range(steps + 1):  # step 0: warm-up, untimed
        start = time.perf_counter()
        metrics = trainer.grpo_step()
        wall = time.perf_counter() - start
        if step:
            rows.append({"wall_s": wall, "completion_tokens": metrics["tokens/policy"],
                         "rollout_s": metrics["time/rollout_s"],
                         "train_s": metrics["time/train_s"],
                         # A flat group (every reward equal) trains on nothing: said, not hidden.
                         "flat_groups": metrics["groups/flat"],
                         "tokens_trained": metrics["tokens/trained"]})
    return {"steps": rows, "n_params": sum(p.numel() for p in trainer.model.parameters())}


def run_trl(model: str, task_ids: list[list[str]], group_size: int, length: int, lr: float,
            seed: int, out: Path) -> dict[str, Any]:
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback
    from trl import GRPOConfig, GRPOTrainer

    from gymrl.make import make_env, make_reward

    env = make_env("router", split="train", reward=make_reward("router", {"spec": REWARD}),
                   **ENV_OPTIONS)
    rows = []
    for step_tasks in task_ids:  # in order: a step's prompts are the next batch
        for task_id in step_tasks:
            _, info = env.reset(options={"task_id": task_id})
            rows.append({"prompt": info["messages"], "task_id": task_id})
    groups = len(task_ids[0])

    def env_reward(prompts: list, completions: list, task_id: list[str], **_: Any) -> list[float]:
        rewards = []
        for completion, tid in zip(completions, task_id, strict=True):
            env.reset(options={"task_id": tid})
            text = completion[-1]["content"] if isinstance(completion, list) else completion
            _, reward, *_ = env.step(text)
            rewards.append(float(reward))
        return rewards

    times: list[float] = []
    logs: list[dict[str, float]] = []

    class Clock(TrainerCallback):
        def on_step_end(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            times.append(time.perf_counter())

        def on_log(self, args: Any, state: Any, control: Any, logs_: Any = None,
                   **kw: Any) -> None:
            logs.append(dict(kw.get("logs") or logs_ or {}))

    tokenizer = AutoTokenizer.from_pretrained(model, padding_side="left")
    policy = AutoModelForCausalLM.from_pretrained(model, dtype="float32")
    args = GRPOConfig(
        output_dir=str(out), num_generations=group_size,
        # A step: all groups' completions generated together, trained in micro-batches of one
        # group, as gymrl's learner.micro_batch=G does (one batch of 4 groups, run after gymrl's
        # sides had set glibc to keep freed memory, went past 24 GiB).
        per_device_train_batch_size=group_size, gradient_accumulation_steps=groups,
        max_completion_length=length, max_steps=len(task_ids), learning_rate=lr,
        logging_steps=1, report_to="none", use_cpu=True, bf16=False, beta=0.0,
        loss_type="grpo", scale_rewards="group", temperature=1.0, top_p=1.0, top_k=0,
        save_strategy="no", seed=seed, shuffle_dataset=False, disable_dropout=True,
        dataloader_num_workers=0, max_grad_norm=1.0, optim="adamw_torch_fused",
        # TRL's default recomputes activations (~20% slower); gymrl does not, so neither here.
        gradient_checkpointing=False)
    trainer = GRPOTrainer(model=policy, reward_funcs=env_reward, args=args,
                          train_dataset=Dataset.from_list(rows), processing_class=tokenizer,
                          callbacks=[Clock()])
    start = time.perf_counter()
    trainer.train()
    marks = [start, *times]
    step_logs = [log for log in logs if "completions/mean_length" in log]
    out_rows = []
    for i in range(1, len(task_ids)):  # step 0: warm-up, untimed
        out_rows.append({"wall_s": marks[i + 1] - marks[i], "completion_tokens":
                         step_logs[i]["completions/mean_length"] * groups * group_size})
    return {"steps": out_rows, "n_params": sum(p.numel() for p in policy.parameters())}


def prompt_lengths(model: str, task_ids: list[list[str]]) -> list[list[int]]:
    from transformers import AutoTokenizer

    from gymrl.make import make_env

    tok = AutoTokenizer.from_pretrained(model)
    env = make_env("router", split="train", **ENV_OPTIONS)
    lengths = []
    for step_tasks in task_ids:
        lengths.append([])
        for task_id in step_tasks:
            _, info = env.reset(options={"task_id": task_id})
            lengths[-1].append(len(tok.apply_chat_template(
                info["messages"], add_generation_prompt=True, tokenize=True, return_dict=False)))
    return lengths


def summarise(side: dict[str, Any], prompts: list[list[int]], group_size: int,
              ceilings: Ceilings, rollout_dtype: str = "float32") -> dict[str, Any]:
    """Rates and MFU of one side. ``mfu`` holds each part to the ceiling of the precision it
    runs in: the ideal time is generation's FLOPs at the ``rollout_dtype`` ceiling plus
    training's at the fp32 one, over the wall time (for an all-fp32 side that is FLOPs over
    wall time over the fp32 ceiling). ``mfu_vs_fp32_ceiling`` holds everything to fp32."""
    wall = sum(r["wall_s"] for r in side["steps"])
    completion = sum(r["completion_tokens"] for r in side["steps"])
    # Each group's prompt once (its rows share it); step 0 is the untimed warm-up.
    prompt = sum(sum(step) for step in prompts[1:len(side["steps"]) + 1])
    rows = group_size * len(prompts[0]) * len(side["steps"])
    n = side["n_params"]
    generate, learn = 2 * n * (prompt + completion), 6 * n * (prompt + completion)
    fp32 = ceilings.best("float32")
    ideal = generate / ceilings.best(rollout_dtype) + learn / fp32
    out = {"timed_steps": len(side["steps"]), "rollout_dtype": rollout_dtype, "wall_s": wall,
           "s_per_step": wall / len(side["steps"]),
           "completion_tokens": completion,
           "mean_completion_length": completion / rows,
           "tokens_per_s": completion / wall, "model_flops": generate + learn,
           "mfu": ideal / wall, "mfu_vs_fp32_ceiling": (generate + learn) / wall / fp32}
    if "rollout_s" in side["steps"][0]:  # gymrl's own split of the step
        out["rollout_s"] = sum(r["rollout_s"] for r in side["steps"])
        out["train_s"] = sum(r["train_s"] for r in side["steps"])
        out["rollout_mfu"] = generate / out["rollout_s"] / ceilings.best(rollout_dtype)
        out["train_mfu"] = learn / out["train_s"] / fp32
    return out | {"per_step": side["steps"]}


# gymrl's sides: name -> (extra overrides, the rollouts' dtype). The first (the default
# config) is the one compared with TRL for ``ratio``; the others are reported beside it, each
# with its own ratio: the default without oneDNN-packed rollouts (the default before they
# were), and a bf16 rollout copy (``rollout.hf_dtype``).
GYMRL_SIDES = {"gymrl": ((), "float32"),
               "gymrl_unpacked": (("rollout.hf_pack=false",), "float32"),
               "gymrl_bf16_rollouts": (("rollout.hf_dtype=bfloat16",), "bfloat16")}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    import torch

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="smollm2")
    parser.add_argument("--groups", type=int, default=1,
                        help="prompts per step (gymrl's default job trains 4)")
    parser.add_argument("--group-size", type=int, default=8)
    parser.add_argument("--length", type=int, default=32, help="max completion tokens")
    parser.add_argument("--steps", type=int, default=5, help="timed steps (plus one warm-up)")
    parser.add_argument("--lr", type=float, default=1e-6)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--sides", default=",".join([*GYMRL_SIDES, "trl"]))
    parser.add_argument("--output", type=Path, default=ROOT / "results" / "grpo_vs_trl.json")
    args = parser.parse_args(argv)
    from gymrl.learner.model import resolve_model

    sides = args.sides.split(",")
    unknown = sorted(set(sides) - {*GYMRL_SIDES, "trl"})
    if unknown:
        parser.error(f"unknown sides {unknown}; allowed: {', '.join([*GYMRL_SIDES, 'trl'])}")
    model = resolve_model(args.model)
    from gymrl.learner.train import cpu_has_bf16_matmul

    if "gymrl_bf16_rollouts" in sides and not cpu_has_bf16_matmul():
        # Emulated bf16 (~0.2 GFLOP/s on an AVX2 machine): the side and its ceiling would take
        # hours and say nothing about gymrl.
        print("no avx512_bf16/AMX on this CPU: skipping gymrl_bf16_rollouts", flush=True)
        sides.remove("gymrl_bf16_rollouts")
    ceilings = Ceilings(("float32", "bfloat16") if "gymrl_bf16_rollouts" in sides
                        else ("float32",))
    ceilings.measure()
    report: dict[str, Any] = {
        "config": {"model": args.model, "groups": args.groups, "group_size": args.group_size,
                   "max_completion_tokens": args.length, "timed_steps": args.steps,
                   "lr": args.lr, "seed": args.seed, "env": "router", "env_options": ENV_OPTIONS,
                   "reward": REWARD, "loss_type": "grpo", "beta": 0.0, "fine_tuning": "full",
                   "gradient_checkpointing": False, "optimizer": "adamw_torch_fused (all)",
                   "learner_dtype": "float32"},
        "machine": {"platform": platform.platform(), "processor": platform.processor(),
                    "cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(),
                    "packages": {p: _version(p) for p in (
                        "gymrl", "torch", "transformers", "trl", "peft", "accelerate")}}}
    runs: dict[str, tuple[dict[str, Any], str]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        cfg = gymrl_cfg(model, args.groups, args.group_size, args.length, args.steps + 1,
                        args.lr, args.seed, Path(tmp) / "tasks")
        tasks = drawn_tasks(cfg, args.steps + 1)
        prompts = prompt_lengths(model, tasks)
        flat = [n for step in prompts for n in step]
        report["config"]["mean_prompt_tokens"] = sum(flat) / len(flat)
        # TRL first, as its users run it: gymrl's Trainer makes glibc keep freed memory
        # (gymrl.learner.memory), a process-wide setting that would otherwise hold for TRL too.
        if "trl" in sides:
            runs["trl"] = (run_trl(model, tasks, args.group_size, args.length, args.lr,
                                   args.seed, Path(tmp) / "trl"), "float32")
            ceilings.measure()
        # gymrl's sides in the order --sides names them (one process: a side runs on the heap
        # the sides before it left).
        for name in [side for side in sides if side in GYMRL_SIDES]:
            extra, dtype = GYMRL_SIDES[name]
            runs[name] = (run_gymrl(gymrl_cfg(
                model, args.groups, args.group_size, args.length, args.steps + 1, args.lr,
                args.seed, Path(tmp) / name, *extra), args.steps), dtype)
            ceilings.measure()
    report["machine"]["matmul_ceiling_flops"] = ceilings.best("float32")
    if "bfloat16" in ceilings.readings:
        report["machine"]["matmul_ceiling_bf16_flops"] = ceilings.best("bfloat16")
    report["machine"]["matmul_ceiling_readings"] = ceilings.readings
    for name, (side, dtype) in runs.items():
        report[name] = summarise(side, prompts, args.group_size, ceilings, dtype)
        print(f"{name}: {report[name]['tokens_per_s']:.1f} tokens/s, "
              f"{report[name]['s_per_step']:.1f} s/step, MFU {report[name]['mfu']:.1%} "
              f"(against the fp32 ceiling alone: {report[name]['mfu_vs_fp32_ceiling']:.1%})",
              flush=True)
    if "trl" in report:
        for name in GYMRL_SIDES:
            if name in report:
                key = "ratio" if name == "gymrl" else f"ratio_{name}"
                report[key] = report[name]["tokens_per_s"] / report["trl"]["tokens_per_s"]
                print(f"{key} {name}/trl: {report[key]:.2f} (target >= 1.5)", flush=True)
        report["target_ratio"] = 1.5
    atomic_write_json(args.output, report)
    return report


def _version(package: str) -> str | None:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


if __name__ == "__main__":
    main()
