"""Registers the first-party rewards through the ``gymrl`` entry-point group."""

from __future__ import annotations

from gymrl import hookimpl
from gymrl_rewards.cost import CostReward
from gymrl_rewards.format import FormatReward
from gymrl_rewards.inquiry_rewards import (
    InfoGainReward,
    NousReward,
    QuestionCostReward,
    SpecOutcomeReward,
)
from gymrl_rewards.outcome import OutcomeReward
from gymrl_rewards.router_r1 import RouterR1Reward
from gymrl_rewards.tool_rewards import ToolCorrectnessReward, ToolFormatReward


@hookimpl
def register_rewards(register):
    register("format", FormatReward, description="0, or a penalty (-1) on any tag-grammar "
             "violation. Range [-1, 0]")
    register("outcome", OutcomeReward, description="Exact match (or F1) of the final answer. "
             "Range [0, 1]")
    register("cost", CostReward, description="Minus the episode's cost over reference_usd, "
             "charged on correct answers (charge=always: every episode; rolling=true: "
             "Router-R1's percentile bounds). Range [-1, 0]")
    register("router_r1", RouterR1Reward, description="Router-R1's (S+F)(1-alpha)+alpha*C. "
             "Range [-1, 1-alpha]")
    register("tool_format", ToolFormatReward, description="ToolRL's format reward: 1 if every "
             "turn follows the grammar and the episode ends with a response. Range {0, 1}")
    register("tool_correctness", ToolCorrectnessReward, description="ToolRL's graded match of "
             "the calls made with the gold calls (names, parameter names, values). Range [-3, 3]")
    register("info_gain", InfoGainReward, description="Dense information gain: belief entropy "
             "before minus after each turn, in bits (or unit=fraction of the opening entropy). "
             "Range (-inf, inf) bits, (-inf, 1] fraction")
    register("spec_outcome", SpecOutcomeReward, description="Share of the spec's attributes "
             "that match the hidden intent (or metric=exact). Range [0, 1]")
    register("question_cost", QuestionCostReward, description="Dense -0.01 per question asked, "
             "capped at -0.1. Range [-cap, 0]")
    register("nous", NousReward, description="Nous composite: spec_outcome + 0.5 x info_gain "
             "(fraction) + question_cost + format. Range (-inf, 1.5], bounds not reached")
