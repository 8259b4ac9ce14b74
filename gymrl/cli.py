"""The ``gymrl`` command: list, check, eval (and train, reserved for the learner)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from gymrl.errors import GymrlError

EPILOG_TRAIN = """examples:
  gymrl train env=router reward=cost+outcome
  gymrl train env=router learner.steps=40 sft.steps=60 output_dir=runs/r1
  gymrl train resume=runs/r1            # after an interruption: continue from the checkpoint

The defaults above are overlaid by the env's own training recipe where it registered one
(the router's sets the SFT term; a run prints the recipe it used when it starts); your config
files and key=value overrides win over both.
"""
EPILOG_EVAL = """examples:
  gymrl eval env=router policy=scripted:oracle episodes=200 seed=0
  gymrl eval env=router reward=cost+outcome reward.weights.cost=0.3 policy=hf:/path/to/model
  gymrl eval config=eval.yaml episodes=50
  gymrl eval env=inquiry policy=scripted:oracle render=4   # PNGs of the first 4 episodes
"""


def _config_help(schema: type) -> str:
    from gymrl.config import describe

    rows = describe(schema)
    width = max(len(k) for k, _, _ in rows)
    return "config keys (KEY=VALUE):\n" + "\n".join(
        f"  {k:<{width}}  {h} (default {d})" for k, d, h in rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="gymrl", description="Gymnasium environments for LLM "
                                     "agents, pluggable rewards, and a GRPO learner.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    p_list = sub.add_parser("list", help="envs, rewards, tools, backends and their plugins")
    p_list.add_argument("--json", action="store_true", help="print JSON")
    from gymrl.config import EvalConfig

    p_eval = sub.add_parser("eval", help="run a policy on an env and save results",
                            formatter_class=argparse.RawDescriptionHelpFormatter,
                            epilog=_config_help(EvalConfig) + "\n\n" + EPILOG_EVAL)
    p_eval.add_argument("overrides", nargs="*", metavar="KEY=VALUE")
    p_check = sub.add_parser("check", help="check an env: Gymnasium's checker and the reward "
                             "range proven with scripted policies")
    p_check.add_argument("overrides", nargs="*", metavar="KEY=VALUE",
                         help="env=NAME, env.OPTION=..., reward=SPEC, episodes=N")
    from gymrl.learner.config import TrainConfig

    p_train = sub.add_parser("train", help="train a policy with GRPO (SFT warm start optional)",
                             formatter_class=argparse.RawDescriptionHelpFormatter,
                             epilog=_config_help(TrainConfig) + "\n\n" + EPILOG_TRAIN)
    p_train.add_argument("overrides", nargs="*", metavar="KEY=VALUE")
    p_plot = sub.add_parser("plot", help="draw a run's learning curves to RUN_DIR/curves.png")
    p_plot.add_argument("run_dir")
    args = parser.parse_args(argv)
    try:
        if args.command == "list":
            return cmd_list(as_json=args.json)
        if args.command == "eval":
            return cmd_eval(args.overrides)
        if args.command == "check":
            return cmd_check(args.overrides)
        if args.command == "train":
            return cmd_train(args.overrides)
        if args.command == "plot":
            return cmd_plot(args.run_dir)
        parser.print_help()
        return 0
    except GymrlError as exc:
        print(f"gymrl: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("gymrl: interrupted", file=sys.stderr)
        return 130


def cmd_train(overrides: list[str]) -> int:
    from gymrl.learner.config import load_train_config
    from gymrl.learner.train import train

    cfg, recipe = load_train_config(overrides)
    if recipe and not any(o.startswith("resume=") for o in overrides):
        print(f"gymrl: env {cfg['env']['name']}'s training recipe: {' '.join(recipe)} "
              "(a key=value of your own overrides it)", file=sys.stderr)
    cfg["_explicit_overrides"] = [o for o in overrides
                                  if not o.startswith(("resume=", "progress="))]
    summary = train(cfg)
    start, end = summary.get("start") or {}, summary.get("end") or {}
    for label, row in (("start", start), ("end", end)):
        shown = {k: round(v, 4) for k, v in row.items()
                 if k in ("eval/reward", "eval/accuracy", "eval/cost_usd", "eval/format_ok")}
        print(f"{label}: {shown}")
    print(f"run: {summary['run_dir']}")
    return 0


def cmd_plot(run_dir: str) -> int:
    from gymrl.errors import ConfigError
    from gymrl.plot import plot_run

    if not (Path(run_dir) / "metrics.jsonl").is_file():
        raise ConfigError(f"{run_dir!r} has no metrics.jsonl (not a gymrl run folder)")
    out = plot_run(run_dir)
    print(out if out else "matplotlib is not installed: pip install matplotlib")
    return 0 if out else 1


def cmd_list(*, as_json: bool = False) -> int:
    from gymrl import plugins

    reg = plugins.registry()
    if as_json:
        data = {
            "plugins": {n: vars(p) for n, p in sorted(reg.plugins.items())},
            **{kind + "s": {n: {"package": r.plugin.package, "version": r.plugin.version,
                                "plugin": r.plugin.name, "description": r.description}
                            for n, r in sorted(reg.items[kind].items())}
               for kind in plugins.KINDS},
        }
        print(json.dumps(data, indent=2))
        return 0
    from rich.console import Console
    from rich.table import Table

    console = Console()
    for kind in plugins.KINDS:
        table = Table(title=f"{kind}s", title_justify="left", expand=False)
        for col in ("name", "package", "version", "description"):
            table.add_column(col)
        for name, r in sorted(reg.items[kind].items()):
            table.add_row(name, r.plugin.package, r.plugin.version, r.description)
        if not reg.items[kind]:
            table.add_row("-", "", "", "(none registered)")
        console.print(table)
    return 0


def cmd_eval(overrides: list[str]) -> int:
    from gymrl.config import EvalConfig, load_config, to_container

    cfg = load_config(EvalConfig, overrides)
    result = run_eval(to_container(cfg))
    _print_summary(result)
    if result.get("renders"):
        print(f"renders: {Path(result['renders'][0]).parent} ({len(result['renders'])} PNG)")
    print(f"results: {result['path']}")
    return 0


def _env_factory(cfg: dict[str, Any]) -> Any:
    from gymrl.make import accepted_options, make_env, make_reward
    from gymrl.plugins import get

    env_cfg = cfg["env"]
    options = dict(env_cfg["options"])
    split = cfg.get("split")
    reg = get("env", env_cfg["name"])
    valid = accepted_options(reg.factory)
    if split is not None and "split" not in options and (valid is None or "split" in valid):
        options["split"] = split
    shared = make_reward(env_cfg["name"], cfg["reward"])  # one reward for every env of the run

    def factory() -> Any:
        return make_env(env_cfg["name"], reward=shared, **options)

    factory()  # fail on bad names and options before any work starts
    return factory


def run_eval(cfg: dict[str, Any]) -> dict[str, Any]:
    """Run an evaluation from a resolved config dict; write and return the results."""
    import time

    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
    )

    from gymrl import plugins
    from gymrl.errors import ConfigError
    from gymrl.evaluate import (
        check_can_render,
        episode_record,
        render_episodes,
        run_episodes,
        summarise,
    )
    from gymrl.make import make_backend
    from gymrl.results import atomic_write_json, new_run_dir, versions

    if cfg["episodes"] < 1:
        raise ConfigError(f"episodes must be >= 1, got {cfg['episodes']}")
    render = cfg.get("render") or 0
    if render < 0:
        raise ConfigError(f"render must be >= 0 (episodes to draw), got {render}")
    factory = _env_factory(cfg)
    probe = factory()
    if render:
        check_can_render(probe)  # before any episode runs
    backend = make_backend(cfg["policy"]["spec"], cfg["policy"]["options"])
    if hasattr(backend, "check_env"):
        backend.check_env(probe.unwrapped)
    out_dir = Path(cfg["output_dir"]) if cfg.get("output_dir") else new_run_dir(
        "eval", cfg["env"]["name"])
    out_dir.mkdir(parents=True, exist_ok=True)
    progress = Progress(TextColumn("[bold]eval[/] {task.description}"), BarColumn(),
                        MofNCompleteColumn(), TextColumn("reward {task.fields[reward]:.3f}"),
                        TimeRemainingColumn(), disable=not cfg.get("progress", True),
                        transient=False)
    totals = {"n": 0, "reward": 0.0}
    with progress:
        bar = progress.add_task(f"{cfg['env']['name']} / {cfg['policy']['spec']}",
                                total=cfg["episodes"], reward=0.0)

        def on_episode(episode: Any, metrics: dict[str, Any]) -> None:
            totals["n"] += 1
            totals["reward"] += episode.reward
            progress.update(bar, advance=1, reward=totals["reward"] / totals["n"])

        start = time.perf_counter()
        records = run_episodes(factory, backend, episodes=cfg["episodes"], seed=cfg["seed"],
                               batch_size=cfg["batch_size"], on_episode=on_episode)
        elapsed = time.perf_counter() - start
    backend.close()
    summary = summarise(records, ratios=getattr(probe.unwrapped, "summary_ratios", None))
    summary["overall"]["episodes_per_s"] = len(records) / elapsed if elapsed > 0 else 0.0
    plugins.notify_metrics({f"eval/{k}": v for k, v in summary["overall"].items()}, step=0)
    result = {
        "gymrl_results": 1,
        "command": "eval",
        "config": cfg,
        "reward_range": list(probe.unwrapped.reward_fn.range),
        "versions": versions(),
        "summary": summary,
        "episodes": [episode_record(e, m) for e, m in records],
    }
    if render:
        # From the finished Episode records: the envs have been reset since.
        result["renders"] = [str(p) for p in render_episodes(probe, records, out_dir / "render",
                                                             render)]
    path = atomic_write_json(out_dir / "results.json", result)
    result["path"] = str(path)
    return result


def _print_summary(result: dict[str, Any]) -> None:
    """The summary as a table of metrics; when the episodes fall into several groups
    (``by_kind``: user levels, question kinds, ...), one table per grouping, with a column
    for all episodes and one per group."""
    from rich.console import Console
    from rich.table import Table

    summary = result["summary"]
    overall = summary["overall"]
    title = (f"{result['config']['env']['name']} / {result['config']['policy']['spec']}"
             f" ({overall['episodes']} episodes)")

    def cell(row: dict[str, Any], key: str) -> str:
        if key not in row:
            return "-"
        value, err = row[key], row.get(f"{key}_stderr")
        text = f"{value:.4g}" if isinstance(value, float) else str(value)
        return text + (f" ± {err:.2g}" if err is not None else "")

    keys = [k for k in overall if not k.endswith("_stderr")]
    groupings = {name[len("by_"):]: groups for name, groups in summary.items()
                 if name.startswith("by_") and len(groups) > 1}
    console = Console()
    if not groupings:
        table = Table(title=title, title_justify="left")
        table.add_column("metric")
        table.add_column("value", justify="right")
        for key in keys:
            table.add_row(key, cell(overall, key))
        console.print(table)
    for by, groups in groupings.items():
        rows = [overall, *groups.values()]
        table = Table(title=f"{title} by {by}", title_justify="left")
        table.add_column("metric", no_wrap=True)
        for name in ("all", *groups):
            table.add_column(name, justify="right", no_wrap=True)
        for key in keys:
            if key == "episodes_per_s":
                continue
            table.add_row(key, *(f"{r[key]:.4g}" if isinstance(r.get(key), float)
                                 else str(r.get(key, "-")) for r in rows))
            if any(f"{key}_stderr" in r for r in rows):
                table.add_row("  ± stderr", *(f"{r[f'{key}_stderr']:.2g}"
                                              if f"{key}_stderr" in r else "-" for r in rows))
        console.print(table)
    if groupings and "episodes_per_s" in overall:
        console.print(f"{overall['episodes_per_s']:.4g} episodes/s")


def cmd_check(overrides: list[str]) -> int:
    from gymrl.check import check_env_and_rewards

    report = check_env_and_rewards(overrides)
    from rich.console import Console
    from rich.table import Table

    console = Console()
    console.print(f"gymnasium check_env: [bold]{'ok' if report['check_env'] == 'ok' else 'FAILED'}"
                  f"[/] {'' if report['check_env'] == 'ok' else report['check_env']}")
    table = Table(title=f"reward {report['reward']} range {report['range']}",
                  title_justify="left")
    for col in ("policy", "min", "max", "mean"):
        table.add_column(col)
    for name, row in report["policies"].items():
        table.add_row(name, f"{row['min']:.4f}", f"{row['max']:.4f}", f"{row['mean']:.4f}")
    console.print(table)
    lo, hi = report["reached"]
    console.print(f"best end {report['range'][1]:.4f}: {'reached' if hi else 'NOT reached'}; "
                  f"worst end {report['range'][0]:.4f}: {'reached' if lo else 'NOT reached'}")
    return 0 if report["check_env"] == "ok" and lo and hi else 1


if __name__ == "__main__":
    sys.exit(main())
