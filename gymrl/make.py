"""Build registered things from names and options, with errors that say what is allowed."""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from typing import Any

from gymrl import plugins
from gymrl.errors import ConfigError, GymrlError, PluginError
from gymrl.plugins import Registration


def accepted_options(factory: Any) -> list[str] | None:
    """Keyword options a factory takes, or None if it takes ``**kwargs``."""
    try:
        params = inspect.signature(factory).parameters.values()
    except (TypeError, ValueError):
        return None
    if any(p.kind is p.VAR_KEYWORD for p in params):
        return None
    return [p.name for p in params
            if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) and p.name != "self"]


def build(reg: Registration, options: Mapping[str, Any] | None = None, **extra: Any) -> Any:
    """Call a registration's factory with validated options.

    Unknown options fail with the list of valid ones; an exception inside the factory names the
    plugin and package that registered it.
    """
    kwargs = {**dict(options or {}), **extra}
    valid = accepted_options(reg.factory)
    if valid is not None:
        unknown = sorted(set(kwargs) - set(valid))
        if unknown:
            raise ConfigError(
                f"unknown option(s) {unknown} for {reg.kind} '{reg.name}'; "
                f"valid options: {', '.join(sorted(valid)) or 'none'}"
            )
    try:
        return reg.factory(**kwargs)
    except GymrlError:
        raise
    except Exception as exc:
        raise PluginError(
            f"{reg.kind} '{reg.name}' ({reg.where()}) failed to build with options "
            f"{kwargs}: {type(exc).__name__}: {exc}"
        ) from exc


DEFAULT_REWARD = "format+outcome"


def default_reward_spec(env_name: str) -> str:
    """The reward spec env ``env_name`` registered as its own (``rewards=`` at registration)."""
    return plugins.get("env", env_name).meta.get("rewards", DEFAULT_REWARD)


def make_reward(env_name: str, reward_cfg: Mapping[str, Any]) -> Any:
    """The composed reward of a config's ``reward`` section; the env's own spec if unset.

    Build it once per run and give the same object to every env of the run: stateful rewards
    (rolling cost percentiles) must see every episode, not one env's share.
    """
    from gymrl.compose import compose

    spec = reward_cfg.get("spec") or default_reward_spec(env_name)
    return compose(spec, weights=reward_cfg.get("weights"), options=reward_cfg.get("options"))


def make_env(name: str, *, reward: Any = None, reward_weights: Mapping[str, float] | None = None,
             reward_options: Mapping[str, Mapping[str, Any]] | None = None, **options: Any) -> Any:
    """Build env ``name`` with its reward: the env's default reward spec unless ``reward``.

    Args:
        name: a registered env name.
        reward: a spec such as ``"cost+outcome"``, a Reward object, or None for the default.
        reward_weights: weight per component name, e.g. ``{"cost": 0.3}``.
        reward_options: constructor options per reward name, e.g. ``{"cost": {"window": 500}}``.
        **options: the env's own constructor options.
    """
    from gymrl.compose import compose

    reg = plugins.get("env", name)
    env = build(reg, options)
    if reward is None or isinstance(reward, str):
        spec = reward or reg.meta.get("rewards", DEFAULT_REWARD)
        reward = compose(spec, weights=reward_weights, options=reward_options)
    env.set_reward(reward)
    env.registration = reg
    return env


def make_backend(spec: str, options: Mapping[str, Any] | None = None) -> Any:
    """Build a backend from ``scheme:rest`` (``scripted:oracle``, ``hf:PATH``, ``openai:MODEL``)."""
    if not isinstance(spec, str) or ":" not in spec:
        schemes = ", ".join(f"{n}:" for n in sorted(plugins.registered("backend")))
        raise ConfigError(f"policy {spec!r} must look like SCHEME:NAME; schemes: {schemes}")
    scheme, _, target = spec.partition(":")
    reg = plugins.get("backend", scheme)
    return build(reg, options, target=target)


def make_tool(name: str, options: Mapping[str, Any] | None = None) -> Any:
    """Build registered tool ``name`` with its options (validated against its factory)."""
    from gymrl.tool import Tool

    reg = plugins.get("tool", name)
    tool = build(reg, options)
    if not isinstance(tool, Tool):
        raise PluginError(f"tool '{name}' ({reg.where()}) built {type(tool).__name__}, which is "
                          "not a gymrl.Tool")
    return tool
