"""What a router evaluation did, by question kind (1-hop, 2-hop, 3-hop).

Reads the per-episode records a run writes (``RUN/eval/step-N.jsonl``) and prints, for each
kind: accuracy, calls per question, questions that ended without an answer (the turn limit),
the experts called most, and how many questions went *whole* to one expert (the first call's
query is the question itself) with the accuracy of those and of the rest.

    python benchmarks/router_by_hop.py runs/r1/eval/step-00000.jsonl runs/r1/eval/step-00004.jsonl
    python benchmarks/router_by_hop.py --json out.json runs/r1/eval/step-*.jsonl
"""

from __future__ import annotations

import argparse
import json
import re
from collections import Counter
from pathlib import Path
from typing import Any


def _words(text: str) -> str:
    return re.sub(r"\W+", " ", text.lower()).strip()


def by_hop(records: list[dict[str, Any]]) -> dict[str, Any]:
    """Per question kind: n, accuracy, calls, unanswered, models, whole (and their accuracy)."""
    kinds: dict[str, dict[str, Any]] = {}
    for rec in records:
        metrics = rec["metrics"]
        row = kinds.setdefault(str(metrics.get("kind")), {"n": 0, "correct": 0.0, "calls": 0,
                                                 "unanswered": 0, "models": Counter(),
                                                 "whole": 0, "whole_correct": 0.0})
        question = _words(rec["turns"][0]["text"])
        # the calls that reached an expert (not an unknown name, not one past the limit)
        calls = [c for turn in rec["turns"] for c in turn["tool_calls"] if not c.get("error")]
        whole = bool(calls) and _words(str(calls[0]["arguments"].get("query", ""))) == question
        row["n"] += 1
        row["correct"] += metrics["accuracy"]
        row["calls"] += metrics["calls"]
        row["unanswered"] += rec["termination"] != "answered"
        row["models"].update(metrics["models"])
        row["whole"] += whole
        row["whole_correct"] += metrics["accuracy"] if whole else 0.0
    out = {}
    for kind, row in sorted(kinds.items()):
        n, rest = row["n"], row["n"] - row["whole"]
        out[kind] = {
            "n": n,
            "accuracy": row["correct"] / n,
            "calls": row["calls"] / n,
            "unanswered": row["unanswered"],
            "models": dict(row["models"].most_common()),
            "whole": row["whole"],
            "accuracy_whole": row["whole_correct"] / row["whole"] if row["whole"] else None,
            "accuracy_rest": (row["correct"] - row["whole_correct"]) / rest if rest else None,
        }
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("records", nargs="+", type=Path, help="eval/step-N.jsonl files")
    parser.add_argument("--json", type=Path, help="also save the tables here")
    args = parser.parse_args()
    tables = {}
    for path in args.records:
        records = [json.loads(line) for line in path.read_text().splitlines() if line]
        if not records:
            print(f"{path}: no episodes")
            continue
        table = by_hop(records)
        tables[str(path)] = table
        reward = sum(r["reward"] for r in records) / len(records)
        print(f"{path}  reward {reward:.3f}")
        for kind, row in table.items():
            top = ", ".join(f"{m} {c}" for m, c in list(row["models"].items())[:4])
            whole = (f"whole {row['whole']} (acc {row['accuracy_whole']:.2f})"
                     if row["whole"] else "whole 0")
            print(f"  {kind}: n={row['n']} acc={row['accuracy']:.2f} calls={row['calls']:.2f} "
                  f"unanswered={row['unanswered']} {whole}  [{top}]")
    if args.json:
        args.json.write_text(json.dumps(tables, indent=1) + "\n")


if __name__ == "__main__":
    main()
