"""The ``tools`` env (ToolRL): think, call tools in ``<tool_call>``, read ``<obs>``, respond.

Three task families, generated offline with train/test splits (``tasks.py``): BFCL-style
function calling (single calls, two calls, and irrelevance cases where the right move is to call
nothing), arithmetic word problems that need the ``calculator`` tool, and retrieval questions
answered from the local corpus through the ``search`` tool. On request (``families=bfcl``),
the Berkeley Function Calling Leaderboard's own tasks from the ``bfcl-eval`` package
(``bfcl.py``). The env records facts (the calls made, their results and errors, the response,
format violations); rewards judge them (``tool_format``, ``tool_correctness``, ``outcome``).
"""

from __future__ import annotations

import json
import time
from typing import Any

from gymrl import ConfigError, LLMEnv, Task, Tool, ToolCall, ToolResult, Turn, make_tool
from gymrl.qa import exact_match
from gymrl.toolcalls import calls_match
from gymrl_envs.tools.functions import FUNCTIONS, Function
from gymrl_envs.tools.protocol import parse_turn
from gymrl_envs.tools.scripted import SCRIPTED
from gymrl_envs.tools.tasks import FAMILIES, SPLITS, generate_tasks

SYSTEM = (
    "Answer the user's request. Each turn, reason in <think>...</think>, then either call "
    "tools with <tool_call>[{{\"name\": ..., \"parameters\": {{...}}}}]</tool_call> (a JSON "
    "list; results come back in <obs>...</obs>) or end with <response>...</response>. Call "
    "only the tools below, with the parameters they define; if none fits the request, respond "
    "without calling. In <response>, give the requested value only. Write nothing outside the "
    "tags.\nTools:\n{tools}"
)

# Stateless tools are shared by every env of the process (one calculator sandbox, one search
# index), keyed by name and options; stateful ones (kv_store) belong to one env.
_SHARED_TOOLS: dict[tuple[str, str], Tool] = {}


class FunctionTool(Tool):
    """A simulated function of a function-calling task, validated like any tool."""

    def __init__(self, function: Function) -> None:
        self.function = function
        self.name, self.description = function.name, function.description
        self.parameters = function.parameters

    def call(self, arguments: dict[str, Any]) -> ToolResult:
        return ToolResult(content=self.function.simulate(arguments))


_FUNCTION_TOOLS = {name: FunctionTool(f) for name, f in FUNCTIONS.items()}


class SpecTool(Tool):
    """A function a task defines by its signature only (BFCL's): no implementation.

    A call is validated against the schema like any tool's; a valid one gets the neutral
    observation ``{"status": "ok"}``, which tells the model nothing about the request, so such
    a task is judged on its calls alone.
    """

    def __init__(self, spec: dict[str, Any]) -> None:
        self.name, self.description = spec["name"], spec.get("description", "")
        self.parameters = spec["parameters"]

    def call(self, arguments: dict[str, Any]) -> ToolResult:
        return ToolResult(content=json.dumps({"status": "ok"}))


