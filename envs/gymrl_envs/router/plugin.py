"""Registers the router env through the ``gymrl`` entry-point group."""

from __future__ import annotations

from gymrl import hookimpl


@hookimpl
def register_envs(register):
    from gymrl_envs.router.env import RouterEnv

    # The training recipe (README, "Where training stands"): an SFT term on the one-call
    # demonstrations in every GRPO update holds the routing of the questions GRPO gets no
    # signal from, while GRPO works on the multi-hop ones; 6 steps (not 4) fit the main job's
    # 15 minutes; twice the default rate moves the multi-hop questions within them, and
    # the SFT term at 2.0 (not 0.5) holds the 1-hop routing that rate otherwise moves.
    register("router", RouterEnv, rewards="router_r1",
             train=("learner.sft_coef=2.0", "learner.sft_max_turns=2", "learner.steps=6",
                    "learner.lr=4e-4"),
             description="Multi-round routing among a pool of models over multi-hop QA "
                         "(Router-R1)")
