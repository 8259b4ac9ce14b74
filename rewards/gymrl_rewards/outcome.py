"""``outcome``: is the final answer right? Exact match or token F1, SQuAD-normalised."""

from __future__ import annotations

from gymrl import ConfigError, Episode, Reward, Score
from gymrl.qa import exact_match, f1_score

METRICS = ("em", "f1")


class OutcomeReward(Reward):
    """Compares ``episode.facts["answer"]`` with the task's gold answers.

    ``metric="em"`` (default) gives 1 for an exact match after normalisation (lower case, no
    punctuation or articles, single spaces) and 0 otherwise; ``metric="f1"`` gives the token
    F1 with the best gold answer. Both are reported as diagnostics. Range: [0, 1]. A missing
    answer scores 0.
    """

    name = "outcome"
    range = (0.0, 1.0)

    def __init__(self, metric: str = "em") -> None:
        if metric not in METRICS:
            raise ConfigError(f"outcome metric {metric!r}; allowed: {', '.join(METRICS)}")
        self.metric = metric

    def score(self, episode: Episode) -> Score:
        answer = episode.facts.get("answer")
        gold = episode.task.answer
        if not answer or gold is None:
            return Score(total=0.0, diagnostics={"em": 0.0, "f1": 0.0})
        em, f1 = exact_match(str(answer), gold), f1_score(str(answer), gold)
        return Score(total=em if self.metric == "em" else f1, diagnostics={"em": em, "f1": f1})
