"""Registers the router env through the ``gymrl`` entry-point group."""

from __future__ import annotations

from gymrl import hookimpl


@hookimpl
def register_envs(register):
    from gymrl_envs.router.env import RouterEnv

    # The training recipe (README, "Where training stands"): an SFT term on the one-call
    # demonstrations in every GRPO update holds the routing of the questions GRPO gets no
    # signal from, while GRPO works on the multi-hop ones.
    register("router", RouterEnv, rewards="router_r1",
             train=("learner.sft_coef=0.5", "learner.sft_max_turns=2"),
             description="Multi-round routing among a pool of models over multi-hop QA "
                         "(Router-R1)")
