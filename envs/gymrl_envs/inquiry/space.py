"""A structured intent space and an exact Bayesian belief over it.

An intent is one value per attribute. The belief is a normalised numpy array with one axis per
attribute (its shape is the number of values of each), holding the probability of every joint
intent; invalid combinations hold exactly zero. Evidence about one attribute is a likelihood
vector over that attribute's values: the update multiplies the belief by it, broadcast along
the attribute's axis, and renormalises. Nothing is approximated, so the entropy drop of an
update is the exact information gained from that answer.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from gymrl import ConfigError

# Entropies closer than this are the same number up to rounding (an update that leaves the
# belief unchanged renormalises by a sum that may differ from 1 in the last bit).
ENTROPY_TOLERANCE_BITS = 1e-12


@dataclass(frozen=True)
class Attribute:
    """One dimension of the intent space: a name and its finite set of values."""

    name: str
    values: tuple[str, ...]

    def index(self, value: str) -> int:
        """The position of ``value``; a ConfigError names the allowed values."""
        try:
            return self.values.index(value)
        except ValueError:
            raise ConfigError(f"{value!r} is not a value of {self.name!r}; allowed: "
                              f"{', '.join(self.values)}") from None


@dataclass(frozen=True)
class Table:
    """A conditional probability table ``P(attribute | parents)``.

    ``probs`` has one axis per parent (in ``parents`` order) and a last axis over the
    attribute's own values; each row sums to 1 (or is all zero where the parents' combination
    is itself impossible).
    """

    attribute: str
    parents: tuple[str, ...]
    probs: np.ndarray


class IntentSpace:
    """Attributes with finite values and a prior over their joint, as an N-d array.

    Args:
        attributes: the attributes, in axis order.
        prior: an array of shape ``(len(a.values) for a in attributes)``, non-negative with a
            positive sum; it is normalised here.
    """

    def __init__(self, attributes: Sequence[Attribute], prior: np.ndarray) -> None:
        names = [a.name for a in attributes]
        if len(set(names)) != len(names):
            raise ConfigError(f"attribute names must be unique, got {names}")
        shape = tuple(len(a.values) for a in attributes)
        prior = np.asarray(prior, dtype=np.float64)
        if prior.shape != shape:
            raise ConfigError(f"prior shape {prior.shape} does not match the attributes' value "
                              f"counts {shape}")
        if not np.all(np.isfinite(prior)) or prior.min() < 0 or prior.sum() <= 0:
            raise ConfigError("prior must be finite, non-negative and have a positive sum")
        self.attributes = tuple(attributes)
        self.names = tuple(names)
        self.axis = {name: i for i, name in enumerate(names)}
        self.prior = prior / prior.sum()
        self.prior.setflags(write=False)

    @classmethod
    def from_tables(cls, attributes: Sequence[Attribute], tables: Sequence[Table]
                    ) -> IntentSpace:
        """The joint ``prod_i P(a_i | parents_i)`` of a Bayesian network over the attributes."""
        by_name = {a.name: i for i, a in enumerate(attributes)}
        shape = tuple(len(a.values) for a in attributes)
        joint = np.ones(shape)
        for table in tables:
            axes = [by_name[p] for p in table.parents] + [by_name[table.attribute]]
            if sorted(axes) != axes:
                raise ConfigError(f"table of {table.attribute!r}: parents must come before the "
                                  "attribute in axis order")
            view = np.ones(len(shape), dtype=int)
            view[axes] = table.probs.shape
            joint = joint * table.probs.reshape(view)
        return cls(attributes, joint)

    # -- the space ------------------------------------------------------------------------
    @property
    def shape(self) -> tuple[int, ...]:
        return self.prior.shape

    @property
    def size(self) -> int:
        """The number of joint intents, valid or not."""
        return int(self.prior.size)

    @property
    def n_valid(self) -> int:
        """The number of joint intents with positive prior."""
        return int(np.count_nonzero(self.prior))

    def attribute(self, name: str) -> Attribute:
        if name not in self.axis:
            raise ConfigError(f"unknown attribute {name!r}; allowed: {', '.join(self.names)}")
        return self.attributes[self.axis[name]]

    def index_of(self, intent: Mapping[str, str]) -> tuple[int, ...]:
        """The joint index of a full intent (a value for every attribute)."""
        missing = [n for n in self.names if n not in intent]
        if missing:
            raise ConfigError(f"intent lacks attributes {missing}")
        return tuple(a.index(intent[a.name]) for a in self.attributes)

    def intent_at(self, index: Sequence[int]) -> dict[str, str]:
        return {a.name: a.values[int(i)] for a, i in zip(self.attributes, index, strict=True)}

    def sample(self, rng: np.random.Generator, belief: np.ndarray | None = None
               ) -> dict[str, str]:
        """An intent drawn from ``belief`` (the prior by default)."""
        p = (self.prior if belief is None else belief).ravel()
        flat = int(rng.choice(p.size, p=p))
        return self.intent_at(np.unravel_index(flat, self.shape))

    # -- beliefs ----------------------------------------------------------------------------
    def update(self, belief: np.ndarray, attribute: str, likelihood: Sequence[float]
               ) -> np.ndarray:
        """The posterior after evidence with ``likelihood[v] = P(evidence | attribute = v)``.

        Evidence that every intent of positive belief rules out (impossible under the model)
        leaves the belief unchanged rather than dividing by zero; callers record it.
        """
        axis = self.axis[attribute]
        lik = np.asarray(likelihood, dtype=np.float64)
        if lik.shape != (self.shape[axis],) or not np.all(np.isfinite(lik)) or lik.min() < 0:
            raise ValueError(f"likelihood for {attribute!r} must be {self.shape[axis]} finite "
                             f"non-negative numbers, got {lik!r}")
        view = [1] * belief.ndim
        view[axis] = lik.size
        posterior = belief * lik.reshape(view)
        total = posterior.sum()
        if not total > 0:
            return belief
        return posterior / total

    def marginal(self, belief: np.ndarray, attribute: str) -> np.ndarray:
        """``P(attribute = v)`` for each value ``v``."""
        axis = self.axis[attribute]
        others = tuple(i for i in range(belief.ndim) if i != axis)
        return belief.sum(axis=others)

    def map_intent(self, belief: np.ndarray) -> dict[str, str]:
        """The most probable joint intent (ties broken by the lowest index)."""
        return self.intent_at(np.unravel_index(int(np.argmax(belief)), self.shape))


def entropy_bits(p: np.ndarray) -> float:
    """Shannon entropy of a normalised distribution, in bits; never negative, never NaN."""
    flat = np.asarray(p, dtype=np.float64).ravel()
    nz = flat[flat > 0]
    if nz.size <= 1:
        return 0.0
    return max(0.0, float(-(nz * np.log2(nz)).sum()))


def expected_information_gain(marginal: np.ndarray, likelihood: np.ndarray) -> float:
    """Exact expected entropy drop of the joint belief from one answer about one attribute.

    The answer depends on the intent only through the attribute's value ``V``, so the expected
    drop of the joint entropy is the mutual information ``I(answer; V) = H(answer) -
    H(answer | V)``.

    Args:
        marginal: ``P(V = v)``, shape ``(n,)``.
        likelihood: ``P(answer = o | V = v)``, shape ``(n_answers, n)``; columns sum to 1.
    """
    p_answer = likelihood @ marginal
    conditional = sum(float(m) * entropy_bits(likelihood[:, v])
                      for v, m in enumerate(marginal) if m > 0)
    return max(0.0, entropy_bits(p_answer) - conditional)
