"""Reward composition: ``"cost+outcome"`` with weights, every component kept and logged."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from gymrl import plugins
from gymrl.episode import Episode
from gymrl.errors import ConfigError, GymrlError, PluginError
from gymrl.make import build
from gymrl.plugins import NAME_RE, Registration
from gymrl.reward import Reward, Score


def parse_spec(spec: str) -> list[str]:
    """Split ``"cost+outcome"`` into names; each must match the registry's name pattern."""
    if not isinstance(spec, str) or not spec.strip():
        raise ConfigError(f"reward spec {spec!r} is empty; write names joined by '+', "
                          "e.g. 'cost+outcome'")
    names = [part.strip() for part in spec.split("+")]
    for name in names:
        if not NAME_RE.match(name):
            raise ConfigError(f"reward spec {spec!r}: {name!r} is not a reward name "
                              f"(names match {NAME_RE.pattern}, joined by '+')")
    if len(set(names)) != len(names):
        raise ConfigError(f"reward spec {spec!r} names a reward twice")
    return names


class CompositeReward(Reward):
    """A weighted sum of rewards; its Score keeps every component's value."""

    def __init__(self, parts: list[tuple[str, Reward, float, Registration | None]]) -> None:
        self.parts = parts
        self.name = "+".join(name for name, *_ in parts)
        low = high = 0.0
        for _, reward, weight, _ in parts:
            r_lo, r_hi = getattr(reward, "range", (-math.inf, math.inf))
            lo, hi = weight * r_lo, weight * r_hi
            low, high = low + min(lo, hi), high + max(lo, hi)
        self.range = (low, high)

    @property
    def weights(self) -> dict[str, float]:
        return {name: weight for name, _, weight, _ in self.parts}

    def __call__(self, episode: Episode) -> Score:
        total = 0.0
        components: dict[str, float] = {}
        diagnostics: dict[str, Any] = {}
        per_turn: list[float] | None = None
        for name, reward, weight, reg in self.parts:
            score = _call_reward(name, reward, episode, reg)
            value = float(score.total)
            if math.isnan(value):
                raise PluginError(f"reward '{name}' returned NaN{_where(reg)}")
            components[name] = value
            for sub, sub_value in score.components.items():
                components.setdefault(sub, sub_value)
            if score.diagnostics:
                diagnostics[name] = score.diagnostics
            total += weight * value
            if score.per_turn is not None:
                if per_turn is None:
                    per_turn = [0.0] * len(score.per_turn)
                if len(score.per_turn) != len(per_turn):
                    raise PluginError(f"reward '{name}' gave {len(score.per_turn)} per-turn "
                                      f"values, others gave {len(per_turn)}{_where(reg)}")
                per_turn = [a + weight * b for a, b in zip(per_turn, score.per_turn, strict=True)]
        return Score(total=total, per_turn=per_turn, components=components,
                     diagnostics=diagnostics)

    def frozen(self) -> CompositeReward:
        return CompositeReward([(name, reward.frozen() if hasattr(reward, "frozen") else reward,
                                 weight, reg) for name, reward, weight, reg in self.parts])

    def state_dict(self) -> dict[str, Any]:
        return {name: reward.state_dict() for name, reward, _, _ in self.parts
                if hasattr(reward, "state_dict")}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for name, reward, _, _ in self.parts:
            if hasattr(reward, "load_state_dict"):
                reward.load_state_dict(state.get(name, {}))


def _where(reg: Registration | None) -> str:
    return f" ({reg.where()})" if reg is not None else ""


def _call_reward(name: str, reward: Reward, episode: Episode,
                 reg: Registration | None) -> Score:
    try:
        result = reward(episode)
    except GymrlError:
        raise
    except Exception as exc:
        raise PluginError(f"reward '{name}'{_where(reg)} raised on episode "
                          f"{episode.task.id}: {type(exc).__name__}: {exc}") from exc
    if result is None:  # "not applicable", as in TRL's reward functions
        return Score(total=0.0, diagnostics={"applicable": False})
    if isinstance(result, Score):
        return result
    return Score(total=float(result))


def compose(spec: str, *, weights: Mapping[str, float] | None = None,
            options: Mapping[str, Mapping[str, Any]] | None = None) -> CompositeReward:
    """Build the reward for a spec such as ``"cost+outcome"``.

    Args:
        spec: registered reward names joined by ``+``.
        weights: weight per name (default 1.0); a name not in the spec is an error.
        options: constructor options per name, validated against the reward's factory.
    """
    names = parse_spec(spec)
    weights = dict(weights or {})
    options = dict(options or {})
    for label, mapping in (("weight", weights), ("options", options)):
        stray = sorted(set(mapping) - set(names))
        if stray:
            raise ConfigError(f"reward {label} given for {stray}, which is not in the reward "
                              f"spec {spec!r}; components: {', '.join(names)}")
    parts = []
    for name in names:
        reg = plugins.get("reward", name)
        reward = build(reg, options.get(name))
        if not isinstance(reward, Reward) and not callable(reward):
            raise PluginError(f"reward '{name}'{_where(reg)} built {type(reward).__name__}, "
                              "which is not callable")
        try:
            weight = float(weights.get(name, 1.0))
        except (TypeError, ValueError):
            raise ConfigError(f"weight for reward '{name}' must be a number, got "
                              f"{weights.get(name)!r}") from None
        parts.append((name, reward, weight, reg))
    return CompositeReward(parts)
