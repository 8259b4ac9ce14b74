"""Users the policy questions: seeded simulated users at three expertise levels, or any LLM.

A user reads a free-text question, finds the attribute it is about through the domain's
lexicon, and answers about that attribute. With the reply comes its evidence: which values
the answer points to and the likelihood ``P(answer | value)`` of the user's own answering
model, which the env multiplies into its belief. For a simulated user the reply is *sampled*
from that same likelihood matrix, so the env's Bayesian update is exact by construction.

Answering model (per attribute, given the true value ``v``): with probability ``p_unknown``
the user says they do not know (no information); otherwise, with probability ``p_value``, they
name a value and else the group of values containing it (a vaguer answer). With probability
``error`` the named value or group is a wrong one, uniformly among the others.

- ``expert``: always the exact value, never wrong.
- ``intermediate``: the exact value 40% of the time, else its group; never wrong.
- ``novice``: "don't know" 15% of the time; the exact value 20%, else its group; wrong 15%.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from gymrl import BackendError, ConfigError, Request
from gymrl_envs.inquiry.domains import Domain
from gymrl_envs.inquiry.lexicon import AttributeWords

LEVELS = ("expert", "intermediate", "novice")

NOT_UNDERSTOOD = (
    "Sorry, I'm not sure what you mean.",
    "I'm not sure what you mean. Could you ask about one specific thing?",
    "Hmm, I don't follow. What exactly do you want to know?",
    "Not sure what you mean, sorry.",
)
VALUE_REPLIES = (
    "{phrase}, please.",
    "I'd like {phrase}.",
    "Definitely {phrase}.",
    "Let's go with {phrase}.",
    "For the {label}: {phrase}.",
    "{phrase} would be best.",
)
GROUP_REPLIES = (
    "Something like {phrase}, I think.",
    "Hmm, {phrase} maybe?",
    "I'm thinking {phrase}.",
    "Probably {phrase}.",
    "Not sure exactly... {phrase}?",
)
UNKNOWN_REPLIES = (
    "I don't really know, sorry.",
    "No idea, you choose.",
    "Hmm, I haven't thought about that.",
    "Whatever you think is best.",
)


@dataclass(frozen=True)
class Observation:
    """One possible answer about an attribute: a value, a group, or "don't know"."""

    kind: str  # "value" | "group" | "unknown"
    name: str | None
    values: frozenset[str]


@dataclass(frozen=True)
class Evidence:
    """What an answer tells the env: the attribute, the values it points to, and
    ``likelihood[v] = P(this answer | attribute = v)`` (up to a constant factor)."""

    attribute: str
    observation: Observation
    likelihood: tuple[float, ...]

    def to_fact(self) -> dict[str, Any]:
        return {"attribute": self.attribute, "kind": self.observation.kind,
                "name": self.observation.name, "values": sorted(self.observation.values),
                "likelihood": list(self.likelihood)}


@dataclass(frozen=True)
class Reply:
    """A user's reply: the text the policy reads and the evidence the env uses (None when the
    question was not understood)."""

    text: str
    attribute: str | None
    evidence: Evidence | None


@dataclass(frozen=True)
class AnswerModel:
    """How precisely and how reliably a user answers (see the module docstring)."""

    p_unknown: float = 0.0
    p_value: float = 1.0
    error: float = 0.0

    def __post_init__(self) -> None:
        for name in ("p_unknown", "p_value", "error"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ConfigError(f"answer model {name} must be in [0, 1], got "
                                  f"{getattr(self, name)}")

    def matrix(self, words: AttributeWords) -> tuple[list[Observation], np.ndarray]:
        """Every possible answer about one attribute and ``L[o, v] = P(o | v)`` (columns sum
        to 1)."""
        values = list(words.values)
        groups = [(g, frozenset(ms)) for g, (ms, _) in words.groups.items()]
        precise = self.p_value if len(groups) > 1 else 1.0
        rows: list[tuple[Observation, np.ndarray]] = []
        n, m = len(values), len(groups)
        if precise > 0:
            for u in values:
                row = np.array([(1 - self.error if u == v else self.error / (n - 1))
                                if n > 1 else 1.0 for v in values])
                rows.append((Observation("value", u, frozenset({u})),
                             (1 - self.p_unknown) * precise * row))
        if precise < 1:
            for g, members in groups:
                row = np.array([1 - self.error if v in members else self.error / (m - 1)
                                for v in values])
                rows.append((Observation("group", g, members),
                             (1 - self.p_unknown) * (1 - precise) * row))
        if self.p_unknown > 0:
            rows.append((Observation("unknown", None, frozenset(values)),
                         np.full(n, self.p_unknown)))
        return [o for o, _ in rows], np.array([r for _, r in rows])


MODELS = {
    "expert": AnswerModel(),
    "intermediate": AnswerModel(p_value=0.4),
    "novice": AnswerModel(p_unknown=0.15, p_value=0.2, error=0.15),
}


class SimulatedUser:
    """A seeded simulated user of one expertise level who knows the hidden intent.

    Args:
        domain: the intent space and its lexicon.
        level: ``expert``, ``intermediate`` or ``novice``.
        rng: the randomness of the user's answers and wording (the env's ``np_random``).
    """

    def __init__(self, domain: Domain, level: str, rng: np.random.Generator) -> None:
        if level not in MODELS:
            raise ConfigError(f"user level {level!r}; allowed: {', '.join(LEVELS)}")
        self.domain, self.level, self.rng, self.model = domain, level, rng, MODELS[level]
        self._matrices = {name: self.model.matrix(domain.words(name))
                          for name in domain.space.names}

    def answer_matrix(self, attribute: str) -> tuple[list[Observation], np.ndarray]:
        """The user's answers about ``attribute`` and their likelihoods ``L[o, v]``."""
        return self._matrices[attribute]

    def reply(self, question: str, intent: dict[str, str]) -> Reply:
        attribute = self.domain.lexicon.attribute_of(question)
        if attribute is None:
            return Reply(self._pick(NOT_UNDERSTOOD), None, None)
        observations, lik = self._matrices[attribute]
        v = self.domain.space.attribute(attribute).index(intent[attribute])
        o = int(self.rng.choice(len(observations), p=lik[:, v] / lik[:, v].sum()))
        observation = observations[o]
        evidence = Evidence(attribute, observation, tuple(float(x) for x in lik[o]))
        return Reply(self.say(attribute, observation), attribute, evidence)

    def say(self, attribute: str, observation: Observation) -> str:
        """A varied natural-language wording of an answer."""
        words = self.domain.words(attribute)
        if observation.kind == "unknown":
            return self._pick(UNKNOWN_REPLIES)
        if observation.kind == "value":
            phrase, templates = self._pick(words.values[observation.name]), VALUE_REPLIES
        else:
            phrase, templates = self._pick(words.groups[observation.name][1]), GROUP_REPLIES
        text = self._pick(templates).format(phrase=phrase, label=words.label)
        return text[0].upper() + text[1:]

    def _pick(self, options: tuple[str, ...]) -> str:
        return options[int(self.rng.integers(len(options)))]


