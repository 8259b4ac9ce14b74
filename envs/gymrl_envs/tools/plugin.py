"""Registers the tools env through the ``gymrl`` entry-point group."""

from __future__ import annotations

from gymrl import hookimpl


@hookimpl
def register_envs(register):
    from gymrl_envs.tools.env import ToolsEnv

    register("tools", ToolsEnv, rewards="tool_format+tool_correctness+outcome",
             description="Tool calling (ToolRL): function calling, calculator arithmetic and "
                         "corpus retrieval")
