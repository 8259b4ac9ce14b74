"""``cost``: money spent on routed calls, scaled to [-1, 0]."""

from __future__ import annotations

import math
from bisect import bisect_left, insort
from collections import deque
from typing import Any

from gymrl import ConfigError, Episode, Reward, Score
from gymrl.qa import exact_match

CHARGES = ("correct", "always")


def percentile(ascending: list[float], percent: float) -> float:
    """The ``percent`` percentile of an ascending list, interpolated linearly (numpy's default)."""
    position = (len(ascending) - 1) * percent / 100
    below = math.floor(position)
    above = min(below + 1, len(ascending) - 1)
    return ascending[below] + (ascending[above] - ascending[below]) * (position - below)


class CostReward(Reward):
    """Minus the episode's cost, scaled to [-1, 0]: ``-clip((cost - lo) / (hi - lo), 0, 1)``.

    Raw cost is tokens x price, summed over the episode's calls. Two choices, both defaults
    measured on the router env with SmolLM2 (README, "Where training stands (measured)"):

    - ``charge="correct"`` (default): the cost counts against a *correct* final answer only,
      so the reward ``cost+outcome`` is ``1 - scaled cost`` for a right answer and 0 for a
      wrong one: the value of an answer net of what it cost, the quantity behind "cost per
      correct answer". Correct means an exact match with a gold answer (``outcome``'s
      default metric); an episode whose task has no gold answer always pays. With
      ``charge="always"`` every episode pays, as in Router-R1. Then a task the policy cannot
      yet solve differs between rollouts only in cost, and those groups teach "call the
      cheapest expert" to every domain at once: trained that way the router fell from 0.48 to
      0.28 (rolling bounds, group scaling) or 0.345 (fixed bounds, batch scaling) accuracy,
      onto the cheapest expert; with ``charge="correct"`` it rose to 0.535.
    - ``rolling=False`` (default): fixed bounds ``lo = 0``, ``hi = reference_usd``.
      ``rolling=True`` is Router-R1's normalisation: ``lo``/``hi`` are the ``low``/``high``
      percentiles of the last ``window`` episodes' costs (fixed bounds until ``warmup`` costs
      have been seen); as the policy gets cheaper the window rescales ever smaller cost
      differences to the whole [-1, 0], so it keeps pushing toward the cheapest expert. The
      window is state, saved and restored with checkpoints; a sorted copy is kept in step with
      it, so each episode costs a bisect rather than a sort.

    A free episode always scores 0. Range: [-1, 0].

    ``frozen()`` (used by held-out evaluation) is a copy that never records: every episode is
    scored against the fixed bounds ``[0, reference_usd]``, so evaluations at different training
    steps, and of different policies, are comparable.
    """

    name = "cost"
    range = (-1.0, 0.0)

    def __init__(self, window: int = 1000, low: float = 5.0, high: float = 95.0,
                 warmup: int = 32, reference_usd: float = 2e-4, rolling: bool = False,
                 charge: str = "correct") -> None:
        if window < 1 or not 0 <= low < high <= 100 or reference_usd <= 0 or warmup < 1:
            raise ValueError("cost needs window >= 1, warmup >= 1, 0 <= low < high <= 100 and "
                             f"reference_usd > 0; got window={window}, low={low}, "
                             f"high={high}, warmup={warmup}, reference_usd={reference_usd}")
        if charge not in CHARGES:
            raise ConfigError(f"cost charge {charge!r}; allowed: {', '.join(CHARGES)}")
        self.window, self.low, self.high = window, low, high
        self.warmup, self.reference_usd = warmup, reference_usd
        self.rolling, self.charge = bool(rolling), charge
        self.history: deque[float] = deque(maxlen=window)
        self._sorted: list[float] = []  # the window, ascending
        self._frozen = False

    def frozen(self) -> CostReward:
        copy = CostReward(window=self.window, low=self.low, high=self.high, warmup=self.warmup,
                          reference_usd=self.reference_usd, rolling=self.rolling,
                          charge=self.charge)
        copy._frozen = True
        return copy

    def _record(self, cost: float) -> None:
        if self._frozen or not self.rolling:
            return
        if len(self.history) == self.window:
            del self._sorted[bisect_left(self._sorted, self.history[0])]
        self.history.append(cost)
        insort(self._sorted, cost)

    def bounds(self) -> tuple[float, float]:
        """The current (lo, hi) normalisation bounds."""
        if not self.rolling or self._frozen or len(self.history) < self.warmup:
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
        charged = self.charge == "always" or self._correct(episode)
        return Score(total=value if charged else 0.0,
                     diagnostics={"cost_usd": cost, "lo": lo, "hi": hi,
                                  "charged": float(charged)})

    @staticmethod
    def _correct(episode: Episode) -> bool:
        """Whether the final answer exactly matches a gold answer (``outcome``'s default
        metric). A task with no gold answer cannot be checked, so its episodes always pay."""
        answer, gold = episode.facts.get("answer"), episode.task.answer
        if gold is None:
            return True
        return bool(answer) and exact_match(str(answer), gold) == 1.0

    def state_dict(self) -> dict[str, Any]:
        return {"history": list(self.history)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.history = deque((float(c) for c in state.get("history", [])), maxlen=self.window)
        self._sorted = sorted(self.history)
