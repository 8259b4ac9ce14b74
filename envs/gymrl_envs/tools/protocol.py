"""The ToolRL turn grammar, parsed strictly.

A valid policy turn is ``<think>...</think>`` followed by exactly one of
``<tool_call>CALLS</tool_call>`` or ``<response>...</response>``, with only whitespace outside
the tags. ``CALLS`` is a JSON list of ``{"name": ..., "parameters": {...}}`` objects; one object,
or one object per line (ToolRL's layout), is accepted too. ``<obs>`` is written by the env. The
parser never raises: every problem is a violation, and calls it could read are still returned
(the env runs them and shows their errors).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from gymrl.tags import clip, think_then_action

MAX_CALLS_PER_TURN = 5


@dataclass
class ParsedTurn:
    """What a policy turn says, and every way it breaks the grammar."""

    think: str | None = None
    calls: list[dict[str, Any]] | None = None  # None: no <tool_call>
    response: str | None = None
    violations: list[str] = field(default_factory=list)

    @property
    def valid(self) -> bool:
        return not self.violations


def parse_calls(content: str) -> tuple[list[dict[str, Any]], list[str]]:
    """The calls of a ``<tool_call>`` body, and what is wrong with it."""
    text = content.strip()
    if not text:
        return [], ["empty <tool_call>"]
    try:
        data: Any = json.loads(text)
    except (json.JSONDecodeError, RecursionError):
        data = []
        for line in text.splitlines():  # ToolRL writes one JSON object per line
            if not line.strip():
                continue
            try:
                data.append(json.loads(line))
            except (json.JSONDecodeError, RecursionError):
                return [], [f"<tool_call> is not valid JSON: {clip(text)!r}"]
    if isinstance(data, dict):
        data = [data]
    if not isinstance(data, list):
        return [], ["<tool_call> must hold a JSON list of {\"name\", \"parameters\"} objects"]
    calls, problems = [], []
    for i, item in enumerate(data, 1):
        if not isinstance(item, dict) or not isinstance(item.get("name"), str):
            problems.append(f"call {i} is not an object with a string \"name\"")
            continue
        parameters = item.get("parameters", {})
        extra = sorted(set(item) - {"name", "parameters"})
        if extra:
            problems.append(f"call {i} has unknown keys {extra} (use \"name\", \"parameters\")")
        if not isinstance(parameters, dict):
            problems.append(f"call {i}: \"parameters\" must be an object")
            parameters = {}
        calls.append({"name": item["name"], "parameters": parameters})
    if len(calls) > MAX_CALLS_PER_TURN:
        problems.append(f"{len(calls)} calls in one turn; at most {MAX_CALLS_PER_TURN}")
        calls = calls[:MAX_CALLS_PER_TURN]
    return calls, problems


def parse_turn(text: str, *, require_think: bool = True) -> ParsedTurn:
    """Parse one policy turn; collect violations instead of raising."""
    out = ParsedTurn()
    out.think, action, content, out.violations = think_then_action(
        text, actions=("tool_call", "response"), env_tags=("obs",), require_think=require_think)
    if action is None:
        return out
    if action == "response":
        out.response = content.strip()
        if not out.response:
            out.violations.append("empty <response>")
    else:
        out.calls, problems = parse_calls(content)
        out.violations.extend(problems)
    return out
