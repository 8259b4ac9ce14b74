"""Strict scanning of tag-grammar turns (``<think>...</think><answer>...</answer>``).

Envs whose protocol is XML-like tags share this scanner: it finds the top-level tagged
elements in order and reports, instead of raising, text outside tags, unclosed, nested and
stray closing tags. What the elements must be (which tags, in what order) is the env's rule.
"""

from __future__ import annotations

import re
from functools import cache


@cache
def _tag_re(tags: tuple[str, ...]) -> re.Pattern[str]:
    return re.compile(r"<(/?)(" + "|".join(map(re.escape, tags)) + r")\s*>", re.IGNORECASE)


def scan_tags(text: str, tags: tuple[str, ...],
              final: tuple[str, ...] = ()) -> tuple[list[tuple[str, str]], list[str]]:
    """The top-level ``(tag, content)`` elements of ``text``, and the grammar violations.

    Args:
        text: one policy turn.
        tags: the tag names the grammar knows (others are plain text).
        final: tags after which nothing may follow; text after one is reported as
            ``text after </tag>`` rather than ``text outside tags``.
    """
    elements: list[tuple[str, str]] = []
    violations: list[str] = []
    open_tag: str | None = None
    open_end = cursor = 0

    def outside(chunk: str) -> None:
        if chunk.strip():
            last = elements[-1][0] if elements else None
            where = f"after </{last}>" if last in final else "outside tags"
            violations.append(f"text {where}: {clip(chunk)!r}")

    for m in _tag_re(tags).finditer(text):
        closing, tag = m.group(1) == "/", m.group(2).lower()
        if open_tag is None:
            outside(text[cursor:m.start()])
            if closing:
                violations.append(f"</{tag}> closes nothing")
                cursor = m.end()
                continue
            open_tag, open_end = tag, m.end()
        elif closing and tag == open_tag:
            elements.append((tag, text[open_end:m.start()]))
            open_tag = None
            cursor = m.end()
        elif closing:
            violations.append(f"</{tag}> closes <{open_tag}>")
        else:
            violations.append(f"<{tag}> nested inside <{open_tag}>")
    if open_tag is not None:
        violations.append(f"<{open_tag}> is never closed")
    else:
        outside(text[cursor:])
    return elements, violations


def clip(text: str, n: int = 40) -> str:
    """A short, stripped excerpt for messages."""
    text = text.strip()
    return text if len(text) <= n else text[:n] + "..."


def think_then_action(text: str, *, actions: tuple[str, str], env_tags: tuple[str, ...] = (),
                      require_think: bool = True
                      ) -> tuple[str | None, str | None, str, list[str]]:
    """The common turn rule: ``<think>...</think>`` then exactly one of two action tags.

    Args:
        text: one policy turn.
        actions: the two action tags, the second one final (nothing may follow it).
        env_tags: tags only the env writes (the policy writing one is a violation).
        require_think: whether a missing ``<think>`` is a violation.

    Returns:
        (think text, the first action's tag, its raw content, violations).
    """
    elements, violations = scan_tags(text, ("think", *actions, *env_tags), final=actions[1:])
    tags = [tag for tag, _ in elements]
    for tag in env_tags:
        if tag in tags:
            violations.append(f"<{tag}> is written by the environment, not the policy")
    thinks = [c for tag, c in elements if tag == "think"]
    found = [(tag, c) for tag, c in elements if tag in actions]
    if len(thinks) > 1:
        violations.append("more than one <think>")
    if not thinks and require_think:
        violations.append("missing <think>...</think>")
    think = thinks[0] if thinks else None
    if not found:
        a, b = actions
        violations.append(f"missing <{a}>...</{a}> or <{b}>...</{b}>")
        return think, None, "", violations
    if len(found) > 1:
        violations.append(f"more than one action (<{actions[0]}>/<{actions[1]}>) in one turn")
    if thinks and tags.index("think") > tags.index(found[0][0]):
        violations.append("<think> must come before the action")
    return think, found[0][0], found[0][1], violations
