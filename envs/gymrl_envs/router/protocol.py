"""The Router-R1 turn grammar, parsed strictly.

A valid policy turn is ``<think>...</think>`` followed by exactly one action, either
``<search>MODEL: query</search>`` or ``<answer>...</answer>``, with only whitespace outside the
tags. Unclosed, nested or stray tags, a missing action, two actions, text after ``</answer>``
and ``<information>`` written by the policy are violations. The parser never raises.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from gymrl.tags import scan_tags

TAGS = ("think", "search", "answer", "information")
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
    elements, out.violations = scan_tags(text, TAGS, final=("answer",))
    tags = [tag for tag, _ in elements]
    if "information" in tags:
        out.violations.append("<information> is written by the environment, not the policy")
    thinks = [c for tag, c in elements if tag == "think"]
    actions = [(tag, c) for tag, c in elements if tag in ("search", "answer")]
    if len(thinks) > 1:
        out.violations.append("more than one <think>")
    if thinks:
        out.think = thinks[0]
    elif require_think:
        out.violations.append("missing <think>...</think>")
    if not actions:
        out.violations.append("missing <search>...</search> or <answer>...</answer>")
        return out
    if len(actions) > 1:
        out.violations.append("more than one action (<search>/<answer>) in one turn")
    if thinks and tags.index("think") > tags.index(actions[0][0]):
        out.violations.append("<think> must come before the action")
    out.action, out.content = actions[0][0], actions[0][1].strip()
    if out.action == "answer" and not out.content:
        out.violations.append("empty <answer>")
    if out.action == "search":
        m = _SEARCH_RE.match(out.content)
        if m is None:
            out.violations.append("<search> must hold 'MODEL: query'")
        else:
            out.model, out.query = m.group(1), m.group(2)
    return out
