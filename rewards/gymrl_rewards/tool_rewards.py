"""ToolRL's rewards: ``tool_format`` in {0, 1} and fine-grained ``tool_correctness`` in [-3, 3]."""

from __future__ import annotations

from gymrl import Episode, Reward, Score
from gymrl.toolcalls import calls_match, toolrl_correctness


class ToolFormatReward(Reward):
    """1 if every policy turn follows the env's grammar and the episode ended with a response,
    else 0 (ToolRL's format reward). Judges the violations the env recorded. Range: {0, 1}.
    """

    name = "tool_format"
    range = (0.0, 1.0)

    def score(self, episode: Episode) -> Score:
        violations = episode.format_violations()
        return Score(total=0.0 if violations else 1.0,
                     diagnostics={"violations": violations[:8]} if violations else {})


class ToolCorrectnessReward(Reward):
    """How close the episode's calls are to the task's gold calls (ToolRL), in [-3, 3].

    Tool names (Jaccard), parameter names (Jaccard per gold call) and parameter values (one per
    matched value) add up to a match score, rescaled so that the gold calls exactly give 3 and
    nothing right gives -3 (``gymrl.toolcalls.toolrl_correctness``). With no gold call (an
    irrelevance task), calling nothing gives 3 and any call -3. Reads the task's
    ``hidden["gold_calls"]``; a task without them is not applicable (0).
    """

    name = "tool_correctness"
    range = (-3.0, 3.0)

    def score(self, episode: Episode) -> Score:
        gold = episode.task.hidden.get("gold_calls")
        if gold is None:
            return Score(total=0.0, diagnostics={"applicable": False})
        made = [{"name": c.name, "parameters": c.arguments} for c in episode.tool_calls]
        return Score(total=toolrl_correctness(made, gold),
                     diagnostics={"exact": calls_match(made, gold), "calls": len(made)})
