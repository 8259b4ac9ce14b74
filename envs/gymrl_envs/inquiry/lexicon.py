"""How users talk about an intent space: names, synonyms and value groups of each attribute.

Simulated users understand a free-text question through the lexicon (which attribute does it
mention first?) and say values and groups with its phrases; an LLM user's reply is mapped back
to evidence through the same phrases. Matching is on whole words, case-insensitive, with
hyphens and underscores read as spaces. The lexicon reads mentions, not negations: "not a bar
chart" mentions a bar chart.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from gymrl import ConfigError


@dataclass(frozen=True)
class AttributeWords:
    """The words for one attribute.

    Attributes:
        name: the attribute's name in the intent space.
        label: how people name it ("chart type"); questions and request clauses use it.
        synonyms: other phrases that name the attribute in a question.
        values: value -> phrases; the first phrase is the plainest.
        groups: group -> (member values, phrases): subsets a less precise user answers with.
            Groups of one attribute partition its values.
    """

    name: str
    label: str
    synonyms: tuple[str, ...]
    values: dict[str, tuple[str, ...]]
    groups: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = field(default_factory=dict)

    def group_of(self, value: str) -> str | None:
        for group, (members, _) in self.groups.items():
            if value in members:
                return group
        return None


def normalise(text: str) -> str:
    """Lower case, hyphens and underscores as spaces, single spaces."""
    return " ".join(re.sub(r"[-_]", " ", text.lower()).split())


def _phrase_re(phrases: Sequence[str]) -> re.Pattern[str]:
    # Longest first, so "bar chart" wins over "bar" at the same position.
    ordered = sorted({normalise(p) for p in phrases}, key=len, reverse=True)
    body = "|".join(re.escape(p) for p in ordered)
    return re.compile(rf"(?<![a-z0-9])(?:{body})(?![a-z0-9])")


class Lexicon:
    """The vocabulary of one domain: what phrases name which attribute, value or group."""

    def __init__(self, attributes: Sequence[AttributeWords]) -> None:
        self.attributes = {a.name: a for a in attributes}
        for a in attributes:
            members = sorted(v for ms, _ in a.groups.values() for v in ms)
            if a.groups and members != sorted(a.values):
                raise ConfigError(f"groups of {a.name!r} must partition its values "
                                  f"{sorted(a.values)}, got {members}")
        # Which attribute a phrase points to, for reading questions. Value phrases shared by
        # several attributes ("log" scale on either axis) point to none.
        owners: dict[str, set[str]] = {}
        for a in attributes:
            for phrase in (a.label, *a.synonyms, *(p for ps in a.values.values() for p in ps),
                           *(p for _, ps in a.groups.values() for p in ps)):
                owners.setdefault(normalise(phrase), set()).add(a.name)
        self._question_owner = {p: next(iter(o)) for p, o in owners.items() if len(o) == 1}
        self._question_re = _phrase_re(list(self._question_owner))
        self._answer: dict[str, tuple[re.Pattern[str], dict[str, frozenset[str]]]] = {}
        for a in attributes:
            meaning: dict[str, frozenset[str]] = {}
            for value, phrases in a.values.items():
                for p in phrases:
                    meaning[normalise(p)] = frozenset({value})
            for members, phrases in a.groups.values():
                for p in phrases:
                    meaning.setdefault(normalise(p), frozenset(members))
            self._answer[a.name] = (_phrase_re(list(meaning)), meaning)

    def attribute_of(self, question: str) -> str | None:
        """The attribute a question is about: the first one it names, or None."""
        m = self._question_re.search(normalise(question))
        return self._question_owner[m.group(0)] if m else None

    def values_meant(self, reply: str, attribute: str) -> frozenset[str] | None:
        """The values of ``attribute`` that a reply names (through values or groups), or None
        when it names none of them."""
        pattern, meaning = self._answer[attribute]
        found = [meaning[m.group(0)] for m in pattern.finditer(normalise(reply))]
        return frozenset().union(*found) if found else None
