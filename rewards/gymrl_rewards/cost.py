"""``cost``: money spent on routed calls, normalised by a rolling percentile window."""

from __future__ import annotations

import math
from bisect import bisect_left, insort
from collections import deque
from typing import Any

from gymrl import Episode, Reward, Score


def percentile(ascending: list[float], percent: float) -> float:
    """The ``percent`` percentile of an ascending list, interpolated linearly (numpy's default)."""
    position = (len(ascending) - 1) * percent / 100
    below = math.floor(position)
    above = min(below + 1, len(ascending) - 1)
    return ascending[below] + (ascending[above] - ascending[below]) * (position - below)


class CostReward(Reward):
    """Minus the episode's cost, rescaled to [-1, 0] against recently seen costs.

    As in Router-R1, raw cost (tokens x price, summed over the episode's calls) is normalised by
    the distribution of recent costs: with ``lo``/``hi`` the ``low``/``high`` percentiles of the
    last ``window`` episodes, the reward is ``-clip((cost - lo) / (hi - lo), 0, 1)``. Until
    ``warmup`` costs have been seen, ``lo = 0`` and ``hi = reference_usd``. A free episode
    always scores 0. The window is state: it is saved and restored with checkpoints.
    Range: [-1, 0].

    A sorted copy of the window is kept in step with it, so each episode costs a bisect rather
    than a sort.

    ``frozen()`` (used by held-out evaluation) is a copy that never records: every episode is
    scored against the fixed bounds ``[0, reference_usd]``, so evaluations at different training
    steps, and of different policies, are comparable.
    """

    name = "cost"
    range = (-1.0, 0.0)

    def __init__(self, window: int = 1000, low: float = 5.0, high: float = 95.0,
                 warmup: int = 32, reference_usd: float = 2e-4) -> None:
        if window < 1 or not 0 <= low < high <= 100 or reference_usd <= 0 or warmup < 1:
            raise ValueError("cost needs window >= 1, warmup >= 1, 0 <= low < high <= 100 and "
                             f"reference_usd > 0; got window={window}, low={low}, "
                             f"high={high}, warmup={warmup}, reference_usd={reference_usd}")
        self.window, self.low, self.high = window, low, high
        self.warmup, self.reference_usd = warmup, reference_usd
        self.history: deque[float] = deque(maxlen=window)
        self._sorted: list[float] = []  # the window, ascending
        self._frozen = False

    def frozen(self) -> CostReward:
        copy = CostReward(window=self.window, low=self.low, high=self.high, warmup=self.warmup,
                          reference_usd=self.reference_usd)
        copy._frozen = True
        return copy

    def _record(self, cost: float) -> None:
        if self._frozen:
            return
        if len(self.history) == self.window:
            del self._sorted[bisect_left(self._sorted, self.history[0])]
        self.history.append(cost)
        insort(self._sorted, cost)

    def bounds(self) -> tuple[float, float]:
        """The current (lo, hi) normalisation bounds."""
        if len(self.history) < self.warmup:
            return 0.0, self.reference_usd
        lo, hi = percentile(self._sorted, self.low), percentile(self._sorted, self.high)
        if hi - lo < 1e-12:
            hi = lo + max(abs(lo), 1e-9)
        return float(lo), float(hi)

    def score(self, episode: Episode) -> Score:
        cost = float(sum(c.cost_usd for c in episode.tool_calls))
        if not math.isfinite(cost) or cost < 0:
            raise ValueError(f"episode {episode.task.id} reports cost {cost!r}; costs must be "
                             "finite and >= 0")
        lo, hi = self.bounds()
        value = 0.0 if cost <= 0 else -min(max((cost - lo) / (hi - lo), 0.0), 1.0)
        self._record(cost)
        return Score(total=value, diagnostics={"cost_usd": cost, "lo": lo, "hi": hi})

    def state_dict(self) -> dict[str, Any]:
        return {"history": list(self.history)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.history = deque((float(c) for c in state.get("history", [])), maxlen=self.window)
        self._sorted = sorted(self.history)
