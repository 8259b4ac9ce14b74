"""The ``inquiry`` env (Nous, "Dialogue as Discovery"): ask what the user wants, then act.

The policy sees a vague opening request and the attribute schema, asks the user questions in
``<ask>...</ask>`` and ends with ``<spec>{json}</spec>`` naming one value per attribute. The
env keeps an exact Bayesian belief over the joint intent space (an N-d array, see
``space.py``), updates it with each answer's likelihood under the user's own answering model,
and records the belief's entropy after every turn. It records facts; rewards judge them
(``info_gain`` from the entropies, ``spec_outcome``/``outcome`` from the spec,
``question_cost`` from the number of questions).

The default reward is ``spec_outcome+question_cost+format``, range ``[-1.1, 1]``: the scripted
``clairvoyant`` (the exact spec, no questions) reaches 1 and ``stall`` (off-topic questions to
the turn limit, no spec) reaches -1.1, so ``gymrl check env=inquiry`` proves both ends (the
bottom needs ``max_turns >= 10``, the default being 12, to spend the question-cost cap).
``reward=nous`` adds information gain (see ``NousReward`` for why its range is only bounded).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from gymrl import ConfigError, Episode, LLMEnv, Task, Turn
from gymrl_envs.inquiry import scripted
from gymrl_envs.inquiry.domains import DOMAINS, Domain, get_domain
from gymrl_envs.inquiry.protocol import parse_turn
from gymrl_envs.inquiry.space import ENTROPY_TOLERANCE_BITS, entropy_bits
from gymrl_envs.inquiry.tasks import SPLITS, canonical, generate_tasks
from gymrl_envs.inquiry.users import LEVELS, MODELS, LLMUser, Observation, SimulatedUser

USERS = ("mixed", *LEVELS)
DEFAULT_REWARD = "spec_outcome+question_cost+format"  # registered as the env's own (plugin.py)

INSTRUCTIONS = """\
Find out what the user wants before you act. Each turn, reason in <think>...</think>, then \
either ask the user one question with <ask>question</ask> (their reply comes back in \
<user>...</user>) or end with <spec>{{"attribute": "value", ...}}</spec>: a JSON object that \
gives one allowed value for every attribute below. Ask about one attribute per question; \
questions are not free, so ask only what you cannot guess. At most {max_turns} turns in all. \
Write nothing outside the tags.
Attributes (name (meaning): allowed values):
{schema}"""


class InquiryEnv(LLMEnv):
    """Socratic intent inquiry over a structured intent space, with an exact belief."""

    name = "inquiry"
    stop = ("</ask>", "</spec>")
    scripted_policies = scripted.POLICIES
    demo_policy = "oracle"  # it reads only the belief and the user model, never the intent
    # Summaries pool bits per question (all bits gained / all questions asked).
    summary_ratios = {"bits_per_question": ("bits_gained", "questions")}

    def __init__(self, *, domain: str = "diagram", user: str = "mixed", split: str = "train",
                 max_turns: int = 12, seed: int = 0, prior_seed: int = 0,
                 require_think: bool = True, llm_user_error: float = 0.1,
                 render_mode: str | None = None) -> None:
        """Args:
            domain: ``diagram`` (scientific diagram specs) or ``restaurant``.
            user: ``mixed`` (each task's own level; levels take turns across tasks),
                ``expert``, ``intermediate``, ``novice``, or an LLM backend spec that plays
                the user (``openai:MODEL``, ``hf:PATH``, ``scripted:NAME``).
            split: ``train`` or ``test`` (disjoint hidden intents).
            max_turns: policy turns (questions plus the spec) before truncation, >= 1.
            seed: the seed of the generated tasks.
            prior_seed: the seed of the domain's generated prior.
            require_think: whether every turn must open with ``<think>``.
            llm_user_error: for an LLM user, the assumed rate of wrong answers, in [0, 1).
        """
        if domain not in DOMAINS:
            raise ConfigError(f"inquiry domain {domain!r}; allowed: {', '.join(DOMAINS)}")
        if split not in SPLITS:
            raise ConfigError(f"inquiry split {split!r}; allowed: {', '.join(SPLITS)}")
        if user not in USERS and ":" not in str(user):
            raise ConfigError(f"inquiry user {user!r}; allowed: {', '.join(USERS)} or an LLM "
                              "backend spec such as openai:MODEL or hf:PATH")
        super().__init__(max_turns=max_turns, render_mode=render_mode)
        self.domain: Domain = get_domain(domain, prior_seed)
        self.space = self.domain.space
        self.split, self.user_option, self.require_think = split, user, require_think
        self.llm_user = (LLMUser(self.domain, user, error=llm_user_error) if ":" in user
                         else None)
        self.tasks: tuple[Task, ...] = generate_tasks(domain, split, seed, prior_seed)
        self.set_tasks(self.tasks)
        self.schema = {a.name: a.values for a in self.space.attributes}
        lines = [f"- {a.name} ({self.domain.words(a.name).label}): {', '.join(a.values)}"
                 for a in self.space.attributes]
        self._system = INSTRUCTIONS.format(max_turns=max_turns, schema="\n".join(lines))
        self.belief: np.ndarray = self.space.prior
        self.user: Any = None

    # -- belief -----------------------------------------------------------------------------
    @property
    def entropy(self) -> float:
        return self.episode.facts["entropy_bits"]

    def answer_matrix(self, attribute: str) -> tuple[list[Observation], np.ndarray]:
        """The current user's possible answers about ``attribute`` and ``P(answer | value)``
        (an LLM user is planned for as an expert)."""
        if isinstance(self.user, SimulatedUser):
            return self.user.answer_matrix(attribute)
        return MODELS["expert"].matrix(self.domain.words(attribute))

    def _apply(self, attribute: str, likelihood: Any) -> float:
        """Update the belief with one piece of evidence; returns the new entropy (bits)."""
        before = self.episode.facts["entropy_bits"]
        posterior = self.space.update(self.belief, attribute, likelihood)
        if posterior is self.belief:  # evidence the belief rules out: nothing to learn
            self.episode.facts["inconsistent_evidence"] += 1
        self.belief = posterior
        after = entropy_bits(posterior)
        if abs(after - before) < ENTROPY_TOLERANCE_BITS:
            after = before  # the same belief, renormalised: exactly zero bits gained
        self.episode.facts["entropy_bits"] = after
        return after

    # -- LLMEnv -----------------------------------------------------------------------------
    def system_prompt(self) -> str:
        return self._system

    def reset(self, *, seed: int | None = None,
              options: dict[str, Any] | None = None) -> tuple[str, dict[str, Any]]:
        obs, info = super().reset(seed=seed, options=options)
        hidden = self.episode.task.hidden
        level = hidden["user"] if self.user_option == "mixed" else self.user_option
        if self.llm_user is not None:
            self.user, level = self.llm_user, LLMUser.level
        else:
            self.user = SimulatedUser(self.domain, level, self.np_random)
        self.belief = self.space.prior
        prior_entropy = entropy_bits(self.belief)
        self.episode.facts.update({
            "domain": self.domain.name, "user": level, "kind": level, "spec": None,
            "answer": None, "questions": 0, "understood": 0, "format_violations": [],
            "inconsistent_evidence": 0, "prior_entropy_bits": prior_entropy,
            "entropy_bits": prior_entropy, "max_entropy_bits": float(np.log2(self.space.n_valid)),
        })
        for revealed in hidden["revealed"]:  # the opening request is truthful evidence
            words = self.domain.words(revealed["attribute"])
            members = ({revealed["name"]} if revealed["kind"] == "value"
                       else set(words.groups[revealed["name"]][0]))
            self._apply(words.name, [float(v in members) for v in words.values])
        self.episode.facts["initial_entropy_bits"] = self.entropy
        return obs, info

    def respond(self, action: str, turn: Turn) -> tuple[str, bool]:
        parsed = parse_turn(action, self.schema, require_think=self.require_think)
        turn.facts.setdefault("format_violations", []).extend(parsed.violations)
        turn.facts["action"] = parsed.action
        turn.facts["entropy_before_bits"] = turn.facts["entropy_bits"] = self.entropy
        facts = self.episode.facts
        if parsed.action == "spec":
            facts["spec"] = turn.facts["spec"] = parsed.spec or {}
            facts["answer"] = canonical(facts["spec"], self.space.names) if all(
                n in facts["spec"] for n in self.space.names) else ""
            return "", True
        if parsed.question is None:
            problems = "; ".join(parsed.violations) or "no action"
            return (f"<note>Invalid turn: {problems}. Write <think>...</think> then "
                    "<ask>question</ask> or <spec>{...}</spec>.</note>"), False
        facts["questions"] += 1
        reply = self.user.reply(parsed.question, self.episode.task.hidden["intent"])
        turn.facts["question"] = parsed.question
        turn.facts["attribute"] = reply.attribute
        turn.facts["evidence"] = reply.evidence.to_fact() if reply.evidence else None
        if reply.attribute is not None:
            facts["understood"] += 1
        if reply.evidence is not None:
            turn.facts["entropy_bits"] = self._apply(reply.evidence.attribute,
                                                     reply.evidence.likelihood)
        return f"<user>{reply.text}</user>", False

    def on_truncate(self) -> None:
        self.episode.facts["format_violations"].append("no <spec> before the turn limit")

    def metrics(self, episode: Any) -> dict[str, Any]:
        """Per-episode evaluation metrics; ``kind`` (the user's level) and ``domain`` group the
        summary. ``bits_per_question`` is this episode's; summaries pool it over episodes
        (``summary_ratios``: all bits gained / all questions asked)."""
        facts = episode.facts
        intent = episode.task.hidden["intent"]
        spec = facts.get("spec") or {}
        right = sum(spec.get(name) == value for name, value in intent.items())
        gained = facts["initial_entropy_bits"] - facts["entropy_bits"]
        out: dict[str, Any] = {
            "accuracy": right / len(intent),
            "exact_match": float(right == len(intent)),
            "questions": facts["questions"],
            "understood": facts["understood"],
            "bits_gained": gained,
            "final_entropy_bits": facts["entropy_bits"],
            "format_ok": float(not episode.format_violations()),
            "answered": float(facts.get("spec") is not None),
            "kind": facts["user"],
            "user": facts["user"],
            "domain": facts["domain"],
        }
        if facts["questions"]:
            out["bits_per_question"] = gained / facts["questions"]
        return out

    def check_render_episode_png(self) -> None:
        """Episodes draw for the ``diagram`` domain only (a restaurant has no picture)."""
        if self.domain.name != "diagram":
            raise ConfigError(f"env 'inquiry' draws episodes for domain 'diagram' only; this "
                              f"env's domain is {self.domain.name!r}")

    def render_episode_png(self, episode: Episode, path: str | Path) -> Path:
        """Draw a finished episode's final spec beside its hidden intent, as a PNG at ``path``.

        Reads only the Episode record (the spec it ended with, the task's hidden intent), so
        it draws an episode after the env has moved on to others.
        """
        from gymrl_envs.inquiry.render import render_pair

        domain = episode.task.hidden.get("domain", self.domain.name)
        if domain != "diagram":
            raise ConfigError(f"env 'inquiry' draws episodes for domain 'diagram' only; "
                              f"episode {episode.task.id!r} is from {domain!r}")
        return render_pair(episode.facts.get("spec"), episode.task.hidden["intent"], path)

    def render_png(self, path: str | Path, episode: Episode | None = None) -> Path:
        """:meth:`render_episode_png` of ``episode``, the current one by default."""
        self.check_render_episode_png()
        return self.render_episode_png(episode or self.episode, path)

    def render(self) -> str | None:
        text = super().render()
        if text is None:
            return None
        return text + f"\n[belief] {self.entropy:.3f} bits; MAP " + json.dumps(
            self.space.map_intent(self.belief))
