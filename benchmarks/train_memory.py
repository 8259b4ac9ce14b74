"""Peak memory of the main job, by phase: does ``gymrl train env=router`` fit the machine?

Each phase is a ``gymrl train`` subprocess (the path a user runs); its peak resident set size
comes from ``os.wait4``, the kernel's count for that process alone:

- ``sft``: load the embedded model, the default SFT warm start, a 2-task evaluation.
- ``grpo_micro_batch_M``: a fork of the ``sft`` run (so no SFT): one GRPO step of the default
  batch (4 groups of 8 rollouts) with ``learner.micro_batch=M``, the router's recipe (its SFT
  term) included, and a 2-task evaluation. It needs a start that writes the env's format
  (else every group is flat and nothing is trained: the phase then fails, naming why), so
  the ``sft`` phase runs the whole default SFT.
- ``main_job_micro_batch_M`` (``--full``): the README's main job, whole (~9 minutes on 2
  cores), with ``learner.micro_batch=M``. Its peak can sit above every phase's: the phases
  say where the memory goes, only these runs say what the job needs.

Targets (checked on the ``--full`` runs): the main job fits this project's machine (24 GiB)
with the defaults (``micro_batch=8``), and a 16 GiB machine with ``learner.micro_batch=4``.

Usage::

    python benchmarks/train_memory.py                    # sft + two GRPO phases, ~9 min
    python benchmarks/train_memory.py --full             # and the main job per micro batch
    python benchmarks/train_memory.py --micro-batches 8 4 2 -- model=PATH

Writes ``benchmarks/results/train_memory.json`` and ``train_memory.png``; the runs go to
``--work``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any

from gymrl.learner.train import read_jsonl
from gymrl.results import atomic_write_json, versions

ROOT = Path(__file__).resolve().parent
GIB = 1024 ** 3
TARGETS_GIB = {"defaults": 24.0, "micro_batch_4": 16.0}
MAIN_JOB = ("env=router", "reward=cost+outcome")


def peak_rss(cmd: list[str]) -> tuple[float, float]:
    """Run ``cmd``; its peak resident set size in GiB and its wall time in seconds."""
    print("$", " ".join(cmd), flush=True)
    start = time.perf_counter()
    pid = os.posix_spawn(cmd[0], cmd, os.environ)
    _, status, usage = os.wait4(pid, 0)
    wall = time.perf_counter() - start
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        raise SystemExit(f"{' '.join(cmd)} exited with {code}")
    return usage.ru_maxrss * 1024 / GIB, wall  # ru_maxrss is in KiB on Linux


def train_cmd(run_dir: Path, *overrides: str) -> list[str]:
    if run_dir.exists():
        shutil.rmtree(run_dir)
    return [sys.executable, "-m", "gymrl", "train", *MAIN_JOB, f"output_dir={run_dir}",
            "progress=false", *overrides]


def total_memory_gib() -> float:
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / GIB


def plot(report: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    phases = report["phases"]
    fig, ax = plt.subplots(figsize=(7, 3.2))
    ax.barh([p["phase"] for p in phases], [p["peak_rss_gib"] for p in phases])
    for name, limit in TARGETS_GIB.items():
        ax.axvline(limit, color="gray", linestyle="--")
        ax.text(limit, -0.6, f" {limit:.0f} GiB ({name})", fontsize=7, color="gray")
    ax.set_xlabel("peak resident memory (GiB)")
    ax.set_title("gymrl train env=router reward=cost+outcome: peak memory by phase", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--micro-batches", type=int, nargs="+", default=[8, 4])
    parser.add_argument("--full", action="store_true", help="also run the whole main job")
    parser.add_argument("--work", type=Path, default=Path("runs/train_memory"))
    parser.add_argument("--output", type=Path, default=ROOT / "results" / "train_memory.json")
    parser.add_argument("--no-plot", action="store_true")
    parser.add_argument("overrides", nargs="*",
                        help="gymrl train overrides for every phase (after --)")
    args = parser.parse_args(argv)
    report: dict[str, Any] = {"machine": {"cpus": os.cpu_count(),
                                          "memory_gib": round(total_memory_gib(), 1)},
                              "targets_gib": TARGETS_GIB, "phases": [], "versions": versions()}

    def record(phase: str, cmd: list[str]) -> None:
        cmd = [*cmd, *args.overrides]
        peak, wall = peak_rss(cmd)
        report["phases"].append({"phase": phase, "command": " ".join(cmd[2:]),
                                 "peak_rss_gib": round(peak, 2), "wall_s": round(wall, 1)})
        atomic_write_json(args.output, report)  # after every phase: a stop loses nothing
        print(f"{phase}: peak RSS {peak:.2f} GiB, {wall:.0f} s", flush=True)

    sft_run = args.work / "sft"
    record("sft", train_cmd(sft_run, "learner.steps=0", "eval.episodes=2"))
    for micro in args.micro_batches:
        run = args.work / f"grpo_{micro}"
        record(f"grpo_micro_batch_{micro}", train_cmd(run, f"fork={sft_run}", "learner.steps=1",
                                                      f"learner.micro_batch={micro}",
                                                      "eval.episodes=2"))
        step = [r for r in read_jsonl(run / "metrics.jsonl") if "loss/policy" in r][-1]
        report["phases"][-1]["tokens_trained"] = step["tokens/trained"]
        if not step["tokens/trained"]:
            raise SystemExit(f"{run}: every group of the GRPO step was flat, so nothing was "
                             "trained and its peak is not an update's; the sft run's start "
                             "does not write the env's format (more sft.steps)")
    if args.full:
        for micro in args.micro_batches:
            record(f"main_job_micro_batch_{micro}",
                   train_cmd(args.work / f"main_job_{micro}", f"learner.micro_batch={micro}"))
    peaks = {p["phase"]: p["peak_rss_gib"] for p in report["phases"]}
    checks = {}
    if "main_job_micro_batch_8" in peaks:
        checks["defaults_fit_24_gib"] = peaks["main_job_micro_batch_8"] < TARGETS_GIB["defaults"]
    if "main_job_micro_batch_4" in peaks:
        checks["micro_batch_4_fits_16_gib"] = \
            peaks["main_job_micro_batch_4"] < TARGETS_GIB["micro_batch_4"]
    report["checks"] = checks
    atomic_write_json(args.output, report)
    print("checks:", checks or "none (they need --full)")
    if not args.no_plot:
        plot(report, args.output.with_suffix(".png"))
    return report


if __name__ == "__main__":
    main()
