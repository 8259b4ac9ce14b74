"""The candidate pool a router calls: simulated experts (offline default) or real LLM backends.

Both pools answer ``ask(model, query, task, rng) -> ToolCall`` with the reply text, the token
counts and the money the call cost, so routing choices cost what they would cost for real.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from gymrl import BackendError, ConfigError, Request, Task, ToolCall
from gymrl_envs.router.world import RELATION_KEYWORDS, RELATIONS, World, build_world

_TOKEN_RE = re.compile(r"\w+|[^\w\s]")
_MATH_RE = re.compile(r"(-?\d+)\s*[*x×]\s*(-?\d+)\s*\+\s*(-?\d+)")


_WORD_RE = re.compile(r"\w+")


def count_tokens(text: str) -> int:
    """Tokens as a word-piece tokenizer roughly counts them: words and punctuation marks."""
    return len(_TOKEN_RE.findall(text))


@dataclass(frozen=True)
class ExpertProfile:
    """What the prompt tells the policy about an expert, and (for simulated ones) its skill."""

    name: str
    price_per_mtok: float
    strengths: str
    params: str = ""
    accuracy: dict[str, float] = field(default_factory=dict)

    def descriptor(self) -> str:
        size = f"{self.params}, " if self.params else ""
        return f"- {self.name} ({size}${self.price_per_mtok:.2f}/M tokens): {self.strengths}"


# The default simulated pool: cheap specialists, a mid-priced generalist and a costly frontier
# model. Every domain has a specialist as accurate as the frontier model at a fraction of its
# price, so an ideal router matches the strongest model's accuracy for much less money.
DEFAULT_POOL: tuple[ExpertProfile, ...] = (
    ExpertProfile("pico-math", 0.10, "arithmetic only", "1B",
                  {"math": 0.99, "geography": 0.35, "history": 0.3, "literature": 0.3,
                   "science": 0.3, "open": 0.2}),
    ExpertProfile("atlas-8b", 0.20, "geography", "8B",
                  {"geography": 0.99, "math": 0.6, "history": 0.5, "literature": 0.45,
                   "science": 0.45, "open": 0.35}),
    ExpertProfile("scribe-13b", 0.35, "literature, history",
                  "13B", {"literature": 0.99, "history": 0.99, "geography": 0.55, "math": 0.6,
                          "science": 0.5, "open": 0.45}),
    ExpertProfile("lab-14b", 0.50, "science, arithmetic", "14B",
                  {"science": 0.99, "math": 0.9, "geography": 0.5, "history": 0.55,
                   "literature": 0.5, "open": 0.45}),
    ExpertProfile("general-70b", 0.90, "every topic, good", "70B",
                  {"geography": 0.9, "history": 0.9, "literature": 0.9, "science": 0.9,
                   "math": 0.9, "open": 0.7}),
    ExpertProfile("frontier-405b", 3.00, "every topic, best",
                  "405B", {"geography": 0.99, "history": 0.99, "literature": 0.99,
                           "science": 0.99, "math": 0.99, "open": 0.85}),
)

# Asking a whole multi-hop question at once: each hop must go right, and then some.
MULTI_HOP_DISCOUNT = 0.8
_SYSTEM_TOKENS = 24  # the expert's own instructions, billed as prompt tokens


@lru_cache(maxsize=4)
def _name_index(world_seed: int) -> tuple[dict[str, str], int]:
    """A world's entity names by their lower-cased words, and the most words a name has."""
    names = {" ".join(_WORD_RE.findall(n.lower())): n for n in build_world(world_seed).type_of}
    return names, max(len(key.split()) for key in names)


@lru_cache(maxsize=256)
def _keyword_re(word: str) -> re.Pattern[str]:
    """A relation keyword at the start of a word."""
    return re.compile(rf"\b{re.escape(word)}")


def _mentions(lowered: str, word: str) -> bool:
    """Whether ``word`` starts a word of ``lowered`` (a substring test first: most do not)."""
    return word in lowered and _keyword_re(word).search(lowered) is not None


