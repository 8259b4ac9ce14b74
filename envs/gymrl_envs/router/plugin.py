"""Registers the router env through the ``gymrl`` entry-point group."""

from __future__ import annotations

from gymrl import hookimpl


@hookimpl
def register_envs(register):
    from gymrl_envs.router.env import RouterEnv

    register("router", RouterEnv, rewards="router_r1",
             description="Multi-round routing among a pool of models over multi-hop QA "
                         "(Router-R1)")
