"""Registers the inquiry env through the ``gymrl`` entry-point group."""

from __future__ import annotations

from gymrl import hookimpl


@hookimpl
def register_envs(register):
    from gymrl_envs.inquiry.env import InquiryEnv

    # The default reward's range, [-1.2, 1], is proven by scripted policies (``gymrl check``);
    # ``nous`` adds information gain, whose best episode depends on the tasks (see NousReward).
    register("inquiry", InquiryEnv, rewards="spec_outcome+question_cost+format",
             description="Socratic intent inquiry (Nous): ask a simulated user what they "
                         "want, over an intent space with an exact belief")