class SimulatedPool:
    """Seeded simulated experts that answer from the world's facts with per-domain error rates.

    An expert understands a query through a lexicon: the entity it names (the first world name
    in the text, the longest where several start at one word) and a relation keyword
    (``capital``, ``wrote``, ``born``, ...). It answers that fact correctly with its accuracy
    for the relation's domain, and otherwise with a plausible wrong entity of the right type.
    A query that restates the task's whole multi-hop question is answered at once, correct with
    the product of the hops' accuracies times ``MULTI_HOP_DISCOUNT``. Luck is drawn per call
    from the env's ``np_random``.
    """

    def __init__(self, profiles: tuple[ExpertProfile, ...] = DEFAULT_POOL,
                 world_seed: int = 0) -> None:
        self.profiles = {p.name: p for p in profiles}
        self.world: World = build_world(world_seed)
        self._names, self._max_words = _name_index(world_seed)

    def ask(self, model: str, query: str, task: Task, rng: np.random.Generator) -> ToolCall:
        profile = self.profiles[model]
        answer, domain, chance = self._understand(query, task, profile)
        if answer is None:
            reply = "I am not sure what you are asking. Please ask about one specific fact."
        else:
            if rng.random() >= chance:
                answer = self._wrong(answer, domain, rng)
            reply = f"The answer is {answer}."
        prompt_tokens = _SYSTEM_TOKENS + count_tokens(query)
        completion_tokens = count_tokens(reply)
        cost = (prompt_tokens + completion_tokens) * profile.price_per_mtok / 1e6
        return ToolCall(name=model, arguments={"query": query}, result=reply,
                        prompt_tokens=prompt_tokens, completion_tokens=completion_tokens,
                        cost_usd=cost)

    # -- the expert's understanding -------------------------------------------------------
    def _understand(self, query: str, task: Task,
                    profile: ExpertProfile) -> tuple[str | None, str, float]:
        lowered = query.lower()
        hops = task.hidden.get("hops", [])
        math = _MATH_RE.search(query)
        if math:
            a, b, c = (int(g) for g in math.groups())
            return str(a * b + c), "math", profile.accuracy.get("math", 0.0)
        entity = self._entity(query)
        relations = [r for r, words in RELATION_KEYWORDS.items()
                     if any(_mentions(lowered, w) for w in words)]
        if len(hops) > 1 and entity == hops[0]["subject"] and len(relations) > 1:
            chance = MULTI_HOP_DISCOUNT
            for hop in hops:
                chance *= profile.accuracy.get(hop["domain"], 0.0)
            return hops[-1]["answer"], RELATIONS[hops[-1]["relation"]][2], chance
        if entity is not None:
            kind = self.world.type_of[entity]
            for relation in relations:  # keyword order is the lexicon's priority
                if RELATIONS[relation][0] == kind:
                    domain = RELATIONS[relation][2]
                    return (self.world.lookup(relation, entity), domain,
                            profile.accuracy.get(domain, 0.0))
        if not hops and _overlap(query, task.prompt) >= 0.6 and task.answer:
            return str(task.answer[0]), "open", profile.accuracy.get("open", 0.0)
        return None, "", 0.0

    def _entity(self, query: str) -> str | None:
        """The first entity the query names, the longest name first where several start."""
        words = _WORD_RE.findall(query.lower())
        for i in range(len(words)):
            for n in range(min(self._max_words, len(words) - i), 0, -1):
                name = self._names.get(" ".join(words[i:i + n]))
                if name is not None:
                    return name
        return None

    def _wrong(self, answer: str, domain: str, rng: np.random.Generator) -> str:
        if answer.lstrip("-").isdigit():
            delta = int(rng.integers(1, 30)) * (1 if rng.random() < 0.5 else -1)
            return str(int(answer) + delta)
        kind = self.world.type_of.get(answer)
        pool = self.world.entities.get(kind, []) if kind else []
        for _ in range(8):
            if not pool:
                break
            candidate = pool[int(rng.integers(len(pool)))]
            if candidate != answer:
                return candidate
        return "unknown"


def _overlap(a: str, b: str) -> float:
    ta, tb = set(_TOKEN_RE.findall(a.lower())), set(_TOKEN_RE.findall(b.lower()))
    return len(ta & tb) / max(1, len(ta | tb))


class LLMPool:
    """Experts that are real LLM backends, described in YAML.

    Example::

        experts:
          - name: qwen-7b
            backend: openai:Qwen/Qwen2.5-7B-Instruct
            options: {base_url: "http://localhost:8000/v1", timeout: 30}
            price_per_mtok: 0.3
            strengths: general knowledge
          - name: smol
            backend: hf:/models/SmolLM2-135M-Instruct
            price_per_mtok: 0.01
            strengths: cheap and weak
    """

    SYSTEM = "Answer the question concisely. Give only the answer."

    def __init__(self, experts: list[dict[str, Any]], backends: dict[str, Any] | None = None):
        from gymrl import make_backend

        if not experts:
            raise ConfigError("an LLM pool needs at least one expert")
        self.profiles: dict[str, ExpertProfile] = {}
        self.backends: dict[str, Any] = {}
        for i, spec in enumerate(experts):
            missing = {"name", "backend", "price_per_mtok"} - set(spec)
            if missing:
                raise ConfigError(f"expert #{i} in the pool lacks {sorted(missing)}; each "
                                  "expert needs name, backend, price_per_mtok "
                                  "(and optionally strengths, params, options)")
            name = str(spec["name"])
            self.profiles[name] = ExpertProfile(
                name, float(spec["price_per_mtok"]), str(spec.get("strengths", "general")),
                str(spec.get("params", "")))
            self.backends[name] = ((backends or {}).get(name)
                                   or make_backend(spec["backend"], spec.get("options") or {}))

    @classmethod
    def from_yaml(cls, path: str | Path) -> LLMPool:
        from omegaconf import OmegaConf

        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"pool file {str(path)!r} does not exist")
        data = OmegaConf.to_container(OmegaConf.load(path), resolve=True)
        if not isinstance(data, dict) or not isinstance(data.get("experts"), list):
            raise ConfigError(f"pool file {str(path)!r} needs a top-level 'experts' list")
        return cls(data["experts"])

    def ask(self, model: str, query: str, task: Task, rng: np.random.Generator) -> ToolCall:
        profile = self.profiles[model]
        request = Request(messages=[{"role": "system", "content": self.SYSTEM},
                                    {"role": "user", "content": query}])
        start = time.perf_counter()
        try:
            completion = self.backends[model].generate([request])[0]
        except BackendError as exc:
            return ToolCall(name=model, arguments={"query": query}, error=str(exc),
                            result=f"The model {model} could not be reached.")
        prompt_tokens = completion.prompt_tokens or count_tokens(self.SYSTEM + query)
        completion_tokens = completion.completion_tokens or count_tokens(completion.text)
        return ToolCall(name=model, arguments={"query": query}, result=completion.text.strip(),
                        prompt_tokens=prompt_tokens, completion_tokens=completion_tokens,
                        cost_usd=(prompt_tokens + completion_tokens)
                        * profile.price_per_mtok / 1e6,
                        latency_s=time.perf_counter() - start)
