"""``gymrl check``: Gymnasium's env checker, and the reward range proven by scripted policies."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from gymrl.config import EnvConfig, RewardConfig, load_config, to_container


@dataclass
class CheckConfig:
    env: EnvConfig = field(default_factory=EnvConfig, metadata={"help": "the environment"})
    reward: RewardConfig = field(default_factory=RewardConfig, metadata={"help": "the reward"})
    episodes: int = field(default=64, metadata={"help": "episodes per scripted policy"})
    seed: int = field(default=0, metadata={"help": "first episode seed"})
    tolerance: float = field(default=1e-6, metadata={"help": "how close counts as reached"})


def check_env_and_rewards(overrides: list[str]) -> dict[str, Any]:
    """Run ``check_env`` and every scripted policy; report the rewards they reach."""
    from gymnasium.utils.env_checker import check_env

    from gymrl.backends.scripted import ScriptedBackend
    from gymrl.evaluate import run_episodes
    from gymrl.make import make_env, make_reward

    cfg = to_container(load_config(CheckConfig, overrides))
    reward = cfg["reward"]

    def fresh_reward() -> Any:
        return make_reward(cfg["env"]["name"], reward)

    shared = fresh_reward()

    def factory() -> Any:
        return make_env(cfg["env"]["name"], reward=shared, **cfg["env"]["options"])

    env = factory()
    try:
        check_env(env, skip_render_check=True)
        status = "ok"
    except Exception as exc:  # the checker's verdict is the report, not a crash
        status = f"{type(exc).__name__}: {exc}"
    lo, hi = env.reward_fn.range
    policies: dict[str, dict[str, float]] = {}
    for name in sorted(env.scripted_policies):
        shared = fresh_reward()  # each policy starts from a fresh reward state
        rewards = [e.reward for e, _ in run_episodes(factory, ScriptedBackend(name),
                                                     episodes=cfg["episodes"], seed=cfg["seed"],
                                                     batch_size=8)]
        policies[name] = {"min": min(rewards), "max": max(rewards),
                          "mean": sum(rewards) / len(rewards)}
    tol = cfg["tolerance"]
    reached_lo = any(abs(p["min"] - lo) <= tol for p in policies.values())
    reached_hi = any(abs(p["max"] - hi) <= tol for p in policies.values())
    below = [n for n, p in policies.items() if p["min"] < lo - tol or p["max"] > hi + tol]
    if below:
        status = f"rewards outside the declared range {lo, hi} for policies {below}"
    return {"check_env": status, "reward": env.reward_fn.name, "range": [lo, hi],
            "policies": policies, "reached": [reached_lo, reached_hi]}
