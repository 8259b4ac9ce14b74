"""Multi-turn rollouts for GRPO: G episodes per task, batched across groups, exact token ids."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from gymrl.backends.base import forgetter
from gymrl.episode import Episode
from gymrl.learner.sequences import Sequence, encode, env_suffix, prompt_ids


@dataclass
class Rollout:
    """One episode of a group: its record, its token sequence and the sampled log-probs."""

    group: int
    env: Any
    messages: list[dict[str, str]] = field(default_factory=list)
    episode: Episode | None = None
    seq: Sequence = field(default_factory=Sequence)
    logprobs: list[float] = field(default_factory=list)
    turns: int = 0
    done: bool = False

    @property
    def reward(self) -> float:
        return self.episode.reward if self.episode is not None else 0.0

    @property
    def turn_rewards(self) -> list[float]:
        """The dense reward of each policy turn (0 where the reward gave none)."""
        if self.episode is None:
            return []
        return [t.rewards.get("total", 0.0) for t in self.episode.policy_turns]


def reset_group(envs: list[Any], task_seed: int, group: int, *,
                same_seed: bool = False) -> list[Rollout]:
    """Reset ``envs`` on one task: the first env picks it, the rest get it by ``task_id``.

    By default each rollout gets its own seed, so env randomness (an expert's luck) differs
    within the group: one lucky draw does not make every rollout of the group look alike.
    ``same_seed``: every env is reset with the task's seed and id (common random numbers), so
    its random draws are the same for every rollout and identical actions earn identical
    rewards; a difference in reward is then a difference in what the policy did.
    """
    rollouts = []
    task_id = None
    for j, env in enumerate(envs):
        seed = task_seed if task_id is None or same_seed else task_seed * 1009 + j
        options = None if task_id is None else {"task_id": task_id}
        _, info = env.reset(seed=seed, options=options)
        if task_id is None:
            task_id = env.unwrapped.episode.task.id
            if same_seed:  # picking the task drew from the env's RNG: reset as the others are
                _, info = env.reset(seed=seed, options={"task_id": task_id})
        rollouts.append(Rollout(group=group, env=env, messages=info["messages"]))
    return rollouts


def run_rollouts(backend: Any, rollouts: list[Rollout], *,
                 on_done: Callable[[Rollout], None] | None = None) -> list[Rollout]:
    """Play every rollout to its end; one batched ``generate_ids`` call per turn and chunk."""
    tok = backend.tokenizer
    eos_ids = backend.eos_ids
    for r in rollouts:
        r.seq.extend(prompt_ids(tok, r.messages), trainable=False)
    active = [r for r in rollouts if not r.done]
    # A backend that keeps KV caches between turns (hf) drops a rollout's when it ends.
    forget = forgetter(backend)
    try:
        _play(backend, active, eos_ids, on_done, forget)
    finally:
        forget([id(r) for r in rollouts])  # they belong to these weights; an update follows
    return rollouts


def _play(backend: Any, active: list[Rollout], eos_ids: set[int],
          on_done: Callable[[Rollout], None] | None,
          forget: Callable[[list[int]], None]) -> None:
    tok = backend.tokenizer
    while active:
        completions = []
        for start in range(0, len(active), backend.batch_size):
            chunk = active[start:start + backend.batch_size]
            # Each rollout's key: a backend that keeps KV caches continues its last turn.
            completions.extend(backend.generate_ids(
                [r.seq.ids for r in chunk], [tuple(r.env.unwrapped.stop) for r in chunk],
                keys=[id(r) for r in chunk]))
        for r, c in zip(active, completions, strict=True):
            ids = c.token_ids or []
            r.seq.extend(ids, trainable=True, turn=r.turns)
            r.turns += 1
            r.logprobs.extend(c.logprobs or [])
            _, _, terminated, truncated, info = r.env.step(c.text)
            episode = r.env.unwrapped.episode
            turn = episode.policy_turns[-1]
            turn.token_ids, turn.logprobs = list(ids), list(c.logprobs or [])
            if terminated or truncated:
                r.done, r.episode = True, episode
                forget([id(r)])
                if on_done is not None:
                    on_done(r)
            else:
                ended = bool(ids) and ids[-1] in eos_ids
                r.seq.extend(encode(tok, env_suffix(tok, info["messages"], ended_with_eos=ended)),
                             trainable=False)
        active = [r for r in active if not r.done]
