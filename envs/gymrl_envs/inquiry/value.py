"""The value of asking: what the env's configured reward pays for a spec and charges for a
question, and the exact expected change of that pay from one answer.

A scripted policy reads the reward's terms, never the hidden intent. The terms it models:

- ``spec_outcome``: the share of attributes right (``metric="share"``) or the whole spec
  right (``"exact"``);
- ``outcome`` with ``metric="em"``: the whole spec right (the env's answer is the canonical
  spec, so an exact match is the exact intent);
- ``info_gain``: bits of entropy reduction (``unit="fraction"``: over the opening entropy);
- ``question_cost``: ``per_question`` per question until ``cap`` is spent.

Each with its weight in the composed reward (``nous`` is a composite too, walked the same
way). Other terms, and ``outcome``'s token F1, which no belief summary gives exactly, are left
out: ``format`` pays the same whether a well-formed turn asks or specifies.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from typing import Any

import numpy as np

from gymrl import CompositeReward, compose
from gymrl_envs.inquiry.space import IntentSpace, expected_information_gain

# Values closer than this are equal up to rounding (sums of products of probabilities).
VALUE_TOLERANCE = 1e-12


@dataclass(frozen=True)
class Payoff:
    """The terms of a reward that a spec or a question moves, weights included.

    Attributes:
        share: paid per unit of the share of attributes the spec gets right.
        exact: paid when the spec is the exact intent.
        per_bit: paid per bit of entropy reduction.
        per_question: charged per question, until ``cap`` is spent.
        cap: the most the questions of an episode are charged in all.
    """

    share: float = 0.0
    exact: float = 0.0
    per_bit: float = 0.0
    per_question: float = 0.0
    cap: float = 0.0

    def question_charge(self, asked: int) -> float:
        """What the next question costs after ``asked`` questions (0 once the cap is spent)."""
        spent = min(self.per_question * asked, self.cap)
        return max(0.0, min(self.per_question, self.cap - spent))


def _terms(reward: Any, weight: float = 1.0) -> list[tuple[Any, float]]:
    """The leaf rewards of a (possibly nested) composite, each with its total weight."""
    parts = getattr(reward, "parts", None)
    if isinstance(parts, CompositeReward):  # a reward that wraps a composite, such as nous
        return _terms(parts, weight)
    if isinstance(reward, CompositeReward):
        return [t for _, sub, w, _ in reward.parts for t in _terms(sub, weight * w)]
    return [(reward, weight)]


def payoff(reward: Any, initial_entropy_bits: float) -> Payoff:
    """The terms of ``reward`` (a composed reward) that asking and specifying move.

    Args:
        reward: the env's reward (``env.reward_fn``).
        initial_entropy_bits: the entropy after the opening request, which
            ``info_gain(unit="fraction")`` divides by.
    """
    share = exact = per_bit = per_question = cap = 0.0
    for term, weight in _terms(reward):
        name = getattr(term, "name", None)
        if name == "spec_outcome":
            if getattr(term, "metric", "share") == "exact":
                exact += weight
            else:
                share += weight
        elif name == "outcome" and getattr(term, "metric", "em") == "em":
            exact += weight
        elif name == "info_gain":
            if getattr(term, "unit", "bits") == "bits":
                per_bit += weight
            elif initial_entropy_bits > 0:
                per_bit += weight / initial_entropy_bits
        elif name == "question_cost":
            # Two question costs would need two caps; one is all any shipped reward has.
            per_question += weight * term.per_question
            cap += weight * term.cap
    return Payoff(share=share, exact=exact, per_bit=per_bit, per_question=per_question,
                  cap=cap)


def env_payoff(env: Any) -> Payoff:
    """The payoff of the env's configured reward (its registered default if none is set)."""
    from gymrl_envs.inquiry.env import DEFAULT_REWARD  # env imports this module's users

    reward = env.reward_fn if env.reward_fn is not None else compose(DEFAULT_REWARD)
    return payoff(reward, env.episode.facts["initial_entropy_bits"])


def spec_value(space: IntentSpace, belief: np.ndarray, pay: Payoff) -> float:
    """The expected outcome pay of the MAP spec under ``belief``."""
    index = np.unravel_index(int(np.argmax(belief)), space.shape)
    right = [space.marginal(belief, name)[index[i]] for i, name in enumerate(space.names)]
    return pay.share * float(np.mean(right)) + pay.exact * float(belief[index])


@cache
def _one_hot(shape: tuple[int, ...]) -> np.ndarray:
    """``(prod(shape), sum(shape))``: row ``j`` (a flat index into ``shape``) holds a 1 in
    each axis's block, at that axis's coordinate of ``j``."""
    index = np.indices(shape).reshape(len(shape), -1)
    rows = np.arange(index.shape[1])
    out = np.zeros((index.shape[1], sum(shape)))
    for axis, offset in enumerate(np.cumsum((0, *shape[:-1]))):
        out[rows, offset + index[axis]] = 1.0
    out.setflags(write=False)  # cached: shared by every call
    return out


