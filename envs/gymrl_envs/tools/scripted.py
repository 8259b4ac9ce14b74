"""Scripted policies of the tools env: privileged baselines that read the task's gold calls.

- ``oracle``: the gold calls (one turn, or several when there are more than a turn may
  hold), then the gold answer (or, with nothing to call, a polite refusal): the best outcome.
- ``no_tools``: responds at once without calling anything.
- ``random_tools``: calls one offered tool with made-up parameters, then repeats its result.
- ``malformed``: plain text with no tags, every turn: the worst outcome.
"""

from __future__ import annotations

import json
from typing import Any

from gymrl_envs.tools.protocol import MAX_CALLS_PER_TURN

REFUSAL = "None of the available tools can help with that request."


def _turn(think: str, body: str) -> str:
    return f"<think>{think}</think>\n{body}"


def oracle(env: Any) -> str:
    task = env.episode.task
    gold = task.hidden["gold_calls"]
    made = len(env.episode.tool_calls)
    if made < len(gold):  # only the call itself: a gold call may carry matching metadata
        calls = [{"name": c["name"], "parameters": c["parameters"]}
                 for c in gold[made:made + MAX_CALLS_PER_TURN]]
        return _turn("The request needs these calls.",
                     f"<tool_call>{json.dumps(calls)}</tool_call>")
    if task.answer:
        return _turn("The results give the answer.", f"<response>{task.answer[0]}</response>")
    if gold:
        results = "; ".join(c.result or f"error: {c.error}" for c in env.episode.tool_calls)
        return _turn("The calls are done.", f"<response>{results}</response>")
    return _turn("No available tool fits this request.", f"<response>{REFUSAL}</response>")


def no_tools(env: Any) -> str:
    return _turn("I will answer without tools.", "<response>I am not sure.</response>")


def random_tools(env: Any) -> str:
    if env.episode.tool_calls:
        call = env.episode.tool_calls[-1]
        return _turn("I will repeat what the tool said.",
                     f"<response>{call.result or call.error}</response>")
    rng = env.np_random
    offered = env.offered()
    name = sorted(offered)[int(rng.integers(len(offered)))]
    schema = offered[name].parameters.get("properties", {})
    parameters = {key: _made_up(spec, rng) for key, spec in schema.items()}
    return _turn("Let me try a tool.",
                 f"<tool_call>{json.dumps([{'name': name, 'parameters': parameters}])}"
                 "</tool_call>")


def _made_up(spec: dict[str, Any], rng: Any) -> Any:
    if "enum" in spec:
        return spec["enum"][int(rng.integers(len(spec["enum"])))]
    if spec.get("type") in ("integer", "number"):
        return int(rng.integers(1, 100))
    return ("Paris", "12:00", "1+1", "weather", "ABC")[int(rng.integers(5))]


def malformed(env: Any) -> str:
    return "I think the answer is 42."


SCRIPTED = {"oracle": oracle, "no_tools": no_tools, "random_tools": random_tools,
            "malformed": malformed}
