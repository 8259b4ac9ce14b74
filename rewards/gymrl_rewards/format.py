"""``format``: the Router-R1 format reward, 0 for a clean episode and a penalty otherwise."""

from __future__ import annotations

from gymrl import Episode, Reward, Score


class FormatReward(Reward):
    """0 if every policy turn follows the env's tag grammar, else ``penalty``.

    The env parses each turn (it must, to act on it) and records violations as facts: unclosed,
    nested or stray tags, a missing or second action, text after ``</answer>``, no answer
    before the turn limit. This reward judges those facts. Range: ``[penalty, 0]``, -1 to 0 by
    default, as in Router-R1.
    """

    name = "format"

    def __init__(self, penalty: float = -1.0) -> None:
        if penalty > 0:
            raise ValueError(f"format penalty must be <= 0, got {penalty}")
        self.penalty = float(penalty)
        self.range = (self.penalty, 0.0)

    def score(self, episode: Episode) -> Score:
        violations = episode.format_violations()
        return Score(total=self.penalty if violations else 0.0,
                     diagnostics={"violations": violations[:8]} if violations else {})
