"""``gymrl plot RUN_DIR``: learning curves from ``metrics.jsonl`` to ``curves.png``."""

from __future__ import annotations

import json
from pathlib import Path

PANELS = (
    ("reward", ("reward", "eval/reward"), "reward (train batch, held-out greedy)"),
    ("components", ("reward/outcome", "reward/cost", "reward/format"), "reward components"),
    ("accuracy", ("env/accuracy", "eval/accuracy"), "accuracy"),
    ("cost", ("env/cost_usd", "eval/cost_usd"), "cost per episode (USD)"),
    ("loss", ("loss/policy", "kl", "entropy"), "loss, KL, entropy"),
    ("groups", ("groups/flat_fraction", "clip_fraction"), "flat groups, clipped tokens"),
)


def plot_run(run_dir: str | Path) -> Path | None:
    """Draw every panel that has data; return the PNG path (None without matplotlib)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    run_dir = Path(run_dir)
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()
            if line.strip()]
    panels = [(title, [k for k in keys if any(k in r for r in rows)], label)
              for title, keys, label in PANELS]
    panels = [p for p in panels if p[1]]
    fig, axes = plt.subplots(len(panels), 1, figsize=(8, 2.6 * len(panels)), squeeze=False)
    for ax, (_, keys, label) in zip(axes[:, 0], panels, strict=True):
        for key in keys:
            points = [(r["step"], r[key]) for r in rows if key in r and r[key] is not None]
            if points:
                xs, ys = zip(*points, strict=True)
                ax.plot(xs, ys, marker="o" if key.startswith("eval/") else None, label=key)
        ax.set_title(label, fontsize=10)
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
    axes[-1, 0].set_xlabel("step")
    fig.tight_layout()
    out = run_dir / "curves.png"
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out
