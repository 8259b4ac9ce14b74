"""gymrl: Gymnasium environments for LLM agents, pluggable rewards, and a GRPO learner.

Plugins import only from here.
"""

from gymrl.backends.base import Backend, Completion, Request
from gymrl.compose import CompositeReward, compose
from gymrl.env import LLMEnv
from gymrl.episode import Episode, Task, ToolCall, Turn
from gymrl.errors import (
    BackendError,
    ConfigError,
    DuplicateNameError,
    GymrlError,
    PluginError,
    UnknownNameError,
)
from gymrl.hookspecs import hookimpl
from gymrl.make import make_backend, make_env, make_tool
from gymrl.reward import Reward, Score
from gymrl.spaces import UTF8Text
from gymrl.tool import Tool, ToolResult

__version__ = "0.1.0"

__all__ = [
    "Tool",
    "ToolResult",
    "make_tool",
    "Backend",
    "BackendError",
    "Completion",
    "CompositeReward",
    "ConfigError",
    "DuplicateNameError",
    "Episode",
    "GymrlError",
    "LLMEnv",
    "PluginError",
    "Request",
    "Reward",
    "Score",
    "Task",
    "ToolCall",
    "Turn",
    "UTF8Text",
    "UnknownNameError",
    "__version__",
    "compose",
    "hookimpl",
    "make_backend",
    "make_env",
]


def _register_gymnasium_ids() -> None:
    """Make ``gymnasium.make("gymrl/<env>-v0")`` work after ``import gymrl``.

    A plugin that fails to load must not break ``import gymrl``: the error is raised again,
    with the plugin's name, when something asks for the registry.
    """
    import warnings

    from gymrl import plugins

    try:
        plugins.registry()
    except GymrlError as exc:
        plugins.reset(None)
        warnings.warn(f"gymrl plugins not loaded: {exc}", RuntimeWarning, stacklevel=2)


_register_gymnasium_ids()