class LLMUser:
    """A user played by an LLM backend that is told the hidden intent.

    The reply is mapped to evidence with the domain's lexicon: the values of the asked
    attribute it names (directly or through a group) are the answer; naming none carries no
    evidence. The env's belief treats such an answer as right with probability
    ``1 - error`` (``likelihood = 1 - error`` on the named values, ``error`` elsewhere).

    Args:
        domain: the intent space and its lexicon.
        backend: a backend spec (``openai:MODEL``, ``hf:PATH``, ``scripted:NAME``) or a
            backend object with ``generate(list[Request]) -> list[Completion]``.
        error: the assumed rate at which the LLM's answer is wrong, in [0, 1).
    """

    level = "llm"
    SYSTEM = ("You are a user who asked an assistant for help. What you want, exactly:\n"
              "{intent}\nAnswer the assistant's question briefly, in one sentence, about "
              "only what it asks. If the question is unclear, say you are not sure what it "
              "means.")

    def __init__(self, domain: Domain, backend: Any, error: float = 0.1) -> None:
        from gymrl import make_backend

        if not 0.0 <= error < 1.0:
            raise ConfigError(f"LLM user error must be in [0, 1), got {error}")
        self.domain, self.error = domain, error
        self.backend = make_backend(backend) if isinstance(backend, str) else backend
        check = getattr(self.backend, "check_env", None)
        if check is not None:  # a scripted user that does not exist fails here, not mid-run
            check(UserView(domain, "", {}))

    def describe(self, intent: dict[str, str]) -> str:
        """The hidden intent in the lexicon's plainest words, one line per attribute."""
        return "\n".join(f"- {self.domain.words(a).label}: "
                         f"{self.domain.words(a).values[intent[a]][0]}"
                         for a in self.domain.space.names)

    def reply(self, question: str, intent: dict[str, str]) -> Reply:
        request = Request(messages=[
            {"role": "system", "content": self.SYSTEM.format(intent=self.describe(intent))},
            {"role": "user", "content": question}], env=UserView(self.domain, question, intent))
        try:
            completions = self.backend.generate([request])
        except BackendError as exc:
            return Reply(f"(the user could not be reached: {exc})", None, None)
        text = str(completions[0].text or "").strip() if completions else ""
        attribute = self.domain.lexicon.attribute_of(question)
        if attribute is None:
            return Reply(text, None, None)
        named = self.domain.lexicon.values_meant(text, attribute)
        if named is None:
            return Reply(text, attribute, None)
        values = self.domain.space.attribute(attribute).values
        likelihood = tuple(1 - self.error if v in named else self.error for v in values)
        kind = "value" if len(named) == 1 else "group"
        name = next(iter(named)) if len(named) == 1 else None
        return Reply(text, attribute, Evidence(attribute, Observation(kind, name, named),
                                               likelihood))


def plain_user(view: UserView) -> str:
    """A scripted stand-in for an LLM user: the true value of the asked attribute in its
    plainest words, or "not sure what you mean"."""
    attribute = view.domain.lexicon.attribute_of(view.question)
    if attribute is None:
        return NOT_UNDERSTOOD[0]
    words = view.domain.words(attribute)
    return f"I'd like {words.values[view.intent[attribute]][0]}."


@dataclass(frozen=True)
class UserView:
    """What a ``scripted:`` backend playing the user sees (as ``Request.env``): the domain,
    the question and the hidden intent. Model backends ignore it."""

    domain: Domain
    question: str
    intent: dict[str, str]
    name = "inquiry_user"
    scripted_policies = {"plain_user": plain_user}
