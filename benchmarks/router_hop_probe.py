"""How sure is a trained router of how many hops a question has? A probe of one token.

The router's scripted demonstrations begin every turn with ``<think>Step k of N``. This reads a
checkpoint of a ``gymrl train`` run (the post-SFT one, ``step-0``, by default), gives it each
held-out question the run's evaluation saw, with the prefix ``<think>Step 1 of `` already
written, and records the probability of the next token being ``1``, ``2`` or ``3``, by how many
hops the question really has. A policy that has learned to count puts its mass on the true
count; one that has not gives every question the same distribution, and then the sampled
rollouts still try every count (what GRPO needs to learn from) while greedy decoding picks the
most likely one for all of them.

Usage::

    python benchmarks/router_hop_probe.py runs/router_learning/seed-0            # step-0
    python benchmarks/router_hop_probe.py runs/router_learning/seed-0 --step 4

Writes ``benchmarks/results/router_hop_probe.json`` (``--output``): per run, step and hop count,
the mean probability of each count and how often each is the most likely.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
from pathlib import Path
from typing import Any

from gymrl.results import atomic_write_json, versions

ROOT = Path(__file__).resolve().parent
COUNTS = ("1", "2", "3")


def probe(run_dir: Path, step: int, limit: int) -> dict[str, Any]:
    import numpy as np
    import torch
    from omegaconf import OmegaConf

    from gymrl.learner.train import Trainer

    with tempfile.TemporaryDirectory() as tmp:
        # A throwaway run folder holding just the one checkpoint, so the run is not touched.
        work = Path(tmp)
        shutil.copy(run_dir / "config.yaml", work / "config.yaml")
        (work / "checkpoints").mkdir()
        name = f"step-{step}"
        shutil.copytree(run_dir / "checkpoints" / name, work / "checkpoints" / name)
        (work / "checkpoints" / "latest").write_text(name + "\n")
        cfg = OmegaConf.to_container(OmegaConf.load(work / "config.yaml"))
        cfg["output_dir"], cfg["resume"] = str(work), str(work)
        trainer = Trainer(cfg, work)
        if not trainer.restore():
            raise SystemExit(f"{run_dir}: no checkpoint step-{step}")
        tok = trainer.learner_backend.tokenizer
        system = trainer.env_on("test", trainer.eval_reward).unwrapped.system_prompt()
        digits = [tok.encode(f" {c}", add_special_tokens=False)[-1] for c in COUNTS]
        records = [json.loads(line) for line in
                   (run_dir / "eval" / "step-00000.jsonl").read_text().splitlines()][:limit]
        by_kind: dict[str, list[list[float]]] = {}
        trainer.model.eval()
        for record in records:
            messages = [{"role": "system", "content": system},
                        {"role": "user", "content": record["turns"][0]["text"]}]
            text = tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
            ids = torch.tensor([tok.encode(text + "<think>Step 1 of ", add_special_tokens=False)])
            with torch.no_grad():
                logp = torch.log_softmax(trainer.model(input_ids=ids).logits[0, -1].float(), -1)
            by_kind.setdefault(record["metrics"]["kind"], []).append(
                [float(logp[d].exp()) for d in digits])
    out = {}
    for kind, rows in sorted(by_kind.items()):
        p = np.array(rows)
        out[kind] = {"questions": len(rows),
                     "mean_p": dict(zip(COUNTS, p.mean(0).round(3).tolist(), strict=True)),
                     "argmax": dict(zip(COUNTS, np.bincount(p.argmax(1), minlength=3).tolist(),
                                        strict=True))}
    return out


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("runs", type=Path, nargs="+", help="gymrl train run folders")
    parser.add_argument("--step", type=int, default=0, help="the checkpoint to read")
    parser.add_argument("--limit", type=int, default=200, help="held-out questions")
    parser.add_argument("--output", type=Path, default=ROOT / "results" / "router_hop_probe.json")
    args = parser.parse_args(argv)
    result = {"versions": versions(), "runs": {}}
    if args.output.is_file():
        result["runs"] = json.loads(args.output.read_text()).get("runs", {})
    for run in args.runs:
        found = probe(run, args.step, args.limit)
        result["runs"][f"{run}@step-{args.step}"] = found
        for kind, row in found.items():
            print(f"{run} step-{args.step} {kind}: n={row['questions']} "
                  f"p(count)={row['mean_p']} most likely={row['argmax']}")
    atomic_write_json(args.output, result)
    return result


if __name__ == "__main__":
    main()
