"""Router env overhead: episodes/s with scripted policies, and the env's share of a rollout.

Two questions, one script:

1. How fast does the ``router`` env run? Scripted policies (``oracle``, ``strongest``,
   ``cheapest``, ``random``) play it through :func:`gymrl.evaluate.run_episodes`, the path that
   ``gymrl eval`` takes, so the time covers the policy, the env, the reward and the metrics.
   Target: at least 2000 episodes/s.
2. What share of an LLM rollout is spent outside the model? The actions of those episodes are
   replayed into a fresh env (``reset`` + ``step``, reward included, no policy), which gives the
   env + reward seconds per episode. The model's seconds for the same episode are the
   completion tokens the policy wrote divided by a generation throughput (tokens/s).
   ``env_share = env_s / (env_s + model_s)``; target: below 2%. Prompt processing (prefill) is
   left out of the model's time, so the share is an upper bound.

The default throughput, 59 tokens/s, is SmolLM2-135M batched ``generate`` at batch 8 on the
project's 2-core CPU (DESIGN.md, "Compute"); ``--model-tokens-per-s`` overrides it and
``--measure-model PATH`` measures it with :class:`gymrl.backends.hf.HFBackend` on a local model
directory (whose tokenizer then also counts the completion tokens).

Usage::

    python benchmarks/env_overhead.py
    python benchmarks/env_overhead.py --episodes 500 --repeats 2 --model-tokens-per-s 120
    python benchmarks/env_overhead.py --measure-model /models/SmolLM2-135M-Instruct

Writes ``benchmarks/results/env_overhead.json`` (and ``env_overhead.png`` when matplotlib is
installed).
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib.metadata
import os
import platform
import re
import shlex
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import gymrl
from gymrl.backends.base import Request
from gymrl.backends.scripted import ScriptedBackend
from gymrl.evaluate import run_episodes
from gymrl.results import atomic_write_json

ENV = "router"
POLICIES = ("oracle", "strongest", "cheapest", "random")
REWARDS = ("router_r1", "cost+outcome")  # router_r1 is the env's default reward
TARGET_EPISODES_PER_S = 2000.0
TARGET_ENV_SHARE = 0.02
DEFAULT_MODEL_TOKENS_PER_S = 59.0  # SmolLM2-135M, batched generate at batch 8 (DESIGN.md)
PACKAGES = ("gymrl", "gymrl-envs", "gymrl-rewards", "gymnasium", "numpy")
RESULTS_DIR = Path(__file__).resolve().parent / "results"
# Words and punctuation marks: close to what a BPE tokenizer counts for this tag-heavy text.
_TOKEN_RE = re.compile(r"\w+|[^\w\s]")

TokenCounter = Callable[[str], int]


def regex_tokens(text: str) -> int:
    """Estimate the tokens of ``text``: one per word and one per punctuation mark.

    Args:
        text: any text.

    Returns:
        The number of ``\\w+`` runs plus the number of other non-space characters.
    """
    return len(_TOKEN_RE.findall(text))


@dataclass
class CaseResult:
    """The measurements of one (policy, reward) pair.

    Attributes:
        policy: the scripted policy's name.
        reward: the reward spec the env was built with.
        episodes_per_s: mean over repeats of the ``run_episodes`` rate (policy + env + reward +
            metrics).
        episodes_per_s_repeats: the rate of each repeat.
        episodes_per_s_best: the fastest repeat (the least disturbed by other processes).
        us_per_step: loop microseconds per policy turn (env step).
        steps_per_episode: mean policy turns per episode.
        env_us_per_episode: env + reward microseconds per episode (replay, no policy).
        env_us_per_step: env + reward microseconds per step.
        env_episodes_per_s: env + reward episodes per second.
        completion_tokens_per_episode: tokens the policy wrote per episode (see
            ``token_count_method`` in the settings).
        completion_chars_per_episode: characters the policy wrote per episode.
        chars_over_4_tokens_per_episode: the characters/4 estimate, for comparison.
        model_s_per_episode: completion tokens over the model's tokens/s.
        env_share: ``env_s / (env_s + model_s)`` with the replayed env + reward time.
        env_share_loop: the same with the whole scripted loop's time per episode (policy and
            metrics included): a looser upper bound.
        passed: target name -> whether this case meets it.
    """

    policy: str
    reward: str
    episodes_per_s: float
    episodes_per_s_repeats: list[float]
    episodes_per_s_best: float
    us_per_step: float
    steps_per_episode: float
    env_us_per_episode: float
    env_us_per_step: float
    env_episodes_per_s: float
    completion_tokens_per_episode: float
    completion_chars_per_episode: float
    chars_over_4_tokens_per_episode: float
    model_s_per_episode: float
    env_share: float
    env_share_loop: float
    passed: dict[str, bool] = field(default_factory=dict)


def env_factory(reward: str) -> Callable[[], Any]:
    """A zero-argument builder of the router env with ``reward``, as ``run_episodes`` wants."""
    return lambda: gymrl.make_env(ENV, reward=reward)


def record_actions(policy: str, reward: str, episodes: int, seed: int,
                   batch_size: int) -> list[list[str]]:
    """Play ``episodes`` episodes with a scripted policy and keep the text of its turns.

    Args:
        policy: a scripted policy of the router env.
        reward: the reward spec.
        episodes: how many episodes; episode ``i`` is reset with ``seed + i``.
        seed: the first episode's seed.
        batch_size: envs run in lockstep.

    Returns:
        Per episode, in order, the policy's turns.
    """
    records = run_episodes(env_factory(reward), ScriptedBackend(policy), episodes=episodes,
                           seed=seed, batch_size=batch_size)
    return [[turn.text for turn in episode.policy_turns] for episode, _ in records]


def time_loop(policy: str, reward: str, episodes: int, seed: int, batch_size: int) -> float:
    """Seconds ``run_episodes`` takes for ``episodes`` scripted episodes (envs built inside)."""
    backend = ScriptedBackend(policy)
    make = env_factory(reward)
    start = time.perf_counter()
    run_episodes(make, backend, episodes=episodes, seed=seed, batch_size=batch_size)
    return time.perf_counter() - start


def time_replay(reward: str, actions: Sequence[Sequence[str]], seed: int) -> float:
    """Seconds one env takes to replay recorded episodes: ``reset`` and ``step``, no policy.

    The env is built before the clock starts. Each episode must end on its last action, as it
    did when it was recorded (the env is deterministic given the seed and the actions).

    Raises:
        RuntimeError: a replayed episode ended early or late.
    """
    env = gymrl.make_env(ENV, reward=reward)
    start = time.perf_counter()
    for i, turns in enumerate(actions):
        env.reset(seed=seed + i)
        done = False
        for turn in turns:
            _, _, terminated, truncated, _ = env.step(turn)
            done = terminated or truncated
        if not done:
            raise RuntimeError(f"replay of episode {i} did not end on its last action")
    return time.perf_counter() - start


def measure_model(path: str, *, batch_size: int = 8, max_new_tokens: int = 64,
                  rounds: int = 2, seed: int = 0) -> tuple[float, TokenCounter, dict[str, Any]]:
    """Measure batched generation throughput of a local model on router prompts.

    The requests are the router's first turns (system prompt and question), generated with
    :class:`gymrl.backends.hf.HFBackend` on the CPU at temperature 1 without stop strings, after
    one untimed warm-up batch.

    Args:
        path: a local model directory (transformers format, with a chat template).
        batch_size: requests generated together.
        max_new_tokens: most tokens generated per request.
        rounds: timed batches.
        seed: seeds of the router episodes and of the backend.

    Returns:
        The generated tokens per second, a counter of the model tokenizer's tokens, and details
        for the results file.
    """
    from gymrl.backends.hf import HFBackend

    backend = HFBackend(path, max_new_tokens=max_new_tokens, temperature=1.0,
                        batch_size=batch_size, device="cpu", seed=seed, local_files_only=True)
    env = gymrl.make_env(ENV)

    def batch(offset: int) -> list[Request]:
        return [Request(messages=env.reset(seed=seed + offset + i)[1]["messages"])
                for i in range(batch_size)]

    backend.generate(batch(0))  # warm-up
    tokens, seconds = 0, 0.0
    for r in range(rounds):
        requests = batch((r + 1) * batch_size)
        start = time.perf_counter()
        completions = backend.generate(requests)
        seconds += time.perf_counter() - start
        tokens += sum(c.completion_tokens or len(c.token_ids or ()) for c in completions)
    tokenizer = backend.tokenizer
    backend.close()

    def count(text: str) -> int:
        return len(tokenizer(text, add_special_tokens=False)["input_ids"])

    details = {"path": path, "batch_size": batch_size, "max_new_tokens": max_new_tokens,
               "rounds": rounds, "generated_tokens": tokens, "seconds": seconds}
    return tokens / seconds, count, details


def run_case(policy: str, reward: str, args: argparse.Namespace, tokens_per_s: float,
             count_tokens: TokenCounter) -> CaseResult:
    """Warm up, then time the scripted loop and the env-only replay for one case."""
    run_episodes(env_factory(reward), ScriptedBackend(policy), episodes=args.warmup,
                 seed=args.seed, batch_size=args.batch_size)
    actions = record_actions(policy, reward, args.episodes, args.seed, args.batch_size)
    loop_s = [time_loop(policy, reward, args.episodes, args.seed, args.batch_size)
              for _ in range(args.repeats)]
    replay_s = [time_replay(reward, actions, args.seed) for _ in range(args.repeats)]

    n = args.episodes
    steps = sum(len(turns) for turns in actions) / n
    texts = ["".join(turns) for turns in actions]
    tokens = sum(count_tokens(turn) for turns in actions for turn in turns) / n
    chars = sum(len(text) for text in texts) / n
    rates = [n / s for s in loop_s]
    rate = statistics.fmean(rates)
    loop_us = 1e6 / rate
    env_s = statistics.fmean(replay_s) / n
    model_s = tokens / tokens_per_s
    share = env_s / (env_s + model_s)
    share_loop = (loop_us / 1e6) / (loop_us / 1e6 + model_s)
    return CaseResult(
        policy=policy, reward=reward, episodes_per_s=rate, episodes_per_s_repeats=rates,
        episodes_per_s_best=max(rates),
        us_per_step=loop_us / steps, steps_per_episode=steps,
        env_us_per_episode=env_s * 1e6, env_us_per_step=env_s * 1e6 / steps,
        env_episodes_per_s=1.0 / env_s, completion_tokens_per_episode=tokens,
        completion_chars_per_episode=chars, chars_over_4_tokens_per_episode=chars / 4,
        model_s_per_episode=model_s, env_share=share, env_share_loop=share_loop,
        passed={"episodes_per_s": rate >= TARGET_EPISODES_PER_S,
                "env_share": share < TARGET_ENV_SHARE})


def machine_info() -> dict[str, Any]:
    """Platform, CPUs, Python and the versions of the packages that set the speed."""
    versions: dict[str, str | None] = {}
    for name in PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    affinity = getattr(os, "sched_getaffinity", None)
    return {
        "platform": platform.platform(),
        "machine": platform.machine(),
        "processor": platform.processor() or None,
        "cpu_count": os.cpu_count(),
        "cpus_usable": len(affinity(0)) if affinity else None,
        "python": platform.python_version(),
        "python_implementation": platform.python_implementation(),
        "packages": versions,
    }


def print_table(results: list[CaseResult], tokens_per_s: float) -> None:
    """Print one row per case and the verdict on the targets."""
    header = (f"{'policy':<10} {'reward':<13} {'eps/s':>6} {'±sd':>5} {'best':>6} {'µs/step':>7} "
              f"{'env µs/ep':>10} {'env µs/step':>11} {'steps':>5} {'tok/ep':>6} "
              f"{'model ms/ep':>11} {'env share':>9}  pass")
    print(f"router env overhead (model at {tokens_per_s:.1f} tokens/s; targets: >= "
          f"{TARGET_EPISODES_PER_S:.0f} episodes/s, env share < {TARGET_ENV_SHARE:.0%})")
    print(header)
    print("-" * len(header))
    for r in results:
        sd = statistics.stdev(r.episodes_per_s_repeats) if len(r.episodes_per_s_repeats) > 1 \
            else 0.0
        verdict = "/".join("ok" if ok else "FAIL" for ok in r.passed.values())
        print(f"{r.policy:<10} {r.reward:<13} {r.episodes_per_s:>6.0f} {sd:>5.0f} "
              f"{r.episodes_per_s_best:>6.0f} {r.us_per_step:>7.1f} {r.env_us_per_episode:>10.1f} "
              f"{r.env_us_per_step:>11.1f} "
              f"{r.steps_per_episode:>5.2f} {r.completion_tokens_per_episode:>6.1f} "
              f"{r.model_s_per_episode * 1e3:>11.0f} {r.env_share:>9.4%}  {verdict}")
    print("eps/s (mean of repeats; best = fastest repeat), µs/step: run_episodes with the "
          "scripted policy (policy + env + reward + metrics).\nenv µs: replay of the same "
          "actions (reset + step + reward, no policy); env share uses it.")


def save_plot(results: list[CaseResult], path: Path) -> bool:
    """Draw episodes/s and env share per case; return False if matplotlib is missing."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    labels = [f"{r.policy}\n{r.reward}" for r in results]
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(max(8, len(results) * 1.1), 7))
    top.bar(labels, [r.episodes_per_s for r in results], color="tab:blue")
    top.axhline(TARGET_EPISODES_PER_S, color="tab:red", linestyle="--", label="target")
    top.set_ylabel("episodes/s")
    top.set_title("router env with scripted policies (policy + env + reward)")
    top.legend()
    bottom.bar(labels, [100 * r.env_share for r in results], color="tab:green")
    bottom.axhline(100 * TARGET_ENV_SHARE, color="tab:red", linestyle="--", label="target")
    bottom.set_ylabel("env share of a rollout (%)")
    bottom.legend()
    for axis in (top, bottom):
        axis.tick_params(axis="x", labelsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return True


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """The command line; see ``--help``."""
    parser = argparse.ArgumentParser(
        description="Router env episodes/s with scripted policies, and the env's share of an "
                    "LLM rollout.")
    parser.add_argument("--episodes", type=int, default=2000,
                        help="episodes per timed repeat (default: 2000)")
    parser.add_argument("--repeats", type=int, default=3,
                        help="timed repeats per case; the mean is reported (default: 3)")
    parser.add_argument("--warmup", type=int, default=200,
                        help="untimed episodes before each case (default: 200)")
    parser.add_argument("--batch-size", type=int, default=16,
                        help="envs run in lockstep, as in gymrl eval (default: 16)")
    parser.add_argument("--seed", type=int, default=0, help="first episode's seed (default: 0)")
    parser.add_argument("--policies", default=",".join(POLICIES),
                        help=f"comma-separated scripted policies (default: {','.join(POLICIES)})")
    parser.add_argument("--rewards", default=",".join(REWARDS),
                        help=f"comma-separated reward specs (default: {','.join(REWARDS)})")
    parser.add_argument("--model-tokens-per-s", type=float, default=DEFAULT_MODEL_TOKENS_PER_S,
                        help="generation throughput of the model, completion tokens/s "
                             f"(default: {DEFAULT_MODEL_TOKENS_PER_S:g}, SmolLM2-135M at batch 8 "
                             "on this CPU)")
    parser.add_argument("--measure-model", metavar="PATH", default=None,
                        help="measure the throughput with the hf backend on this local model "
                             "directory instead (and count tokens with its tokenizer)")
    parser.add_argument("--output", type=Path, default=RESULTS_DIR / "env_overhead.json",
                        help="JSON file to write; the PNG goes beside it "
                             "(default: benchmarks/results/env_overhead.json)")
    parser.add_argument("--no-plot", action="store_true", help="do not draw the PNG chart")
    args = parser.parse_args(argv)
    for name in ("episodes", "repeats", "batch_size"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1")
    if args.warmup < 0:
        parser.error("--warmup must be >= 0")
    if args.model_tokens_per_s <= 0:
        parser.error("--model-tokens-per-s must be > 0")
    args.policies = [p.strip() for p in args.policies.split(",") if p.strip()]
    args.rewards = [r.strip() for r in args.rewards.split(",") if r.strip()]
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark, print the table, write the JSON (and PNG).

    Args:
        argv: command-line arguments without the program name; ``sys.argv[1:]`` if None.

    Returns:
        0 when every case meets both targets, 1 otherwise.
    """
    args = parse_args(argv)
    arguments = list(sys.argv[1:] if argv is None else argv)
    env = gymrl.make_env(ENV)  # builds the world and the task set once, outside the clocks
    policies = env.unwrapped.scripted_policies
    unknown = [p for p in args.policies if p not in policies]
    if unknown:
        print(f"unknown scripted policies {unknown}; available: {', '.join(sorted(policies))}",
              file=sys.stderr)
        return 2

    tokens_per_s, source = args.model_tokens_per_s, "--model-tokens-per-s (default: DESIGN.md)"
    count_tokens: TokenCounter = regex_tokens
    token_method = "regex \\w+|[^\\w\\s] (words and punctuation marks)"
    model_details: dict[str, Any] | None = None
    if args.measure_model:
        print(f"measuring generation throughput of {args.measure_model} ...", flush=True)
        tokens_per_s, count_tokens, model_details = measure_model(args.measure_model,
                                                                  seed=args.seed)
        source = "measured with HFBackend (--measure-model)"
        token_method = "the model's tokenizer"
        print(f"  {tokens_per_s:.1f} tokens/s")

    results = []
    for reward in args.rewards:
        for policy in args.policies:
            print(f"  {policy} / {reward} ...", flush=True)
            results.append(run_case(policy, reward, args, tokens_per_s, count_tokens))
    print()
    print_table(results, tokens_per_s)

    passed = {
        "episodes_per_s": all(r.passed["episodes_per_s"] for r in results),
        "env_share": all(r.passed["env_share"] for r in results),
    }
    report = {
        "benchmark": "env_overhead",
        "env": ENV,
        "timestamp": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "command": shlex.join([sys.executable, sys.argv[0] or "env_overhead.py", *arguments]),
        "machine": machine_info(),
        "settings": {
            "episodes": args.episodes, "repeats": args.repeats, "warmup": args.warmup,
            "batch_size": args.batch_size, "seed": args.seed, "timer": "time.perf_counter",
            "model_tokens_per_s": tokens_per_s, "model_tokens_per_s_source": source,
            "model_measurement": model_details, "token_count_method": token_method,
        },
        "targets": {"episodes_per_s_min": TARGET_EPISODES_PER_S,
                    "env_share_max": TARGET_ENV_SHARE},
        "passed": passed,
        "results": [asdict(r) for r in results],
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(args.output, report)
    print(f"\nresults: {args.output}")
    if not args.no_plot:
        png = args.output.with_suffix(".png")
        if save_plot(results, png):
            print(f"chart:   {png}")
        else:
            print("matplotlib is not installed: no PNG chart (the JSON has every number)")
    verdict = ", ".join(f"{name} {'pass' if ok else 'FAIL'}" for name, ok in passed.items())
    print(f"targets: {verdict}")
    return 0 if all(passed.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
