"""``router_r1``: Router-R1's composite ``(S + F)(1 - alpha) + alpha * C`` as one named reward."""

from __future__ import annotations

from typing import Any

from gymrl import Episode, Reward, Score, compose


class RouterR1Reward(Reward):
    """Outcome S, format F and cost C combined as in Router-R1.

    ``S`` is ``outcome`` in [0, 1], ``F`` is ``format`` in [-1, 0] and ``C`` is ``cost`` in
    [-1, 0]; the components are the registered rewards of those names, so a plugin that
    replaces one changes this composite too. Range: ``[-1, 1 - alpha]``. Every component is
    reported.
    """

    name = "router_r1"

    def __init__(self, alpha: float = 0.2, outcome: dict[str, Any] | None = None,
                 format: dict[str, Any] | None = None,  # noqa: A002 - the reward's name
                 cost: dict[str, Any] | None = None) -> None:
        if not 0.0 <= alpha <= 1.0:
            raise ValueError(f"router_r1 alpha must be in [0, 1], got {alpha}")
        self.alpha = alpha
        self.parts = compose("outcome+format+cost",
                             options={"outcome": outcome or {}, "format": format or {},
                                      # Router-R1's cost: every episode pays, rolling bounds
                                      "cost": {"rolling": True, "charge": "always",
                                               **(cost or {})}})
        ranges = {name: reward.range for name, reward, _, _ in self.parts.parts}
        low = (ranges["outcome"][0] + ranges["format"][0]) * (1 - alpha) + alpha * \
            ranges["cost"][0]
        high = (ranges["outcome"][1] + ranges["format"][1]) * (1 - alpha) + alpha * \
            ranges["cost"][1]
        self.range = (low, high)

    def score(self, episode: Episode) -> Score:
        inner = self.parts(episode)
        s, f, c = (inner.components[k] for k in ("outcome", "format", "cost"))
        total = (s + f) * (1 - self.alpha) + self.alpha * c
        return Score(total=total, components=inner.components, diagnostics=inner.diagnostics)

    def state_dict(self) -> dict[str, Any]:
        return self.parts.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.parts.load_state_dict(state)
