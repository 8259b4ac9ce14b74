"""Typed configs (omegaconf structured dataclasses) and the ``key=value`` override grammar.

Shorthands on the command line::

    env=router                -> env.name=router
    env.max_calls=3           -> env.options.max_calls=3      (the env's own options)
    reward=cost+outcome       -> reward.spec=cost+outcome
    reward.weights.cost=0.3   (weight of one component)
    reward.cost.window=500    -> reward.options.cost.window=500
    policy=hf:/models/smol    -> policy.spec=hf:/models/smol
    policy.temperature=0.7    -> policy.options.temperature=0.7
    config=run.yaml           (a YAML file of the same shape, applied first)
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gymrl.errors import ConfigError


def _help(text: str, default: Any = dataclasses.MISSING, factory: Any = None) -> Any:
    if factory is not None:
        return field(default_factory=factory, metadata={"help": text})
    return field(default=default, metadata={"help": text})


@dataclass
class EnvConfig:
    name: str = _help("registered env name (gymrl list)", "router")
    options: dict[str, Any] = _help("the env's own options, e.g. env.max_calls=3", factory=dict)


@dataclass
class RewardConfig:
    spec: str | None = _help("reward names joined by '+', e.g. cost+outcome; default: the "
                             "env's own", None)
    weights: dict[str, float] = _help("weight per component, e.g. reward.weights.cost=0.3",
                                      factory=dict)
    options: dict[str, Any] = _help("options per reward, e.g. reward.cost.window=500",
                                    factory=dict)


@dataclass
class PolicyConfig:
    spec: str = _help("SCHEME:NAME, e.g. scripted:oracle, hf:PATH, openai:MODEL",
                      "scripted:oracle")
    options: dict[str, Any] = _help("backend options, e.g. policy.temperature=0.7",
                                    factory=dict)


@dataclass
class EvalConfig:
    env: EnvConfig = _help("the environment", factory=EnvConfig)
    reward: RewardConfig = _help("the reward", factory=RewardConfig)
    policy: PolicyConfig = _help("the policy backend", factory=PolicyConfig)
    episodes: int = _help("episodes to run", 100)
    seed: int = _help("episode i is reset with seed + i", 0)
    split: str | None = _help("task split, passed to envs that take one", "test")
    batch_size: int = _help("episodes run in lockstep (one batched generate per turn)", 16)
    output_dir: str | None = _help("where results.json goes; default: a new folder in runs/",
                                   None)
    progress: bool = _help("show a progress bar", True)
    render: int = _help("draw the first N episodes as PNG to RUN_DIR/render/ (envs that "
                        "implement render_episode_png)", 0)


_SECTIONS = {"env": {"name"}, "reward": {"spec", "weights"}, "policy": {"spec"}}
_SHORTHAND = {"env": "name", "reward": "spec", "policy": "spec"}


def rewrite_override(item: str) -> str:
    """Map a command-line shorthand to the structured key it stands for."""
    if "=" not in item:
        raise ConfigError(f"override {item!r} is not KEY=VALUE (e.g. episodes=200)")
    key, value = item.split("=", 1)
    key = key.strip()
    head, _, rest = key.partition(".")
    if head in _SHORTHAND and not rest:
        return f"{head}.{_SHORTHAND[head]}={value}"
    if head in _SECTIONS and rest:
        first = rest.split(".", 1)[0]
        if first not in _SECTIONS[head] and first != "options":
            return f"{head}.options.{rest}={value}"
    return f"{key}={value}"


def read_yaml_mapping(path: Path, what: str) -> dict[str, Any]:
    """The mapping a YAML config file holds, as plain containers. Not YAML, or not a mapping
    at the top, is a :class:`ConfigError` that starts with ``what`` (the file, as the user
    named it) and keeps the parser's first line."""
    import yaml
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    try:
        # Parsed once plainly for its shape (OmegaConf.load raises an OSError on a scalar),
        # then by OmegaConf for the values (its loader reads 5e-4 as a float).
        top = yaml.safe_load(path.read_text(encoding="utf-8"))
        if not isinstance(top, dict):
            name = type(top).__name__
            shape = "nothing" if top is None else f"{'an' if name[0] in 'aeiou' else 'a'} {name}"
            raise ConfigError(f"{what} must hold a mapping at the top, not {shape}")
        return OmegaConf.to_container(OmegaConf.load(path))
    except (OmegaConfBaseException, yaml.YAMLError, UnicodeDecodeError) as exc:
        first = str(exc).split("\n")[0]
        raise ConfigError(f"{what} is not valid YAML: {first}") from None


def _normalise_yaml(data: dict[str, Any]) -> dict[str, Any]:
    for head, short in _SHORTHAND.items():
        if isinstance(data.get(head), str):
            data[head] = {short: data[head]}
    return data


def load_config(schema: type, overrides: list[str], preset: Sequence[str] = ()) -> Any:
    """Build a config of dataclass ``schema`` from ``config=FILE`` and ``key=value`` overrides.

    ``preset`` (``key=value`` items, such as an env's training recipe) sits between the
    schema's defaults and the user's config files and overrides, which win over it. Unknown
    keys fail with the list of valid ones.
    """
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    base = OmegaConf.structured(schema)
    valid = [f.name for f in dataclasses.fields(schema)]
    preset = [rewrite_override(item) for item in preset]
    layers = []
    rest = []
    for item in overrides:
        if item.startswith("config="):
            path = Path(item.split("=", 1)[1])
            if not path.is_file():
                raise ConfigError(f"config file {str(path)!r} does not exist")
            data = read_yaml_mapping(path, f"config file {str(path)!r}")
            layers.append(OmegaConf.create(_normalise_yaml(data)))
        else:
            rest.append(rewrite_override(item))
    for item in [*preset, *rest]:
        top = item.split("=", 1)[0].split(".", 1)[0]
        if top not in valid:
            raise ConfigError(f"unknown config key {top!r}; valid keys: {', '.join(valid)}")
    try:
        layers.append(OmegaConf.from_dotlist(rest))
        cfg = OmegaConf.merge(base, OmegaConf.from_dotlist(preset), *layers)
    except OmegaConfBaseException as exc:
        msg = str(exc).split("\n")[0]
        raise ConfigError(f"bad config: {msg}. Valid keys: {', '.join(valid)} "
                          f"(see --help)") from None
    return cfg


def to_container(cfg: Any) -> dict[str, Any]:
    from omegaconf import OmegaConf

    return OmegaConf.to_container(cfg, resolve=True)


def _subconfigs() -> dict[str, type]:
    from gymrl.learner import config as learner_config

    found = {"EnvConfig": EnvConfig, "RewardConfig": RewardConfig, "PolicyConfig": PolicyConfig}
    found.update({name: obj for name, obj in vars(learner_config).items()
                  if name.endswith("Config") and dataclasses.is_dataclass(obj)})
    return found


def describe(schema: type, prefix: str = "") -> list[tuple[str, str, str]]:
    """(key, default, help) for every field, for ``--help``."""
    rows = []
    for f in dataclasses.fields(schema):
        key = f"{prefix}{f.name}"
        if dataclasses.is_dataclass(f.type) or (isinstance(f.type, str) and f.type.endswith(
                "Config")):
            sub = _subconfigs().get(str(f.type))
            if sub is not None:
                rows.extend(describe(sub, key + "."))
                continue
        default = f.default if f.default is not dataclasses.MISSING else (
            f.default_factory() if f.default_factory is not dataclasses.MISSING else "")
        rows.append((key, repr(default), f.metadata.get("help", "")))
    return rows
