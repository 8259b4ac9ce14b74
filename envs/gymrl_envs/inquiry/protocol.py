"""The inquiry turn grammar, parsed strictly.

A valid policy turn is ``<think>...</think>`` (optional when the env says so) followed by
exactly one of ``<ask>question</ask>`` or ``<spec>{json}</spec>``, with only whitespace outside
the tags. The spec is a JSON object naming one allowed value per attribute. ``<user>`` is
written by the env. The parser never raises: every problem is a violation, and whatever part
of a spec it can read is still returned (a wrong or missing attribute just counts as wrong).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from gymrl.tags import clip, think_then_action

MAX_QUESTION_CHARS = 500


@dataclass
class ParsedTurn:
    """What a policy turn says, and every way it breaks the grammar."""

    think: str | None = None
    action: str | None = None  # "ask" | "spec" | None
    question: str | None = None
    spec: dict[str, str] | None = None  # the valid attribute -> value pairs of a <spec>
    violations: list[str] = field(default_factory=list)


def _key(text: str) -> str:
    return "_".join(text.strip().lower().replace("-", " ").split())


def parse_spec(content: str, schema: Mapping[str, tuple[str, ...]]
               ) -> tuple[dict[str, str], list[str]]:
    """The valid ``attribute -> value`` pairs of a ``<spec>`` body, and what is wrong with it.

    Names are matched case-insensitively, with spaces and hyphens read as underscores.
    """
    try:
        data: Any = json.loads(content)
    except (json.JSONDecodeError, RecursionError):
        return {}, [f"<spec> is not valid JSON: {clip(content)!r}"]
    if not isinstance(data, dict):
        return {}, ["<spec> must hold a JSON object of attribute: value pairs"]
    spec: dict[str, str] = {}
    problems: list[str] = []
    for raw_key, raw_value in data.items():
        name = _key(raw_key)
        if name not in schema:
            problems.append(f"unknown attribute {clip(raw_key)!r} in <spec>; allowed: "
                            f"{', '.join(schema)}")
            continue
        value = _key(raw_value) if isinstance(raw_value, str) else None
        if value not in schema[name]:
            problems.append(f"{clip(str(raw_value))!r} is not a value of {name!r}; allowed: "
                            f"{', '.join(schema[name])}")
            continue
        spec[name] = value
    missing = [name for name in schema if name not in spec
               and not any(_key(k) == name for k in data)]
    if missing:
        problems.append(f"<spec> lacks {', '.join(missing)}")
    return spec, problems


def parse_turn(text: str, schema: Mapping[str, tuple[str, ...]], *,
               require_think: bool = True) -> ParsedTurn:
    """Parse one policy turn against the attribute schema; collect violations, never raise."""
    out = ParsedTurn()
    out.think, out.action, content, out.violations = think_then_action(
        text, actions=("ask", "spec"), env_tags=("user",), require_think=require_think)
    if out.action == "ask":
        question = content.strip()
        if not question:
            out.violations.append("empty <ask>")
        elif len(question) > MAX_QUESTION_CHARS:
            out.violations.append(f"question of {len(question)} characters; at most "
                                  f"{MAX_QUESTION_CHARS}")
        else:
            out.question = question
    elif out.action == "spec":
        out.spec, problems = parse_spec(content, schema)
        out.violations.extend(problems)
    return out
