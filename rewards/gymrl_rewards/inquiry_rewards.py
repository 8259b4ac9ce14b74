"""Rewards of intent inquiry (Nous): information gain, spec outcome, question cost, and ``nous``.

They judge facts the inquiry env records: the belief entropy before and after every policy
turn (``entropy_before_bits``/``entropy_bits``), the opening entropy
(``initial_entropy_bits``), the final ``spec`` and the hidden intent, and which turns asked.
An episode without those facts is not applicable (0).
"""

from __future__ import annotations

import math
from typing import Any

from gymrl import ConfigError, Episode, Reward, Score, compose

UNITS = ("bits", "fraction")
METRICS = ("share", "exact")


class InfoGainReward(Reward):
    """Dense information gain: per policy turn, belief entropy before minus after.

    The per-turn values sum exactly to the episode's entropy reduction, ``H(after the opening
    request) - H(final)``. ``unit="bits"`` (default) gives bits; ``unit="fraction"`` divides
    by the entropy left after the opening request, so the total is the share of the user's
    initial uncertainty resolved (1 when the belief ends on one intent; 0 everywhere when the
    opening request left no uncertainty). A noisy answer that contradicts the belief can raise
    its entropy, so single turns, and in principle totals, can be negative. Range: bits
    ``(-inf, inf)`` (in fact within +-log2 of the domain's number of valid intents);
    fraction ``(-inf, 1]``.
    """

    name = "info_gain"

    def __init__(self, unit: str = "bits") -> None:
        if unit not in UNITS:
            raise ConfigError(f"info_gain unit {unit!r}; allowed: {', '.join(UNITS)}")
        self.unit = unit
        self.range = (-math.inf, math.inf) if unit == "bits" else (-math.inf, 1.0)

    def score(self, episode: Episode) -> Score:
        turns = episode.policy_turns
        if "initial_entropy_bits" not in episode.facts:
            return Score(total=0.0, per_turn=[0.0] * len(turns),
                         diagnostics={"applicable": False})
        gains = [t.facts.get("entropy_before_bits", 0.0) - t.facts.get("entropy_bits", 0.0)
                 for t in turns]
        initial = float(episode.facts["initial_entropy_bits"])
        if self.unit == "fraction":
            gains = [g / initial if initial > 0 else 0.0 for g in gains]
        return Score(total=math.fsum(gains), per_turn=gains,
                     diagnostics={"bits": initial - float(episode.facts["entropy_bits"]),
                                  "initial_entropy_bits": initial})


class SpecOutcomeReward(Reward):
    """How much of the final spec matches the hidden intent.

    ``metric="share"`` (default) gives the share of attributes whose value is right;
    ``metric="exact"`` gives 1 only when every attribute is right. Both are reported as
    diagnostics. A missing spec scores 0. Range: [0, 1].
    """

    name = "spec_outcome"
    range = (0.0, 1.0)

    def __init__(self, metric: str = "share") -> None:
        if metric not in METRICS:
            raise ConfigError(f"spec_outcome metric {metric!r}; allowed: {', '.join(METRICS)}")
        self.metric = metric

    def score(self, episode: Episode) -> Score:
        intent = episode.task.hidden.get("intent")
        if not intent:
            return Score(total=0.0, diagnostics={"applicable": False})
        spec = episode.facts.get("spec") or {}
        share = sum(spec.get(name) == value for name, value in intent.items()) / len(intent)
        exact = float(share == 1.0)
        return Score(total=share if self.metric == "share" else exact,
                     diagnostics={"share": share, "exact": exact})


class QuestionCostReward(Reward):
    """Asking is not free: ``-per_question`` on every turn that asked, until ``cap`` is spent.

    Dense: the per-turn values sum to the total, ``-min(per_question * questions, cap)``.
    Range: ``[-cap, 0]``, -0.1 to 0 by default.

    The default price, 0.01 a question (a tenth of one attribute of eight right, 0.125), is
    below what a well-chosen question is worth, and low enough that a vague or unreliable
    user's answers still pay for asking again: the scripted oracle, which asks only questions
    worth their charge, then asks novices more questions than experts (``gymrl eval
    env=inquiry policy=scripted:oracle episodes=200 seed=0``: 6.2 expert / 9.4 intermediate /
    7.6 novice questions). At 0.02 it asked novices fewer (5.8 / 6.3 / 4.5: a group answer
    such as "something warm" was not worth 0.02 any more) and left them at accuracy 0.75
    instead of 0.79. The cap is ten questions, so the ``stall`` double spends it within the
    default twelve turns and the env's range stays tight.
    """

    name = "question_cost"

    def __init__(self, per_question: float = 0.01, cap: float = 0.1) -> None:
        if per_question < 0 or cap < 0:
            raise ConfigError(f"question_cost needs per_question >= 0 and cap >= 0, got "
                              f"per_question={per_question}, cap={cap}")
        self.per_question, self.cap = float(per_question), float(cap)
        self.range = (-self.cap, 0.0)

    def score(self, episode: Episode) -> Score:
        per_turn, spent = [], 0.0
        for turn in episode.policy_turns:
            cost = 0.0
            if turn.facts.get("question") is not None:
                cost = max(0.0, min(self.per_question, self.cap - spent))
                spent += cost
            per_turn.append(-cost)
        asked = sum(t.facts.get("question") is not None for t in episode.policy_turns)
        return Score(total=-spent, per_turn=per_turn, diagnostics={"questions": asked})


class NousReward(Reward):
    """The Nous-style composite: spec quality, information gained, minus asking and format.

    ``spec_outcome + gain_weight * info_gain(unit="fraction") + question_cost + format``:
    the components are the registered rewards of those names (options per component), so a
    plugin that replaces one changes this composite too; every component is reported and the
    dense ones (information gain, question cost) reach the learner per turn. Nothing is
    clipped: ``info_gain`` is exact, and its per-turn values sum to its total.

    Range: ``(-inf, 1 + gain_weight]``, the sum of the components' ranges. Those ends are
    bounds, not reached, so ``gymrl check env=inquiry reward=nous`` reports them not reached,
    and this is not the inquiry env's default (that is ``spec_outcome+question_cost+format``,
    range ``[-1.1, 1]``, both ends reached by scripted policies). Neither end can be made
    tight honestly. The top: information is bought with questions (after the opening request
    only answers move the belief), so ``1 + gain_weight`` would need the belief narrowed to
    one intent without a question, which cannot happen; the best episode's value depends on
    how few questions the tasks need, a fact about the tasks, not a bound the reward can
    state (the oracle's best episodes score about 1.4; a policy that knows the intent and
    asks nothing scores 1). The bottom: a misleading answer can leave the belief wider than
    the opening request did, by more than the opening entropy when that was small, so the
    fraction has no lower bound.
    """

    name = "nous"

    def __init__(self, gain_weight: float = 0.5, spec_outcome: dict[str, Any] | None = None,
                 info_gain: dict[str, Any] | None = None,
                 question_cost: dict[str, Any] | None = None,
                 format: dict[str, Any] | None = None) -> None:  # noqa: A002 - the reward's name
        if gain_weight < 0:
            raise ConfigError(f"nous gain_weight must be >= 0, got {gain_weight}")
        self.gain_weight = gain_weight
        self.parts = compose(
            "spec_outcome+info_gain+question_cost+format",
            weights={"info_gain": gain_weight},
            options={"spec_outcome": spec_outcome or {},
                     "info_gain": {"unit": "fraction", **(info_gain or {})},
                     "question_cost": question_cost or {}, "format": format or {}})
        self.range = self.parts.range

    def score(self, episode: Episode) -> Score:
        return self.parts(episode)
