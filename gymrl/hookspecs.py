"""The whole extension surface of gymrl: one hook per kind of thing, plus observers.

Hooks only grow: new keyword arguments may be added, never renamed, and implementations take
only the arguments they need.
"""

from __future__ import annotations

import pluggy

hookspec = pluggy.HookspecMarker("gymrl")
hookimpl = pluggy.HookimplMarker("gymrl")


@hookspec
def register_envs(register):
    """Register environments: ``register(name, factory, *, rewards=..., description=...)``."""


@hookspec
def register_rewards(register):
    """Register rewards: ``register(name, factory, *, description=...)``."""


@hookspec
def register_tools(register):
    """Register tools an env may expose: ``register(name, factory, *, description=...)``."""


@hookspec
def register_backends(register):
    """Register LLM backends by scheme: ``register(scheme, factory, *, description=...)``."""


@hookspec
def episode_end(episode, scores):
    """Observe a finished episode and its reward components."""


@hookspec
def log_metrics(metrics, step):
    """Observe a dict of metrics at a step (evaluation or training)."""
