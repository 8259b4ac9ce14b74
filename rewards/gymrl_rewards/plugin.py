"""Registers the first-party rewards through the ``gymrl`` entry-point group."""

from __future__ import annotations

from gymrl import hookimpl
from gymrl_rewards.cost import CostReward
from gymrl_rewards.format import FormatReward
from gymrl_rewards.outcome import OutcomeReward
from gymrl_rewards.router_r1 import RouterR1Reward
from gymrl_rewards.tool_rewards import ToolCorrectnessReward, ToolFormatReward


@hookimpl
def register_rewards(register):
    register("format", FormatReward, description="0, or a penalty (-1) on any tag-grammar "
             "violation. Range [-1, 0]")
    register("outcome", OutcomeReward, description="Exact match (or F1) of the final answer. "
             "Range [0, 1]")
    register("cost", CostReward, description="Minus the episode's cost, rolling-percentile "
             "normalised. Range [-1, 0]")
    register("router_r1", RouterR1Reward, description="Router-R1's (S+F)(1-alpha)+alpha*C. "
             "Range [-1, 1-alpha]")
    register("tool_format", ToolFormatReward, description="ToolRL's format reward: 1 if every "
             "turn follows the grammar and the episode ends with a response. Range {0, 1}")
    register("tool_correctness", ToolCorrectnessReward, description="ToolRL's graded match of "
             "the calls made with the gold calls (names, parameter names, values). Range [-3, 3]")
