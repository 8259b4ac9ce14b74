"""The README's main job, timed: ``gymrl train env=router reward=cost+outcome`` (budget 15 min).

Runs the job as a user does (``python -m gymrl train``, a subprocess; its peak resident set
size from ``os.wait4``) and saves its wall time, peak memory, SFT time, each GRPO step's
rollout and update time, the run's summary (start and end evaluations), config and versions.
With ``--compare OLD.json`` (an earlier result of this script) it also says whether the run
trained exactly as that one did: the same reward and loss at every step and the same
evaluations, to every digit (a speed change that should not change the numbers is checked
that way).

Usage::

    python benchmarks/main_job.py                          # ~10-13 min on 2 cores
    python benchmarks/main_job.py --compare benchmarks/results/main_job.json
    python benchmarks/main_job.py -- learner.micro_batch=4  # overrides for the job

Writes ``benchmarks/results/main_job.json``; the run goes to ``--work``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from train_memory import MAIN_JOB, peak_rss, train_cmd  # noqa: E402

from gymrl.learner.train import read_jsonl  # noqa: E402
from gymrl.results import atomic_write_json  # noqa: E402

ROOT = Path(__file__).resolve().parent
BUDGET_S = 15 * 60
# What must match, step by step, for two runs to have trained alike.
STEP_KEYS = ("reward", "loss/policy", "grad_norm", "tokens/policy")


def measure(work: Path, overrides: list[str]) -> dict[str, Any]:
    """Run the main job into ``work`` and read what it wrote."""
    peak, wall = peak_rss([*train_cmd(work), *overrides])
    return {
        "command": " ".join(["gymrl", "train", *MAIN_JOB, *overrides]),
        "measured_with": "train_memory.peak_rss (os.wait4), model already converted",
        "wall_s": round(wall, 1),
        "within_budget": wall <= BUDGET_S,
        "peak_rss_gib": round(peak, 2),
        **run_record(work),
    }


def run_record(run: Path) -> dict[str, Any]:
    """What a finished run folder says about its training: SFT time, each GRPO step's times
    and numbers, the paired summary of its evaluations, its config and versions."""
    rows = read_jsonl(run / "metrics.jsonl")
    return {
        "sft_s": next((r["time/sft_s"] for r in rows if "time/sft_s" in r), None),
        "steps": [{"step": r["step"], "rollout_s": r["time/rollout_s"],
                   "train_s": r["time/train_s"], **{k: r.get(k) for k in STEP_KEYS}}
                  for r in rows if "time/train_s" in r],
        # the start and end evaluations, paired
        "summary": json.loads((run / "summary.json").read_text())["change"],
        "config": (run / "config.yaml").read_text(),
        "versions": json.loads((run / "versions.json").read_text()),
    }


def same_training(new: dict[str, Any], old: dict[str, Any]) -> dict[str, Any]:
    """Whether ``new`` trained as ``old`` did: every step's numbers and the summary alike.
    Keys ``old`` lacks (an older result) are left out of the check and named; with none of
    them, ``steps_alike`` is ``None`` (not checked)."""
    missing = sorted({k for s in old["steps"] for k in STEP_KEYS if k not in s})
    steps_alike = None if len(missing) == len(STEP_KEYS) else (
        len(new["steps"]) == len(old["steps"]) and all(
            a.get(k) == b[k] for a, b in zip(new["steps"], old["steps"], strict=True)
            for k in STEP_KEYS if k in b))
    summary_alike = all(new["summary"].get(k) == v for k, v in old["summary"].items())
    return {"steps_alike": steps_alike, "summary_alike": summary_alike,
            "keys_not_in_old": missing}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--work", type=Path, default=Path("runs/main_job_bench"))
    parser.add_argument("--output", type=Path, default=ROOT / "results" / "main_job.json")
    parser.add_argument("--compare", type=Path, help="an earlier main_job.json")
    parser.add_argument("overrides", nargs="*", help="overrides for the job (after --)")
    args = parser.parse_args(argv)
    old = json.loads(args.compare.read_text()) if args.compare else None
    report = measure(args.work, args.overrides)
    if old is not None:
        report["compared_with"] = {"file": str(args.compare), "wall_s": old["wall_s"],
                                   "peak_rss_gib": old["peak_rss_gib"],
                                   **same_training(report, old)}
    atomic_write_json(args.output, report)
    print(f"main job: {report['wall_s']:.0f} s (budget {BUDGET_S} s), peak RSS "
          f"{report['peak_rss_gib']:.1f} GiB, SFT {report['sft_s']:.0f} s; reward "
          f"{report['summary']['reward_before']:.3f} -> {report['summary']['reward_after']:.3f}",
          flush=True)
    if old is not None:
        print("against", args.compare, report["compared_with"], flush=True)
    return report


if __name__ == "__main__":
    main()
