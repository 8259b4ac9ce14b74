"""Did two run folders train alike? Every GRPO step's reward, loss, gradient norm and policy
tokens, the paired summary of the start and end evaluations, and each evaluation's
per-episode records (``eval/step-N.jsonl``), compared to every digit.

For a change that should not change the numbers (a faster kernel, a memory setting): run or
fork a recorded run again with the new code and compare. Timing keys are not compared.

Usage::

    python benchmarks/runs_alike.py runs/RL5/seed-1 runs/var/again_seed1 \\
        --output benchmarks/results/runs_alike.json     # adds a row to the file

Writes (appends to) ``--output`` when given: one row per pair, with both runs' configs.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from main_job import run_record, same_training  # noqa: E402

from gymrl.results import atomic_write_json, versions  # noqa: E402


def evaluations_alike(new: Path, old: Path) -> dict[str, bool]:
    """Per evaluation file that both runs wrote: whether its records are byte for byte equal."""
    mine = {p.name: p for p in sorted((new / "eval").glob("step-*.jsonl"))}
    theirs = {p.name: p for p in sorted((old / "eval").glob("step-*.jsonl"))}
    return {name: mine[name].read_bytes() == theirs[name].read_bytes()
            for name in sorted(set(mine) & set(theirs))}


def compare(new: Path, old: Path) -> dict[str, Any]:
    a, b = run_record(new), run_record(old)
    evals = evaluations_alike(new, old)
    row = {"new": str(new), "old": str(old), **same_training(a, b), "evaluations_alike": evals,
           "summary": a["summary"], "config_new": a["config"], "config_old": b["config"]}
    row["alike"] = bool(row["steps_alike"] and row["summary_alike"] and evals
                        and all(evals.values()))
    return row


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("new", type=Path)
    parser.add_argument("old", type=Path)
    parser.add_argument("--output", type=Path)
    args = parser.parse_args(argv)
    row = compare(args.new, args.old)
    print(f"{args.new} against {args.old}: steps alike {row['steps_alike']}, summary alike "
          f"{row['summary_alike']}, evaluations alike {row['evaluations_alike']}"
          f" -> {'ALIKE' if row['alike'] else 'NOT ALIKE'}", flush=True)
    if args.output:
        saved = json.loads(args.output.read_text()) if args.output.is_file() else {"rows": []}
        saved["rows"] = [r for r in saved["rows"]
                         if (r["new"], r["old"]) != (row["new"], row["old"])] + [row]
        saved["versions"] = versions()
        atomic_write_json(args.output, saved)
    return row


if __name__ == "__main__":
    main()
