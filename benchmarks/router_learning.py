"""Does the default ``gymrl train env=router reward=cost+outcome`` learn? Three seeds, 200 tasks.

For each seed, the README's main job runs as a user runs it (``gymrl train``, a subprocess), with
one change: the held-out evaluations at the start (after the SFT warm start) and at the end use
``--episodes`` (default 200) tasks of the test split instead of 24. Every evaluation scores cost
against fixed bounds (``Reward.frozen``), and the trainer pairs the two evaluations episode by
episode (``summary.json`` -> ``change``). ``scripted:strongest`` plays the same held-out
episodes as the bar to beat on cost per correct answer.

A seed passes when, on those episodes:

- the trained policy's composite reward beats the starting policy's by more than twice the
  standard error of the paired difference;
- its accuracy is no lower than the starting policy's;
- its cost per correct answer is lower than both the starting policy's and strongest's.

Usage::

    python benchmarks/router_learning.py                 # 3 seeds, 15-17 min each on 2 cores
    python benchmarks/router_learning.py --seeds 0 --episodes 50 -- learner.steps=4
    python benchmarks/router_learning.py --seeds 2     # adds seed 2 to the saved seeds

Writes ``benchmarks/results/router_learning.json`` (per seed: the change, wall time, peak
resident memory (``os.wait4``), and the run's metrics/summary/curves copied under
``benchmarks/results/router_learning/seed-N``) and ``router_learning.png``. The model weights
and checkpoints stay in ``--work``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path
from typing import Any

from train_memory import peak_rss

from gymrl.learner.config import env_recipe
from gymrl.results import atomic_write_json, versions

ROOT = Path(__file__).resolve().parent
KEEP = ("config.yaml", "versions.json", "metrics.jsonl", "summary.json", "curves.png")


def strongest_on(episodes: int, split: str = "test") -> dict[str, Any]:
    """``scripted:strongest`` on the held-out episodes the trainer evaluates (reset seed i)."""
    from gymrl.backends.scripted import ScriptedBackend
    from gymrl.evaluate import run_episodes, summarise
    from gymrl.make import make_env, make_reward

    reward = make_reward("router", {"spec": "cost+outcome"}).frozen()
    records = run_episodes(lambda: make_env("router", reward=reward, split=split),
                           ScriptedBackend("strongest"), episodes=episodes, seed=0)
    return summarise(records, group_by=())["overall"]


def verdict(change: dict[str, Any], strongest: dict[str, Any]) -> dict[str, bool]:
    after = change.get("cost_per_correct_usd_after", float("inf"))
    return {
        "reward_up_2se": bool(change["significant"]),
        "accuracy_not_lower": change["accuracy_after"] >= change["accuracy_before"],
        "cost_per_correct_below_start": after < change["cost_per_correct_usd_before"],
        "cost_per_correct_below_strongest": after < strongest["cost_per_correct_usd"],
    }


def run_seed(seed: int, episodes: int, work: Path, extra: list[str], keep_dir: Path
             ) -> dict[str, Any]:
    run_dir = work / f"seed-{seed}"
    if run_dir.exists():
        shutil.rmtree(run_dir)
    cmd = [sys.executable, "-m", "gymrl", "train", "env=router", "reward=cost+outcome",
           f"seed={seed}", f"eval.episodes={episodes}", f"output_dir={run_dir}",
           "progress=false", *extra]
    peak, wall = peak_rss(cmd)
    summary = json.loads((run_dir / "summary.json").read_text())
    keep_dir.mkdir(parents=True, exist_ok=True)
    for name in KEEP:
        if (run_dir / name).exists():
            shutil.copy2(run_dir / name, keep_dir / name)
    return {"seed": seed, "wall_s": wall, "peak_rss_gib": round(peak, 2),
            "change": summary["change"],
            "start": summary["start"], "end": summary["end"]}


def plot(report: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    seeds = report["seeds"]
    labels = [f"seed {s['seed']}" for s in seeds]
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.6))
    panels = (("reward", "composite reward (cost+outcome)"), ("accuracy", "accuracy"),
              ("cost_per_correct_usd", "cost per correct answer (USD)"))
    x = range(len(seeds))

    def finite(v: float) -> float:  # no correct answer: cost per correct is inf
        return v if v != float("inf") else float("nan")

    for ax, (key, title) in zip(axes, panels, strict=True):
        before = [finite(s["change"][f"{key}_before"]) for s in seeds]
        after = [finite(s["change"][f"{key}_after"]) for s in seeds]
        ax.bar([i - 0.2 for i in x], before, 0.4, label="start (after SFT)")
        ax.bar([i + 0.2 for i in x], after, 0.4, label="trained")
        if key == "reward":
            ax.errorbar([i + 0.2 for i in x], after,
                        yerr=[2 * s["change"]["reward_diff_stderr"] for s in seeds],
                        fmt="none", color="black", capsize=3, label="±2 SE of the difference")
        strongest = report["strongest"].get(key)
        if strongest is not None and key != "reward":
            ax.axhline(strongest, color="gray", linestyle="--", label="scripted:strongest")
        ax.set_xticks(list(x), labels)
        ax.set_title(title, fontsize=10)
    axes[0].legend(fontsize=7)
    axes[2].legend(fontsize=7)
    fig.suptitle(f"gymrl train env=router reward=cost+outcome, {report['episodes']} held-out "
                 "tasks per evaluation", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--episodes", type=int, default=200, help="held-out tasks per eval")
    parser.add_argument("--work", type=Path, default=Path("runs/router_learning"))
    parser.add_argument("--output", type=Path, default=ROOT / "results" / "router_learning.json")
    parser.add_argument("--no-plot", action="store_true")
    parser.add_argument("overrides", nargs="*", help="extra gymrl train overrides (after --)")
    args = parser.parse_args(argv)
    strongest = strongest_on(args.episodes)
    report: dict[str, Any] = {
        "command": "gymrl train env=router reward=cost+outcome seed=S "
                   f"eval.episodes={args.episodes} " + " ".join(args.overrides),
        "env_recipe": env_recipe("router"),  # what gymrl train adds under the overrides
        "episodes": args.episodes, "strongest": strongest, "seeds": [],
        "versions": versions()}
    keep_root = args.output.with_suffix("")
    if args.output.is_file():  # seeds measured earlier with the same command are kept
        earlier = json.loads(args.output.read_text())
        if earlier.get("command") == report["command"]:
            report["seeds"] = [s for s in earlier["seeds"] if s["seed"] not in args.seeds]
    for seed in args.seeds:
        row = run_seed(seed, args.episodes, args.work, args.overrides,
                       keep_root / f"seed-{seed}")
        row["checks"] = verdict(row["change"], strongest)
        report["seeds"] = sorted([*report["seeds"], row], key=lambda s: s["seed"])
        report["all_pass"] = all(all(s["checks"].values()) for s in report["seeds"])
        atomic_write_json(args.output, report)  # after every seed: a stop loses nothing
        c = row["change"]
        print(f"seed {seed}: reward {c['reward_before']:+.3f} -> {c['reward_after']:+.3f} "
              f"(diff {c['reward_diff']:+.3f} ± {c['reward_diff_stderr']:.3f}), accuracy "
              f"{c['accuracy_before']:.3f} -> {c['accuracy_after']:.3f}, cost/correct "
              f"${c['cost_per_correct_usd_before']:.2e} -> ${c['cost_per_correct_usd_after']:.2e}"
              f" (strongest ${strongest['cost_per_correct_usd']:.2e}), {row['wall_s']:.0f} s; "
              f"checks {row['checks']}", flush=True)
    if not args.no_plot:
        plot(report, args.output.with_suffix(".png"))
    return report


if __name__ == "__main__":
    main()
