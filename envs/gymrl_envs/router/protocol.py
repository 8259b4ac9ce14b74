"""The Router-R1 turn grammar, parsed strictly.

A valid policy turn is ``<think>...</think>`` followed by exactly one action, either
``<search>MODEL: query</search>`` or ``<answer>...</answer>``, with only whitespace outside the
tags. Unclosed, nested or stray tags, a missing action, two actions, text after ``</answer>``
and ``<information>`` written by the policy are violations. The parser never raises.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from gymrl.tags import think_then_action

_SEARCH_RE = re.compile(r"^\s*([A-Za-z0-9][\w.\-/]*)\s*:\s*(\S.*?)\s*$", re.DOTALL)


@dataclass
class ParsedTurn:
    """What a policy turn says, and every way it breaks the grammar."""

    think: str | None = None
    action: str | None = None  # "search" or "answer"
    content: str = ""
    model: str | None = None
    query: str | None = None
    violations: list[str] = field(default_factory=list)

    @property
    def valid(self) -> bool:
        return not self.violations


def parse_turn(text: str, *, require_think: bool = True) -> ParsedTurn:
    """Parse one policy turn; collect violations instead of raising."""
    out = ParsedTurn()
    out.think, out.action, content, out.violations = think_then_action(
        text, actions=("search", "answer"), env_tags=("information",),
        require_think=require_think)
    if out.action is None:
        return out
    out.content = content.strip()
    if out.action == "answer" and not out.content:
        out.violations.append("empty <answer>")
    if out.action == "search":
        m = _SEARCH_RE.match(out.content)
        if m is None:
            out.violations.append("<search> must hold 'MODEL: query'")
        else:
            out.model, out.query = m.group(1), m.group(2)
    return out
