"""The backend contract: a batch of chat requests in, one completion per request out."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class Request:
    """One generation request.

    Attributes:
        messages: the chat so far, ``[{"role": ..., "content": ...}, ...]``.
        stop: strings that end the turn; the completion includes the stop string it hit.
        env: the (unwrapped) env the request comes from. Only scripted policies read it: they
            are privileged baselines by definition. Model backends must ignore it.
    """

    messages: list[dict[str, str]]
    stop: tuple[str, ...] = ()
    env: Any = None


@dataclass
class Completion:
    """A backend's answer to one request, with what it cost."""

    text: str
    prompt_tokens: int = 0
    completion_tokens: int = 0
    token_ids: list[int] | None = None
    logprobs: list[float] | None = None
    finish_reason: str = "stop"
    meta: dict[str, Any] = field(default_factory=dict)


class Backend:
    """Base class of backends. ``generate`` must return one Completion per request, in order."""

    name: str = ""

    def generate(self, requests: list[Request]) -> list[Completion]:
        raise NotImplementedError

    def close(self) -> None:
        """Release resources (HTTP clients, models)."""


def truncate_at_stop(text: str, stop: tuple[str, ...] | list[str]) -> tuple[str, bool]:
    """Cut ``text`` just after the earliest stop string; say whether one was found."""
    best = None
    for s in stop:
        if not s:
            continue
        i = text.find(s)
        if i != -1 and (best is None or i + len(s) < best):
            best = i + len(s)
    if best is None:
        return text, False
    return text[:best], True
