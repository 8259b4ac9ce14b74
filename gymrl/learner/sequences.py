"""Token sequences of multi-turn episodes: policy tokens are trained, env tokens are masked.

A sequence is the chat-templated prompt, then for each turn the policy's own sampled token ids
(trainable) and the template text that carries the env's observation into the next turn
(not trainable). The env text is found by rendering the chat template before and after the
observation and taking the difference, so any model's template works.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class Sequence:
    """One episode as tokens. ``mask[i]`` is 1 where ``ids[i]`` was written by the policy;
    ``turn[i]`` is the index of the policy turn that wrote it (-1 for prompt and env tokens)."""

    ids: list[int] = field(default_factory=list)
    mask: list[int] = field(default_factory=list)
    turn: list[int] = field(default_factory=list)

    def extend(self, ids: list[int], trainable: bool, turn: int = -1) -> None:
        self.ids.extend(ids)
        self.mask.extend([int(trainable)] * len(ids))
        self.turn.extend([turn if trainable else -1] * len(ids))

    @property
    def policy_tokens(self) -> int:
        return sum(self.mask)

    def turn_tokens(self) -> list[list[int]]:
        """The policy's token ids, turn by turn."""
        turns: dict[int, list[int]] = {}
        for token, turn in zip(self.ids, self.turn, strict=True):
            if turn >= 0:
                turns.setdefault(turn, []).append(token)
        return [turns[k] for k in sorted(turns)]


def render(tokenizer: Any, messages: list[dict[str, str]], *, generation_prompt: bool) -> str:
    return tokenizer.apply_chat_template(messages, add_generation_prompt=generation_prompt,
                                         tokenize=False)


def encode(tokenizer: Any, text: str) -> list[int]:
    return tokenizer(text, add_special_tokens=False)["input_ids"]


def prompt_ids(tokenizer: Any, messages: list[dict[str, str]]) -> list[int]:
    """The ids of the opening prompt, ready for the policy's first turn."""
    return encode(tokenizer, render(tokenizer, messages, generation_prompt=True))


def env_suffix(tokenizer: Any, messages: list[dict[str, str]], *, ended_with_eos: bool) -> str:
    """Template text after the last assistant message, through the next generation prompt.

    ``messages`` ends with ``[..., assistant, user(observation)]``.
    """
    head = render(tokenizer, messages[:-2], generation_prompt=True)
    content = messages[-2]["content"]
    full = render(tokenizer, messages, generation_prompt=True)
    if full.startswith(head + content):
        suffix = full[len(head) + len(content):]
    else:  # the template rewrote the content (e.g. stripped it): cut after its rendering
        before = render(tokenizer, messages[:-1], generation_prompt=False)
        suffix = full[len(before):] if full.startswith(before) else full
    eos = tokenizer.eos_token or ""
    if ended_with_eos and eos and suffix.startswith(eos):
        suffix = suffix[len(eos):]  # the policy already wrote the end-of-turn token
    return suffix


def demonstration(tokenizer: Any, messages: list[dict[str, str]]) -> Sequence:
    """A finished conversation as a training sequence (SFT): assistant texts are trainable.

    Each assistant turn is tokenized on its own, as a policy would have written it, and ends
    with the end-of-turn text the template puts after it only if the model must learn to stop
    there (the stop strings already end the turn, so it is left to the env text).
    """
    first_assistant = next(i for i, m in enumerate(messages) if m["role"] == "assistant")
    seq = Sequence()
    seq.extend(prompt_ids(tokenizer, messages[:first_assistant]), trainable=False)
    turn = 0
    for i in range(first_assistant, len(messages)):
        if messages[i]["role"] != "assistant":
            continue
        seq.extend(encode(tokenizer, messages[i]["content"]), trainable=True, turn=turn)
        turn += 1
        if i + 1 < len(messages):
            seq.extend(encode(tokenizer, env_suffix(tokenizer, messages[:i + 2],
                                                    ended_with_eos=False)), trainable=False)
    return seq
