"""Exact-belief cost of the inquiry env as the intent space grows, and its env steps/s.

1. Belief operations on synthetic intent spaces of 10^3 to 10^6 joint intents (10 values per
   attribute, 3 to 6 attributes, 30% of the combinations invalid): one exact update (multiply
   by a likelihood along one axis and renormalise), the entropy, and the marginals of every
   attribute (what the oracle's expected-gain step needs). Median over ``--repeats`` runs.
2. The ``inquiry`` env's steps/s (policy turns, scripted policies, expert users) per domain,
   through ``gymrl.evaluate.run_episodes`` as ``gymrl eval`` runs it.
3. With ``--rollout MODEL`` (e.g. ``hf:smollm2``, the embedded model): the env's share of a real
   rollout. ``--rollout-episodes`` episodes per domain (mixed users, batches of 16) run through
   the model as ``gymrl eval`` runs them; the time inside the env's ``reset`` and ``step``
   (users, belief updates, rewards) is set against the wall time of the whole rollout.

Usage::

    python benchmarks/inquiry_overhead.py
    python benchmarks/inquiry_overhead.py --sizes 1000,10000 --episodes 20 --no-plot
    python benchmarks/inquiry_overhead.py --rollout hf:smollm2     # + env share of a rollout

Writes ``benchmarks/results/inquiry_overhead.json`` (and ``.png``). Parts 1-2: numpy only.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np

from gymrl.results import atomic_write_json, versions

ROOT = Path(__file__).resolve().parent
VALUES_PER_ATTRIBUTE = 10


def _median_ms(fn: Any, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times)


def belief_cost(size: int, repeats: int, seed: int = 0) -> dict[str, Any]:
    """Time the exact belief operations on a space of ``size`` joint intents."""
    from gymrl_envs.inquiry.space import Attribute, IntentSpace, entropy_bits

    k = round(np.log10(size))
    rng = np.random.default_rng(seed)
    prior = rng.gamma(0.5, size=(VALUES_PER_ATTRIBUTE,) * k)
    prior[rng.random(prior.shape) < 0.3] = 0.0
    space = IntentSpace([Attribute(f"a{i}", tuple(f"v{j}" for j in range(VALUES_PER_ATTRIBUTE)))
                         for i in range(k)], prior)
    likelihood = rng.random(VALUES_PER_ATTRIBUTE)
    belief = space.prior
    return {
        "joint_intents": space.size,
        "attributes": k,
        "update_ms": _median_ms(lambda: space.update(belief, "a0", likelihood), repeats),
        "entropy_ms": _median_ms(lambda: entropy_bits(belief), repeats),
        "all_marginals_ms": _median_ms(lambda: [space.marginal(belief, n)
                                                for n in space.names], repeats),
        "belief_mb": belief.nbytes / 2**20,
    }


def env_speed(domain: str, policy: str, episodes: int) -> dict[str, Any]:
    from gymrl.backends.scripted import ScriptedBackend
    from gymrl.evaluate import run_episodes
    from gymrl.make import make_env

    make_env("inquiry", domain=domain)  # tasks and prior built before timing
    start = time.perf_counter()
    records = run_episodes(lambda: make_env("inquiry", domain=domain, user="expert"),
                           ScriptedBackend(policy), episodes=episodes, seed=0)
    elapsed = time.perf_counter() - start
    steps = sum(len(e.policy_turns) for e, _ in records)
    return {"domain": domain, "policy": policy, "episodes": episodes, "steps": steps,
            "steps_per_s": steps / elapsed, "episodes_per_s": episodes / elapsed}


def rollout_share(model: str, domain: str, episodes: int,
                  options: dict[str, Any] | None = None) -> dict[str, Any]:
    """Seconds inside the env (reset + step) against the wall time of a real model's rollout.

    ``options`` go to the backend (``max_new_tokens``: a turn's length, the learner's 64 by
    default in ``main``)."""
    import gymnasium as gym

    from gymrl.evaluate import run_episodes
    from gymrl.make import make_backend, make_env

    class Timed(gym.Wrapper):
        seconds = 0.0

        def reset(self, **kwargs: Any) -> Any:
            start = time.perf_counter()
            try:
                return self.env.reset(**kwargs)
            finally:
                Timed.seconds += time.perf_counter() - start

        def step(self, action: Any) -> Any:
            start = time.perf_counter()
            try:
                return self.env.step(action)
            finally:
                Timed.seconds += time.perf_counter() - start

    backend = make_backend(model, options or {})
    make_env("inquiry", domain=domain)  # tasks and prior built before timing
    start = time.perf_counter()
    records = run_episodes(lambda: Timed(make_env("inquiry", domain=domain, user="mixed")),
                           backend, episodes=episodes, seed=0)
    wall = time.perf_counter() - start
    turns = sum(len(e.policy_turns) for e, _ in records)
    return {"domain": domain, "model": model, "episodes": episodes, "policy_turns": turns,
            "wall_s": wall, "env_s": Timed.seconds, "env_share": Timed.seconds / wall,
            "env_ms_per_turn": Timed.seconds / max(turns, 1) * 1e3,
            "wall_ms_per_turn": wall / max(turns, 1) * 1e3}


def plot(report: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    sizes = [r["joint_intents"] for r in report["belief"]]
    for key in ("update_ms", "entropy_ms", "all_marginals_ms"):
        left.plot(sizes, [r[key] for r in report["belief"]], marker="o", label=key[:-3])
    left.set(xscale="log", yscale="log", xlabel="joint intents", ylabel="ms (median)",
             title="exact belief operations")
    left.legend()
    labels = [f"{r['domain']}\n{r['policy']}" for r in report["env"]]
    right.bar(labels, [r["steps_per_s"] for r in report["env"]])
    right.set(ylabel="env steps/s", title="inquiry env, scripted policies, expert users")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="1000,10000,100000,1000000",
                        help="comma-separated joint sizes, powers of 10")
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--episodes", type=int, default=100)
    parser.add_argument("--policies", default="oracle,random_ask,never_ask")
    parser.add_argument("--output", type=Path,
                        default=ROOT / "results" / "inquiry_overhead.json")
    parser.add_argument("--no-plot", action="store_true")
    parser.add_argument("--rollout", help="a policy backend, e.g. hf:smollm2: measure the "
                                          "env's share of its rollouts")
    parser.add_argument("--rollout-episodes", type=int, default=32)
    parser.add_argument("--rollout-tokens", type=int, default=64,
                        help="tokens per policy turn (the learner's rollout.max_new_tokens)")
    args = parser.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",")]
    bad = [s for s in sizes if s < 10 or 10 ** round(np.log10(s)) != s]
    if bad:
        raise SystemExit(f"--sizes must be powers of 10 (>= 10), got {bad}")
    report: dict[str, Any] = {
        "benchmark": "inquiry_overhead",
        "machine": versions(),
        "belief": [belief_cost(s, args.repeats) for s in sizes],
        "env": [env_speed(d, p, args.episodes) for d in ("diagram", "restaurant")
                for p in args.policies.split(",")],
    }
    if args.rollout:
        report["rollout"] = [rollout_share(args.rollout, d, args.rollout_episodes,
                                          {"max_new_tokens": args.rollout_tokens})
                             for d in ("diagram", "restaurant")]
    atomic_write_json(args.output, report)
    if not args.no_plot:
        plot(report, args.output.with_suffix(".png"))
    for row in report["belief"]:
        print(f"{row['joint_intents']:>9} intents: update {row['update_ms']:.3f} ms, entropy "
              f"{row['entropy_ms']:.3f} ms, marginals {row['all_marginals_ms']:.3f} ms")
    for row in report["env"]:
        print(f"{row['domain']:>10} {row['policy']:>10}: {row['steps_per_s']:.0f} steps/s")
    for row in report.get("rollout", []):
        print(f"{row['domain']:>10} {row['model']}: env {row['env_ms_per_turn']:.2f} ms of "
              f"{row['wall_ms_per_turn']:.0f} ms per policy turn ({100 * row['env_share']:.2f}%)")
    return report


if __name__ == "__main__":
    main()
