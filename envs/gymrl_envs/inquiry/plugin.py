"""Registers the inquiry env through the ``gymrl`` entry-point group."""

from __future__ import annotations

from gymrl import hookimpl


@hookimpl
def register_envs(register):
    from gymrl_envs.inquiry.env import DEFAULT_REWARD, InquiryEnv

    # The default reward's range, [-1.1, 1], is proven by scripted policies (``gymrl check``);
    # ``nous`` adds information gain, whose best episode depends on the tasks (see NousReward).
    register("inquiry", InquiryEnv, rewards=DEFAULT_REWARD,
             description="Socratic intent inquiry (Nous): ask a simulated user what they "
                         "want, over an intent space with an exact belief")
