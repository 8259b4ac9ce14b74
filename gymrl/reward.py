"""The reward contract: an object with a ``name`` that turns an Episode into a number."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from gymrl.episode import Episode


@dataclass
class Score:
    """A reward's verdict on one episode.

    Attributes:
        total: the episode's reward.
        per_turn: optional dense values, one per policy turn (information gain, intrinsic
            rewards); for a dense reward they sum to ``total``.
        components: for composites, the value of each component reward.
        diagnostics: anything that explains the number (exact match and F1, percentiles, ...).
    """

    total: float
    per_turn: list[float] | None = None
    components: dict[str, float] = field(default_factory=dict)
    diagnostics: dict[str, Any] = field(default_factory=dict)


class Reward:
    """Base class for rewards. Subclasses set ``name`` and ``range`` and implement ``score``.

    ``range`` is the closed interval every score lies in; tests prove both ends are reached.
    Stateful rewards (rolling statistics) override ``state_dict``/``load_state_dict`` so that
    checkpoints restore them exactly.
    """

    name: str = ""
    range: tuple[float, float] = (-math.inf, math.inf)

    def __call__(self, episode: Episode) -> Score:
        result = self.score(episode)
        if isinstance(result, Score):
            return result
        return Score(total=float(result))

    def score(self, episode: Episode) -> float | Score:
        raise NotImplementedError

    def frozen(self) -> Reward:
        """This reward with its state pinned, for evaluation.

        Held-out evaluations at different steps must score alike, so a reward whose state moves
        (a rolling normaliser) returns a copy whose state stays at a fixed, documented point;
        a stateless reward returns itself.
        """
        return self

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state:
            raise ValueError(f"reward {self.name!r} keeps no state, got {sorted(state)}")