class ToolsEnv(LLMEnv):
    """Tool use over function-calling, arithmetic and retrieval tasks (ToolRL protocol)."""

    name = "tools"
    stop = ("</tool_call>", "</response>")
    scripted_policies = SCRIPTED

    def __init__(self, *, split: str = "train", families: str = "all", seed: int = 0,
                 max_turns: int = 4, require_think: bool = True, search_backend: str = "bm25",
                 calculator_time_limit_s: float = 2.0, bfcl_categories: str = "default",
                 bfcl_dir: str | None = None, render_mode: str | None = None) -> None:
        """Args:
            split: ``train`` or ``test``.
            families: ``all`` (the generated families) or a comma-separated subset of
                function_calling, arithmetic, retrieval and bfcl (BFCL's tasks, which need
                ``pip install --no-deps bfcl-eval``).
            seed: the seed of the generated tasks and corpus.
            max_turns: policy turns before truncation.
            require_think: whether every turn must open with ``<think>``.
            search_backend: ``bm25`` (offline, the generated corpus) or ``ddgs`` (the web).
            calculator_time_limit_s: the calculator sandbox's time limit per call.
            bfcl_categories: with family bfcl: ``default`` (simple_python, multiple, parallel,
                parallel_multiple, irrelevance), ``all`` (the live_* ones too) or a
                comma-separated list of categories.
            bfcl_dir: with family bfcl: a folder laid out like ``bfcl_eval/data`` to read
                instead of the installed package.
        """
        if split not in SPLITS:
            raise ConfigError(f"tools split {split!r}; allowed: {', '.join(SPLITS)}")
        chosen = FAMILIES if families == "all" else tuple(
            f.strip() for f in families.split(",") if f.strip())
        unknown = [f for f in chosen if f not in (*FAMILIES, "bfcl")]
        if unknown or not chosen:
            raise ConfigError(f"tools families {families!r}: unknown {unknown}; allowed: 'all' "
                              f"or a comma-separated subset of {', '.join(FAMILIES)}, bfcl")
        super().__init__(max_turns=max_turns, render_mode=render_mode)
        self.split, self.families, self.require_think = split, chosen, require_think
        generated = tuple(f for f in chosen if f != "bfcl")
        self.tasks: tuple[Task, ...] = generate_tasks(generated, split, seed) if generated else ()
        if "bfcl" in chosen:
            from gymrl_envs.tools.bfcl import load_bfcl, parse_categories

            self.tasks += load_bfcl(parse_categories(bfcl_categories), split, bfcl_dir)
        self.set_tasks(self.tasks)
        self.tool_options: dict[str, dict[str, Any]] = {
            "search": {"backend": search_backend, "corpus_seed": seed},
            "calculator": {"time_limit_s": calculator_time_limit_s},
        }
        self._own_tools: dict[str, Tool] = {}

    # -- tools ------------------------------------------------------------------------------
    def tool(self, name: str) -> Tool:
        """The tool ``name`` for this env: shared if stateless, this env's own if stateful."""
        if name in self._own_tools:
            return self._own_tools[name]
        options = self.tool_options.get(name, {})
        key = (name, json.dumps(options, sort_keys=True))
        if key not in _SHARED_TOOLS:
            tool = make_tool(name, options)
            if tool.stateful:
                self._own_tools[name] = tool
                return tool
            _SHARED_TOOLS[key] = tool
        return _SHARED_TOOLS[key]

    def offered(self) -> dict[str, Tool]:
        """The tools and functions this episode's task offers, by name."""
        hidden = self.episode.task.hidden
        out: dict[str, Tool] = {name: _FUNCTION_TOOLS[name] for name in hidden["functions"]}
        for spec in hidden.get("function_specs", ()):
            out[spec["name"]] = SpecTool(spec)
        for name in hidden["tools"]:
            out[name] = self.tool(name)
        return out

    # -- LLMEnv -----------------------------------------------------------------------------
    def system_prompt(self) -> str:
        specs = [json.dumps(t.spec(), separators=(",", ":")) for t in self.offered().values()]
        return SYSTEM.format(tools="\n".join(specs))

    def reset(self, *, seed: int | None = None,
              options: dict[str, Any] | None = None) -> tuple[str, dict[str, Any]]:
        obs, info = super().reset(seed=seed, options=options)
        hidden = self.episode.task.hidden
        self.episode.facts.update({"answer": None, "format_violations": [],
                                   "family": hidden["family"], "kind": hidden["kind"]})
        for tool in self.offered().values():
            tool.reset(seed)  # a stateful tool starts every episode empty
        return obs, info

    def respond(self, action: str, turn: Turn) -> tuple[str, bool]:
        parsed = parse_turn(action, require_think=self.require_think)
        turn.facts.setdefault("format_violations", []).extend(parsed.violations)
        if parsed.calls is None and parsed.response is not None:
            self.episode.facts["answer"] = parsed.response
            return "", True
        if parsed.calls is None or not parsed.calls:
            problem = parsed.violations[0] if parsed.violations else "no action"
            return f"<obs>\nerror: {problem}\n</obs>", False
        offered = self.offered()
        lines = []
        for i, call in enumerate(parsed.calls, 1):
            start = time.perf_counter()
            tool = offered.get(call["name"])
            if tool is None:
                result = ToolResult(error=f"unknown tool {call['name']!r}; available: "
                                          f"{', '.join(sorted(offered))}")
            else:
                result = tool(call["parameters"])
            turn.tool_calls.append(ToolCall(
                name=call["name"], arguments=call["parameters"], result=result.content,
                error=result.error, cost_usd=result.cost_usd,
                latency_s=time.perf_counter() - start))
            lines.append(f"{i}. {call['name']} -> {result.text()}")
        return "<obs>\n" + "\n".join(lines) + "\n</obs>", False

    def on_truncate(self) -> None:
        self.episode.facts["format_violations"].append("no <response> before the turn limit")

    def metrics(self, episode: Any) -> dict[str, Any]:
        """Per-episode evaluation metrics; strings (family, kind) group the summary."""
        hidden = episode.task.hidden
        made = [{"name": c.name, "parameters": c.arguments} for c in episode.tool_calls]
        answer = episode.facts.get("answer")
        out: dict[str, Any] = {
            "kind": hidden["family"],
            "call_accuracy": float(calls_match(made, hidden["gold_calls"])),
            "tool_errors": sum(c.error is not None for c in episode.tool_calls),
            "calls": len(made),
            "format_ok": float(not episode.format_violations()),
            "answered": float(answer is not None),
        }
        if hidden["kind"] == "irrelevance":
            out["irrelevance_accuracy"] = float(not made)
        if episode.task.answer:
            out["accuracy"] = exact_match(answer, episode.task.answer) if answer else 0.0
        return out
