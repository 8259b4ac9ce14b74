"""RouterEnv: multi-round routing among a pool of models, as in Router-R1.

The policy reasons in ``<think>``, calls a pool model with ``<search>MODEL: query</search>``,
reads the reply in ``<information>``, and ends with ``<answer>``. The env records facts (the
answer, every call with its tokens and price, grammar violations); rewards judge them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from gymrl import ConfigError, LLMEnv, Task, ToolCall, Turn
from gymrl.qa import exact_match, f1_score
from gymrl_envs.router import scripted
from gymrl_envs.router.experts import LLMPool, SimulatedPool
from gymrl_envs.router.protocol import parse_turn
from gymrl_envs.router.tasks import SPLITS, generate_tasks, load_qa_jsonl

INSTRUCTIONS = """\
Answer the question by asking the models below. Each turn, reason in <think>...</think>, then \
either call one model with <search>MODEL: question</search> (its reply comes back in \
<information>...</information>) or end with <answer>short answer</answer>. Ask one \
single-fact question per call, to the model best suited to it; a call costs the model's price \
times the tokens used. At most {max_calls} calls. Write nothing outside the tags.
Models:
{pool}"""


class RouterEnv(LLMEnv):
    """Multi-round model routing over generated multi-hop QA (or your own JSONL)."""

    name = "router"
    stop = ("</search>", "</answer>")
    scripted_policies = scripted.POLICIES
    # SFT imitates the oracle's routing (the cheapest of the most accurate experts per hop's
    # domain; it reads the task's hops, never the experts' luck). Imitating random routing
    # left each seed on one favourite expert for everything, and GRPO then had to find routing
    # by domain from a few tasks (README, "Where training stands"): after oracle demos the
    # small model routes 1-hop questions by domain, and RL works on what it still gets wrong.
    demo_policy = "oracle"

    def __init__(self, *, split: str = "train", tasks: str = "generated", pool: str = "simulated",
                 max_calls: int = 4, max_turns: int | None = None, world_seed: int = 0,
                 require_think: bool = True, render_mode: str | None = None) -> None:
        """Args:
            split: ``train`` or ``test`` (generated tasks); the split loaded tasks are given.
            tasks: ``generated`` or a path to a JSONL file of QA (NQ/HotpotQA shape).
            pool: ``simulated`` or a path to a YAML file of real LLM experts.
            max_calls: how many pool calls an episode may make.
            max_turns: policy turns before truncation (default ``max_calls + 1``).
            world_seed: the seed of the generated world and tasks.
            require_think: whether every turn must open with ``<think>``.
        """
        if split not in SPLITS:
            raise ConfigError(f"router split {split!r}; allowed: {', '.join(SPLITS)}")
        if max_calls < 0:
            raise ConfigError(f"router max_calls must be >= 0, got {max_calls}")
        super().__init__(max_turns=max_turns or max_calls + 1, render_mode=render_mode)
        self.split, self.max_calls, self.require_think = split, max_calls, require_think
        if tasks == "generated":
            self.tasks: list[Task] = generate_tasks(world_seed)[split]
        elif Path(tasks).suffix in (".jsonl", ".json"):
            self.tasks = load_qa_jsonl(tasks, split=split)
        else:
            raise ConfigError(f"router tasks {tasks!r}; allowed: 'generated' or a .jsonl path")
        self.set_tasks(self.tasks)
        if pool == "simulated":
            self.pool: Any = SimulatedPool(world_seed=world_seed)
        elif Path(pool).suffix in (".yaml", ".yml"):
            self.pool = LLMPool.from_yaml(pool)
        else:
            raise ConfigError(f"router pool {pool!r}; allowed: 'simulated' or a .yaml path")
        descriptors = "\n".join(p.descriptor() for p in self.pool.profiles.values())
        self._system = INSTRUCTIONS.format(max_calls=max_calls, pool=descriptors)

    def system_prompt(self) -> str:
        return self._system

    def reset(self, *, seed: int | None = None,
              options: dict[str, Any] | None = None) -> tuple[str, dict[str, Any]]:
        obs, info = super().reset(seed=seed, options=options)
        self.episode.facts.update({"answer": None, "calls": 0, "format_violations": [],
                                   "domain": self.episode.task.hidden.get("domain"),
                                   "kind": self.episode.task.hidden.get("kind")})
        return obs, info

    def respond(self, action: str, turn: Turn) -> tuple[str, bool]:
        parsed = parse_turn(action, require_think=self.require_think)
        violations = turn.facts.setdefault("format_violations", [])
        violations.extend(parsed.violations)
        turn.facts["action"] = parsed.action
        facts = self.episode.facts
        if parsed.action == "answer" and parsed.content:
            facts["answer"] = parsed.content
            return "", True
        if parsed.action == "search" and parsed.model is not None:
            return self._call(parsed.model, parsed.query or "", turn), False
        return (f"<information>Invalid turn: {'; '.join(parsed.violations)}. Write "
                "<think>...</think> then <search>MODEL: question</search> or "
                "<answer>...</answer>.</information>"), False

    def _call(self, model: str, query: str, turn: Turn) -> str:
        facts = self.episode.facts
        if facts["calls"] >= self.max_calls:
            turn.tool_calls.append(ToolCall(name=model, arguments={"query": query},
                                            error="call budget exhausted"))
            return (f"<information>No calls left (the limit is {self.max_calls}). Give your "
                    "<answer> now.</information>")
        if model not in self.pool.profiles:
            turn.tool_calls.append(ToolCall(name=model, arguments={"query": query},
                                            error="unknown model"))
            return (f"<information>There is no model named {model!r}. Available: "
                    f"{', '.join(self.pool.profiles)}.</information>")
        facts["calls"] += 1
        call = self.pool.ask(model, query, self.episode.task, self.np_random)
        turn.tool_calls.append(call)
        return f"<information>{call.result}</information>"

    def on_truncate(self) -> None:
        self.episode.facts["format_violations"].append("no <answer> before the turn limit")

    def metrics(self, episode: Any) -> dict[str, Any]:
        """Evaluation metrics of a finished episode (numbers are averaged, strings group)."""
        answer = episode.facts.get("answer") or ""
        gold = episode.task.answer or []
        calls = [c for c in episode.tool_calls if c.error is None]
        violations = episode.format_violations()
        return {
            "accuracy": exact_match(answer, gold) if answer else 0.0,
            "f1": f1_score(answer, gold) if answer else 0.0,
            "cost_usd": sum(c.cost_usd for c in calls),
            "calls": len(calls),
            "format_ok": float(not violations),
            "answered": float(bool(answer)),
            "domain": episode.facts.get("domain"),
            "kind": episode.facts.get("kind"),
            "models": [c.name for c in calls],
        }
