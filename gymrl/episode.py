"""Episode and Turn records: the one structure every part of gymrl reads and writes."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class Task:
    """One task: what the policy sees (``prompt``) and what it must not (``answer``, ``hidden``)."""

    id: str
    prompt: str
    answer: Any = None
    hidden: dict[str, Any] = field(default_factory=dict)
    split: str = "train"


@dataclass
class ToolCall:
    """A call the policy made to something outside it (a routed model, a tool)."""

    name: str
    arguments: dict[str, Any]
    result: str = ""
    error: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0
    latency_s: float = 0.0


@dataclass
class Turn:
    """One message of the episode.

    ``role`` is ``"policy"`` for text the model wrote (the trainable tokens) and ``"env"`` for
    text the environment inserted. ``facts`` is what the env observed about the turn (parse
    results, format violations, ...); rewards judge them.
    """

    role: str
    text: str
    token_ids: list[int] | None = None
    logprobs: list[float] | None = None
    tool_calls: list[ToolCall] = field(default_factory=list)
    facts: dict[str, Any] = field(default_factory=dict)
    rewards: dict[str, float] = field(default_factory=dict)


@dataclass
class Episode:
    """Everything that happened in one episode, and how it was scored."""

    env: str
    task: Task
    seed: int | None = None
    system_prompt: str = ""  # the instructions this episode's policy saw (they may vary by task)
    turns: list[Turn] = field(default_factory=list)
    facts: dict[str, Any] = field(default_factory=dict)
    terminated: bool = False
    truncated: bool = False
    termination: str = ""
    rewards: dict[str, float] = field(default_factory=dict)
    reward: float = 0.0
    diagnostics: dict[str, Any] = field(default_factory=dict)

    @property
    def policy_turns(self) -> list[Turn]:
        return [t for t in self.turns if t.role == "policy"]

    @property
    def tool_calls(self) -> list[ToolCall]:
        return [c for t in self.turns for c in t.tool_calls]

    @property
    def cost_usd(self) -> float:
        return sum(c.cost_usd for c in self.tool_calls)

    def usage(self) -> dict[str, float]:
        """Token and money accounting: the policy's tokens, and what its calls consumed."""
        calls = self.tool_calls
        return {
            "policy_tokens": sum(len(t.token_ids) if t.token_ids is not None
                                 else t.facts.get("completion_tokens", 0)
                                 for t in self.policy_turns),
            "call_prompt_tokens": sum(c.prompt_tokens for c in calls),
            "call_completion_tokens": sum(c.completion_tokens for c in calls),
            "cost_usd": sum(c.cost_usd for c in calls),
        }

    def format_violations(self) -> list[str]:
        """Every grammar violation the env recorded: per policy turn, then for the episode.

        Envs record them as facts (``facts["format_violations"]``, a list of strings) on the
        turn or the episode; format rewards and metrics read them here.
        """
        found = [f"turn {i}: {v}" for i, turn in enumerate(self.policy_turns, 1)
                 for v in turn.facts.get("format_violations", [])]
        return found + list(self.facts.get("format_violations", []))

    @property
    def done(self) -> bool:
        return self.terminated or self.truncated

    def to_dict(self, *, hidden: bool = True) -> dict[str, Any]:
        """A JSON-ready dict; ``hidden=False`` drops the task's hidden fields."""
        data = asdict(self)
        if not hidden:
            data["task"].pop("hidden", None)
        return data
