"""Draw a diagram spec and the hidden intent side by side, as a PNG (matplotlib, imported here).

Each panel is a toy chart drawn as its spec says: chart type, series (single, grouped or
stacked), axis scales, palette, data labels, style; ``layout`` is shown in the title (a
multi-panel layout would hide the comparison). The toy data is seeded, so the same spec always
looks the same, and both panels use the same data.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

PALETTES = {"viridis": "viridis", "grayscale": "Greys", "colorblind": "tab10",
            "pastel": "Pastel1", "vivid": "Set1"}


def _colours(plt, palette: str, n: int) -> list:
    cmap = plt.get_cmap(PALETTES.get(palette, "tab10"))
    if palette in ("viridis", "grayscale"):
        return [cmap(x) for x in np.linspace(0.35, 0.9, n)]
    return [cmap(i) for i in range(n)]


def _draw(ax, plt, spec: dict[str, str], rng: np.random.Generator) -> None:
    kind, series = spec.get("kind", "bar"), spec.get("series", "single")
    n_series = 1 if series == "single" else 3
    colours = _colours(plt, spec.get("palette", "colorblind"), max(n_series, 5))
    x = np.arange(1, 7)
    data = rng.uniform(1, 10, size=(n_series, x.size))
    if kind == "bar":
        bottom = np.zeros(x.size)
        width = 0.8 / (n_series if series == "grouped" else 1)
        for i, row in enumerate(data):
            offset = (i - (n_series - 1) / 2) * width if series == "grouped" else 0
            bars = ax.bar(x + offset, row, width, bottom=bottom, color=colours[i])
            if spec.get("labels") in ("values", "percent"):
                ax.bar_label(bars, fmt="%.0f" if spec["labels"] == "values" else "%.0f%%",
                             fontsize=6)
            if series == "stacked":
                bottom = bottom + row
    elif kind == "line":
        y = np.cumsum(data, axis=1)
        if series == "stacked":
            ax.stackplot(x, y, colors=colours[:n_series])
        else:
            for i, row in enumerate(y):
                ax.plot(x, row, color=colours[i], marker="o")
    elif kind == "scatter":
        for i in range(n_series):
            xs = rng.uniform(1, 100, 40)
            ax.scatter(xs, xs * rng.uniform(0.5, 2) + rng.normal(0, 10, 40), color=colours[i],
                       s=12)
    elif kind == "pie":
        pct = "%1.0f%%" if spec.get("labels") == "percent" else None
        ax.pie(data[0][:5], colors=colours[:5], autopct=pct)
    elif kind == "histogram":
        for i in range(n_series):
            ax.hist(rng.lognormal(2, 0.4, 300), bins=20, color=colours[i], alpha=0.7)
    elif kind == "heatmap":
        ax.imshow(rng.random((6, 6)), cmap=PALETTES.get(spec.get("palette", ""), "viridis"))
    elif kind == "box":
        ax.boxplot([rng.lognormal(1, 0.5, 50) for _ in range(4)])
    for axis, name in ((ax.set_xscale, "x_scale"), (ax.set_yscale, "y_scale")):
        if spec.get(name) == "log" and kind not in ("pie", "heatmap"):
            axis("log")
    if spec.get("x_scale") == "none" and spec.get("y_scale") == "none":
        ax.axis("off")


def render_pair(spec: dict[str, str] | None, intent: dict[str, str], path: str | Path,
                *, seed: int = 0) -> Path:
    """Write ``path`` (PNG): the policy's spec on the left, the hidden intent on the right."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig, axes = plt.subplots(1, 2, figsize=(9, 4))
    for ax, title, chosen in ((axes[0], "policy's spec", spec or {}),
                              (axes[1], "hidden intent", intent)):
        if chosen.get("style") == "dark":
            ax.set_facecolor("#222222")
        if not chosen:
            ax.text(0.5, 0.5, "no spec", ha="center", va="center")
            ax.axis("off")
        else:
            _draw(ax, plt, chosen, np.random.default_rng(seed))
        right = sum(chosen.get(k) == v for k, v in intent.items())
        match = (f"{right}/{len(intent)} attributes match the intent" if chosen is not intent
                 else "what the user wanted")
        ax.set_title(f"{title} ({chosen.get('layout', '-')} layout, "
                     f"{chosen.get('style', '-')} style)\n{match}", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path
