"""``gymrl eval``: run a policy on an env for N seeded episodes and summarise the results.

Episodes run in lockstep batches, so an LLM backend generates one batch per turn.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from gymrl.backends.base import Backend, Request, forgetter
from gymrl.episode import Episode
from gymrl.errors import BackendError, ConfigError


def run_episodes(make_env: Callable[[], Any], backend: Backend, *, episodes: int, seed: int = 0,
                 batch_size: int = 16,
                 on_episode: Callable[[Episode, dict[str, Any]], None] | None = None,
                 ) -> list[tuple[Episode, dict[str, Any]]]:
    """Run ``episodes`` episodes (episode i reset with ``seed + i``); keep their order.

    Returns:
        (episode, metrics) pairs; metrics come from the env's ``metrics(episode)`` if it has one.
    """
    batch_size = max(1, min(batch_size, episodes))
    envs = [make_env() for _ in range(batch_size)]
    results: list[tuple[Episode, dict[str, Any]] | None] = [None] * episodes
    slots: list[tuple[Any, int, dict[str, Any]] | None] = [None] * batch_size
    next_index = 0

    def refill(slot: int) -> None:
        nonlocal next_index
        if next_index >= episodes:
            slots[slot] = None
            return
        env = envs[slot]
        _, info = env.reset(seed=seed + next_index)
        slots[slot] = (env, next_index, info)
        next_index += 1

    for slot in range(batch_size):
        refill(slot)
    # A backend that keeps KV caches between turns (hf) keys them by run and episode.
    forget = forgetter(backend)
    run = id(results)
    try:
        while any(s is not None for s in slots):
            active = [i for i, s in enumerate(slots) if s is not None]
            # Through .unwrapped: a wrapped env (gymnasium.make, a timing wrapper) does not
            # forward the env's own attributes.
            requests = [Request(messages=slots[i][2]["messages"],
                                stop=tuple(slots[i][0].unwrapped.stop),
                                env=slots[i][0].unwrapped, key=(run, slots[i][1]))
                        for i in active]
            completions = backend.generate(requests)
            if len(completions) != len(requests):
                raise BackendError(f"backend {getattr(backend, 'name', backend)!r} returned "
                                   f"{len(completions)} completions for {len(requests)} requests")
            for i, completion in zip(active, completions, strict=True):
                env, index, _ = slots[i]
                _, _, terminated, truncated, info = env.step(completion.text)
                episode: Episode = env.unwrapped.episode
                turn = [t for t in episode.turns if t.role == "policy"][-1]
                turn.token_ids, turn.logprobs = completion.token_ids, completion.logprobs
                turn.facts.setdefault("completion_tokens", completion.completion_tokens)
                if terminated or truncated:
                    forget([(run, index)])
                    metrics_fn = getattr(env.unwrapped, "metrics", None)
                    metrics = metrics_fn(episode) if metrics_fn else {}
                    results[index] = (episode, metrics)
                    if on_episode is not None:
                        on_episode(episode, metrics)
                    refill(i)
                else:
                    slots[i] = (env, index, info)
    finally:  # a failed run leaves no KV caches behind in the backend
        forget([(run, slot[1]) for slot in slots if slot is not None])
    return [r for r in results if r is not None]


def summarise(records: list[tuple[Episode, dict[str, Any]]],
              group_by: tuple[str, ...] = ("kind", "domain"),
              ratios: Mapping[str, tuple[str, str]] | None = None) -> dict[str, Any]:
    """Means of every numeric metric and reward component, with standard errors; per group.

    Args:
        records: (episode, metrics) pairs, as :func:`run_episodes` returns them.
        group_by: metrics whose string values split the records into groups (``by_<key>``).
        ratios: metrics reported as a pooled ratio instead of a mean, ``name -> (numerator,
            denominator)``: over the group's episodes that report both, the sum of the
            numerator metric over the sum of the denominator metric (absent when that sum is
            0). An env declares them in ``LLMEnv.summary_ratios``.
    """

    def means(rows: list[tuple[Episode, dict[str, Any]]]) -> dict[str, float]:
        values: dict[str, list[float]] = defaultdict(list)
        for episode, metrics in rows:
            values["reward"].append(episode.reward)
            for name, value in episode.rewards.items():
                values[f"reward/{name}"].append(value)
            for name, value in metrics.items():
                if isinstance(value, bool | int | float) and not isinstance(value, str):
                    values[name].append(float(value))
        out: dict[str, float] = {"episodes": len(rows)}
        for name, vals in values.items():
            mean = sum(vals) / len(vals)
            out[name] = mean
            if name in ("reward", "accuracy") and len(vals) > 1:
                var = sum((v - mean) ** 2 for v in vals) / (len(vals) - 1)
                out[f"{name}_stderr"] = math.sqrt(var / len(vals))
        for name, (numerator, denominator) in (ratios or {}).items():
            out.pop(name, None)
            pairs = [(float(m[numerator]), float(m[denominator])) for _, m in rows
                     if isinstance(m.get(numerator), int | float)
                     and isinstance(m.get(denominator), int | float)]
            den = math.fsum(d for _, d in pairs)
            if den:
                out[name] = math.fsum(n for n, _ in pairs) / den
        correct = sum(m.get("accuracy", 0.0) for _, m in rows)
        if "cost_usd" in values and correct:
            out["cost_per_correct_usd"] = sum(values["cost_usd"]) / correct
        return out

    summary: dict[str, Any] = {"overall": means(records)}
    for key in group_by:
        groups: dict[str, list] = defaultdict(list)
        for episode, metrics in records:
            if isinstance(metrics.get(key), str):
                groups[metrics[key]].append((episode, metrics))
        if groups:
            summary[f"by_{key}"] = {g: means(rows) for g, rows in sorted(groups.items())}
    return summary


def render_episodes(env: Any, records: list[tuple[Episode, dict[str, Any]]],
                    out_dir: str | Path, n: int) -> list[Path]:
    """Draw the first ``n`` finished episodes as ``out_dir/episode-XXXX.png`` (XXXX: the
    episode's index in ``records``) with the env's ``render_episode_png``.

    Raises:
        ConfigError: naming the env, when it cannot draw episodes (see
            ``LLMEnv.check_render_episode_png``).
    """
    env = getattr(env, "unwrapped", env)
    check_can_render(env)
    out_dir = Path(out_dir)
    return [Path(env.render_episode_png(episode, out_dir / f"episode-{i:04d}.png"))
            for i, (episode, _) in enumerate(records[:n])]


def check_can_render(env: Any) -> None:
    """Raise ConfigError, naming the env, unless it can draw episodes as configured."""
    env = getattr(env, "unwrapped", env)
    check = getattr(env, "check_render_episode_png", None)
    if check is None:
        raise ConfigError(f"env {getattr(env, 'name', type(env).__name__)!r} cannot draw "
                          "episodes as PNG (render=N needs an env that implements "
                          "render_episode_png(episode, path))")
    check()


def episode_record(episode: Episode, metrics: dict[str, Any]) -> dict[str, Any]:
    """One per-episode record for results files (hidden task fields included: it is a log)."""
    return {
        "task_id": episode.task.id,
        "seed": episode.seed,
        "reward": episode.reward,
        "rewards": episode.rewards,
        "metrics": metrics,
        "termination": episode.termination,
        "usage": episode.usage(),
        "diagnostics": episode.diagnostics,
        "turns": [{"role": t.role, "text": t.text,
                   "tool_calls": [{"name": c.name, "arguments": c.arguments, "error": c.error,
                                   "cost_usd": c.cost_usd, "prompt_tokens": c.prompt_tokens,
                                   "completion_tokens": c.completion_tokens}
                                  for c in t.tool_calls],
                   "facts": t.facts} for t in episode.turns],
        "answer": episode.task.answer,
    }



def paired_change(before: list[dict[str, Any]], after: list[dict[str, Any]]) -> dict[str, Any]:
    """How a policy changed between two evaluations of the same episodes (per-episode records).

    Episodes are paired by ``(task_id, seed)``, so the standard error is that of the paired
    difference. Returns reward, accuracy and cost per correct answer before and after, the mean
    reward difference with its standard error, and ``significant`` (difference > 2 SE).
    """
    key = lambda r: (r["task_id"], r.get("seed"))  # noqa: E731
    old = {key(r): r for r in before}
    pairs = [(old[key(r)], r) for r in after if key(r) in old]
    if not pairs:
        raise ValueError("the two evaluations share no episode (task_id, seed)")
    diffs = [b["reward"] - a["reward"] for a, b in pairs]
    n = len(diffs)
    mean = sum(diffs) / n
    se = math.sqrt(sum((d - mean) ** 2 for d in diffs) / (n - 1) / n) if n > 1 else math.nan
    out: dict[str, Any] = {"episodes": n, "reward_diff": mean, "reward_diff_stderr": se,
                           "significant": bool(n > 1 and mean > 2 * se)}
    for label, side in (("before", 0), ("after", 1)):
        rows = [p[side] for p in pairs]
        out[f"reward_{label}"] = sum(r["reward"] for r in rows) / n
        metrics = [r.get("metrics", {}) for r in rows]
        if all("accuracy" in m for m in metrics):
            correct = sum(float(m["accuracy"]) for m in metrics)
            out[f"accuracy_{label}"] = correct / n
            if all("cost_usd" in m for m in metrics):
                cost = sum(float(m["cost_usd"]) for m in metrics)
                out[f"cost_per_correct_usd_{label}"] = cost / correct if correct else math.inf
    return out
