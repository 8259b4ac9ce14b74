"""``scripted:NAME``: the env's own scripted policies (oracle, cheapest, random, ...).

Scripted policies read the env's privileged state (the hidden task), so they are baselines and
test doubles, never agents. Each env lists its own in ``LLMEnv.scripted_policies``.
"""

from __future__ import annotations

from gymrl.backends.base import Backend, Completion, Request
from gymrl.errors import ConfigError, UnknownNameError


class ScriptedBackend(Backend):
    """Runs ``env.scripted_policies[target](env)`` for each request."""

    def __init__(self, target: str) -> None:
        if not target:
            raise ConfigError("scripted policy needs a name, e.g. scripted:oracle")
        self.name = f"scripted:{target}"
        self.target = target

    def check_env(self, env: object) -> None:
        """Fail before any work if ``env`` has no scripted policy of this name."""
        policies = getattr(getattr(env, "unwrapped", env), "scripted_policies", {})
        if self.target not in policies:
            raise UnknownNameError(
                f"unknown scripted policy {self.target!r} for env "
                f"{getattr(env, 'name', type(env).__name__)!r}; available: "
                f"{', '.join(sorted(policies)) or 'none'}")

    def generate(self, requests: list[Request]) -> list[Completion]:
        out = []
        for request in requests:
            env = getattr(request.env, "unwrapped", request.env)
            if env is None:
                raise ConfigError(f"{self.name} needs the env in each request")
            self.check_env(env)
            text = env.scripted_policies[self.target](env)
            out.append(Completion(text=text, completion_tokens=len(text.split())))
        return out