def pair_marginals(belief: np.ndarray) -> np.ndarray:
    """Every two-attribute marginal at once: block ``(a, c)`` of the ``(sum n, sum n)`` result
    is ``P(attribute a = v, attribute c = u)`` (block ``(a, a)`` is ``a``'s marginal on the
    diagonal).

    The belief as a matrix, the first half of the attributes by the second, sums each pair
    in one small product with one-hot codes of the halves (numpy's sum over six of eight
    axes is some twenty times slower).
    """
    if belief.ndim == 1:
        return np.diag(belief)
    half = belief.ndim // 2
    first, second = _one_hot(belief.shape[:half]), _one_hot(belief.shape[half:])
    matrix = belief.reshape(first.shape[0], second.shape[0])
    cross = first.T @ matrix @ second
    return np.block([[(first * matrix.sum(axis=1)[:, None]).T @ first, cross],
                     [cross.T, (second * matrix.sum(axis=0)[:, None]).T @ second]])


def question_values(space: IntentSpace, belief: np.ndarray,
                    likelihoods: Mapping[str, np.ndarray], pay: Payoff) -> dict[str, float]:
    """The exact expected change in pay from the answer to a question about each attribute,
    before the question's charge.

    After answer ``o`` the policy gives the MAP spec of the posterior ``b_o``; the value is
    ``sum_o P(o) V(b_o) - V(b)`` with ``V`` the expected outcome pay of the MAP spec
    (:func:`spec_value`), plus the information gain's pay. ``P(o) V(b_o)`` is ``V`` of the
    unnormalised posterior ``b * L[o]``, which multiplies each slice ``attribute = v`` by one
    number: its MAP is the best of the slices' own maxima so scaled, and its marginals are
    ``L[o]`` times the belief's pair marginals with the asked attribute. No posterior is
    formed. Under the MAP spec rather than the Bayes-optimal one, an answer can in principle
    lower the expected share (the MAP joint intent need not hold every most probable value),
    so a value can be negative: such a question is not worth asking.

    Args:
        likelihoods: per attribute, ``L[o, v] = P(answer o | attribute = v)``, columns summing
            to 1.
    """
    pairs = pair_marginals(belief)
    offsets = np.cumsum((0, *space.shape[:-1]))
    marginals = [pairs[o:o + n, o:o + n].diagonal()
                 for o, n in zip(offsets, space.shape, strict=True)]
    now_index = np.unravel_index(int(np.argmax(belief)), space.shape)
    right_now = [m[i] for m, i in zip(marginals, now_index, strict=True)]
    now = pay.share * float(np.mean(right_now)) + pay.exact * float(belief[now_index])
    out = {}
    for attribute, likelihood in likelihoods.items():
        axis, n = space.axis[attribute], likelihood.shape[1]
        rest = tuple(size for i, size in enumerate(space.shape) if i != axis)
        slices = np.moveaxis(belief, axis, 0).reshape(n, -1)
        best, where = slices.max(axis=1), slices.argmax(axis=1)
        # The full index of each slice's maximum; ties between slices go to the lowest flat
        # index, as np.argmax over the whole posterior would break them.
        index = list(np.unravel_index(where, rest))
        index.insert(axis, np.arange(n))
        flat = np.ravel_multi_index(index, space.shape)
        scores = likelihood * best  # (answers, values): each answer's slice maxima
        top = scores == scores.max(axis=1, keepdims=True)
        chosen = np.where(top, flat, flat.max() + 1).argmin(axis=1)  # the MAP's slice per answer
        answers = np.arange(likelihood.shape[0])
        after = pay.exact * float(scores[answers, chosen].sum())
        if pay.share:
            # Column of each attribute's MAP value after each answer, in the pair blocks.
            columns = np.stack([offsets[c] + index[c][chosen] for c in range(belief.ndim)],
                               axis=1)
            joint = likelihood @ pairs[offsets[axis]:offsets[axis] + n]  # (answers, sum n)
            after += pay.share * float(joint[answers[:, None], columns].sum()) / belief.ndim
        gain = 0.0
        if pay.per_bit:
            gain = pay.per_bit * expected_information_gain(marginals[axis], likelihood)
        out[attribute] = after - now + gain
    return out


def value_of_asking(space: IntentSpace, belief: np.ndarray, attribute: str,
                    likelihood: np.ndarray, pay: Payoff) -> float:
    """:func:`question_values` of one attribute."""
    return question_values(space, belief, {attribute: likelihood}, pay)[attribute]
