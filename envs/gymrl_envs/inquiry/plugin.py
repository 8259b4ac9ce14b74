"""Registers the inquiry env through the ``gymrl`` entry-point group."""

from __future__ import annotations

from gymrl import hookimpl


@hookimpl
def register_envs(register):
    from gymrl_envs.inquiry.env import InquiryEnv

    register("inquiry", InquiryEnv, rewards="nous",
             description="Socratic intent inquiry (Nous): ask a simulated user what they "
                         "want, scored by exact information gain over an intent space")
