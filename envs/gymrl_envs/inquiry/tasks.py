"""Tasks of the inquiry env, generated and seeded: a hidden intent and the vague opening request.

The hidden intent is drawn from the domain's prior. The opening request names 0, 1 or 2 of
its attributes (truthfully: by value, or by the group the value is in), which the env takes as
evidence before the first question. Each task also carries the expertise level its user has
when the env runs with ``user=mixed`` (levels take turns). Splits are disjoint by intent: an
intent belongs to ``test`` when a hash of it falls in one fifth of the range, so no test intent
is ever seen in training.
"""

from __future__ import annotations

import zlib
from functools import cache

import numpy as np

from gymrl import Task
from gymrl_envs.inquiry.domains import Domain, get_domain
from gymrl_envs.inquiry.users import LEVELS

SPLITS = ("train", "test")
SIZES = {"train": 4000, "test": 1000}
REVEAL_COUNTS = (0, 1, 2)
REVEAL_PROBS = (0.3, 0.45, 0.25)

CLAUSES = (
    " The {label} should be {phrase}.",
    " I'd like {phrase}.",
    " Ideally {phrase}.",
    " I'm thinking {phrase}.",
)


def canonical(intent: dict[str, str], names: tuple[str, ...]) -> str:
    """An intent as one line, ``attr=value`` in attribute order (the ``outcome`` answer)."""
    return " ".join(f"{name}={intent[name]}" for name in names)


def split_of(intent: dict[str, str], names: tuple[str, ...]) -> str:
    """``test`` for one fifth of the intents (by a stable hash), ``train`` for the rest."""
    return "test" if zlib.crc32(canonical(intent, names).encode()) % 5 == 0 else "train"


def _opening(domain: Domain, intent: dict[str, str], rng: np.random.Generator
             ) -> tuple[str, list[dict[str, str]]]:
    """The opening request and what it reveals: ``[{attribute, kind, name}]``."""
    text = domain.openings[int(rng.integers(len(domain.openings)))].format(
        topic=domain.topics[int(rng.integers(len(domain.topics)))])
    count = int(rng.choice(REVEAL_COUNTS, p=REVEAL_PROBS))
    revealed = []
    for attribute in rng.choice(domain.space.names, size=count, replace=False):
        words = domain.words(str(attribute))
        value = intent[words.name]
        group = words.group_of(value)
        if group is not None and rng.random() < 0.4:
            kind, name, phrases = "group", group, words.groups[group][1]
        else:
            kind, name, phrases = "value", value, words.values[value]
        phrase = phrases[int(rng.integers(len(phrases)))]
        clause = CLAUSES[int(rng.integers(len(CLAUSES)))]
        text += clause.format(label=words.label, phrase=phrase)
        revealed.append({"attribute": words.name, "kind": kind, "name": name})
    return text, revealed


@cache
def generate_tasks(domain_name: str, split: str, seed: int = 0, prior_seed: int = 0
                   ) -> tuple[Task, ...]:
    """The ``SIZES[split]`` tasks of a domain's split (deterministic, cached)."""
    domain = get_domain(domain_name, prior_seed)
    space = domain.space
    rng = np.random.default_rng(zlib.crc32(f"inquiry/{domain_name}/{split}/{seed}".encode()))
    cdf = np.cumsum(space.prior.ravel())
    tasks: list[Task] = []
    while len(tasks) < SIZES[split]:
        draws = np.searchsorted(cdf, rng.random(2 * SIZES[split]) * cdf[-1], side="right")
        for flat in np.minimum(draws, cdf.size - 1):
            intent = space.intent_at(np.unravel_index(int(flat), space.shape))
            if split_of(intent, space.names) != split:
                continue
            i = len(tasks)
            prompt, revealed = _opening(domain, intent, rng)
            tasks.append(Task(
                id=f"{domain_name}-{split}-{i}", prompt=prompt, split=split,
                answer=[canonical(intent, space.names)],
                hidden={"domain": domain_name, "intent": intent, "revealed": revealed,
                        "user": LEVELS[i % len(LEVELS)]}))
            if len(tasks) == SIZES[split]:
                break
    return tuple(tasks)
