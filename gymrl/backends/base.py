"""The backend contract: a batch of chat requests in, one completion per request out."""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterator
from contextlib import contextmanager
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
        key: the conversation the request continues (one episode, say), or ``None``. A backend
            may keep the conversation's KV cache under it for the next request with the same
            key (the hf backend does; ``forget(keys)`` drops them).
    """

    messages: list[dict[str, str]]
    stop: tuple[str, ...] = ()
    env: Any = None
    key: Any = None


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


def forgetter(backend: Any) -> Callable[[list[Hashable]], None]:
    """``backend.forget`` (drop the KV caches kept under these request keys), or a no-op for a
    backend that keeps none. Duck-typed backends (plugins, test doubles) need not define it."""
    return getattr(backend, "forget", None) or (lambda keys: None)


@contextmanager
def sampling_stream_kept(backend: Any) -> Iterator[None]:
    """Run a block without moving ``backend``'s sampling stream: whatever it samples inside,
    it samples afterwards what it would have sampled had the block not run.

    A backend with a stream defines ``sampling_state()`` and ``set_sampling_state(state)``
    (hf: its seed generator; vllm: its call count); others (scripted, remote) are left alone.
    The learner evaluates inside this, so how often and on how many tasks it evaluates does not
    change the rollouts it trains on.
    """
    get = getattr(backend, "sampling_state", None)
    state = get() if get is not None else None
    try:
        yield
    finally:
        if get is not None:
            backend.set_sampling_state(state)


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


def check_sampling(*, max_new_tokens: int, temperature: float, top_p: float,
                   batch_size: int) -> None:
    """The sampling options every local model backend takes, checked alike."""
    from gymrl.errors import ConfigError

    if max_new_tokens < 1:
        raise ConfigError(f"max_new_tokens must be >= 1, got {max_new_tokens}")
    if temperature < 0:
        raise ConfigError(f"temperature must be >= 0, got {temperature}")
    if not 0 < top_p <= 1:
        raise ConfigError(f"top_p must be in (0, 1], got {top_p}")
    if batch_size < 1:
        raise ConfigError(f"batch_size must be >= 1, got {batch_size}")


def chat_prompt_ids(tokenizer: Any, requests: list[Request]
                    ) -> tuple[list[list[int]], list[tuple[str, ...]]]:
    """Each request's chat messages as prompt token ids (chat template, generation prompt
    added), and its non-empty stop strings."""
    prompts = [tokenizer.apply_chat_template(r.messages, add_generation_prompt=True,
                                             tokenize=False) for r in requests]
    # The chat template already holds any BOS token.
    ids = [tokenizer(p, add_special_tokens=False)["input_ids"] for p in prompts]
    return ids, [tuple(s for s in r.stop if s) for r in requests]
