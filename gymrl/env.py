"""LLMEnv: a Gymnasium env whose actions are the policy's text and whose observations are text.

Subclasses implement two methods: :meth:`LLMEnv.sample_task` and :meth:`LLMEnv.respond`. The
base class keeps the Episode record, the chat messages, the turn limit, and scores the finished
episode with the configured reward.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import gymnasium

from gymrl import plugins
from gymrl.episode import Episode, Task, Turn
from gymrl.errors import ConfigError
from gymrl.spaces import UTF8Text


class LLMEnv(gymnasium.Env[str, str]):
    """Base class of gymrl environments.

    Attributes:
        name: the registry name (``router``); set by subclasses.
        stop: stop strings a policy should end its turn at (e.g. ``</search>``).
        scripted_policies: named scripted policies, ``policy(env) -> str``, that read the env's
            privileged state; the ``scripted:`` backend runs them.
        demo_policy: the scripted policy whose episodes the learner's SFT warm start imitates
            (``sft.policy`` overrides it).
        summary_ratios: metrics that evaluation summaries report as a pooled ratio, ``name ->
            (numerator, denominator)`` metric names: a group's sum of one over its sum of the
            other (bits per question over all questions asked), not a mean of per-episode
            ratios, which would weigh an episode with one question like one with ten.
        episode: the current episode record.

    Optional methods, found by ``gymrl`` when an env defines them: ``metrics(episode) -> dict``
    (evaluation metrics of a finished episode; string values such as ``kind`` group the
    summary) and :meth:`render_episode_png` (``gymrl eval render=N``).
    """

    metadata: ClassVar[dict[str, Any]] = {"render_modes": ["ansi"]}
    name: ClassVar[str] = ""
    stop: ClassVar[tuple[str, ...]] = ()
    scripted_policies: ClassVar[dict[str, Any]] = {}
    demo_policy: ClassVar[str] = "oracle"
    summary_ratios: ClassVar[dict[str, tuple[str, str]]] = {}

    def __init__(self, *, max_turns: int = 8, max_action_chars: int = 32768,
                 max_observation_chars: int = 65536, render_mode: str | None = None) -> None:
        if max_turns < 1:
            raise ValueError(f"max_turns must be >= 1, got {max_turns}")
        if render_mode not in (None, *self.metadata["render_modes"]):
            raise ValueError(f"render_mode {render_mode!r}; allowed: "
                             f"{self.metadata['render_modes']} or None")
        self.max_turns = max_turns
        self.max_action_chars = max_action_chars
        self.render_mode = render_mode
        self.action_space = UTF8Text(max_action_chars)
        self.observation_space = UTF8Text(max_observation_chars)
        self.reward_fn: Any = None
        self.registration: Any = None
        self.episode: Episode | None = None
        self.messages: list[dict[str, str]] = []

    # -- what subclasses implement --------------------------------------------------------
    def system_prompt(self) -> str:
        """Instructions shown to the policy before the task (the protocol, the tools)."""
        return ""

    def sample_task(self, options: dict[str, Any] | None) -> Task:
        """Pick this episode's task: ``options['task_id']`` if given, else one drawn with
        ``self.np_random`` from the tasks given to :meth:`set_tasks`. Envs without a task list
        override this.
        """
        if not hasattr(self, "_by_id"):
            raise NotImplementedError(f"{type(self).__name__} must call set_tasks() or override "
                                      "sample_task()")
        task_id = (options or {}).get("task_id")
        if task_id is None:
            return self.tasks[int(self.np_random.integers(len(self.tasks)))]
        if task_id not in self._by_id:
            raise ConfigError(f"unknown task_id {task_id!r} in split "
                              f"{getattr(self, 'split', None)!r} of {self.name}")
        return self._by_id[task_id]

    def set_tasks(self, tasks: Any) -> None:
        """The tasks :meth:`sample_task` draws from (a sequence of Task), indexed by id."""
        self.tasks = tasks
        self._by_id = {t.id: t for t in tasks}

    def respond(self, action: str, turn: Turn) -> tuple[str, bool]:
        """React to one policy turn: record facts and calls on ``turn``.

        Returns:
            The observation text to show the policy next ("" if none) and whether the episode
            has ended (the policy answered).
        """
        raise NotImplementedError

    def on_truncate(self) -> None:
        """Record facts when the turn limit ends the episode (e.g. a missing answer)."""

    # -- the Gymnasium contract ------------------------------------------------------------
    def set_reward(self, reward: Any) -> None:
        self.reward_fn = reward

    def reset(self, *, seed: int | None = None,
              options: dict[str, Any] | None = None) -> tuple[str, dict[str, Any]]:
        super().reset(seed=seed)
        task = self.sample_task(options)
        self.episode = Episode(env=self.name, task=task, seed=seed)
        self.episode.turns.append(Turn(role="env", text=task.prompt))
        system = self.system_prompt()
        self.episode.system_prompt = system
        self.messages = ([{"role": "system", "content": system}] if system else [])
        self.messages.append({"role": "user", "content": task.prompt})
        return task.prompt, self._info()

    def step(self, action: str) -> tuple[str, float, bool, bool, dict[str, Any]]:
        episode = self.episode
        if episode is None or episode.done:
            raise RuntimeError(f"{type(self).__name__}.step() called before reset() or after "
                               "the episode ended; call reset()")
        if not isinstance(action, str):
            raise TypeError(f"action must be str (the policy's text), got "
                            f"{type(action).__name__}")
        turn = Turn(role="policy", text=action)
        if len(action) > self.max_action_chars:
            turn.facts["format_violations"] = [
                f"action of {len(action)} characters exceeds max_action_chars="
                f"{self.max_action_chars}"]
            action = action[: self.max_action_chars]
        episode.turns.append(turn)
        self.messages.append({"role": "assistant", "content": turn.text})
        observation, terminated = self.respond(action, turn)
        truncated = not terminated and len(episode.policy_turns) >= self.max_turns
        if truncated:
            self.on_truncate()
        if observation:
            episode.turns.append(Turn(role="env", text=observation))
            self.messages.append({"role": "user", "content": observation})
        episode.terminated, episode.truncated = terminated, truncated
        reward = 0.0
        if terminated or truncated:
            episode.termination = episode.termination or ("answered" if terminated
                                                          else "turn_limit")
            reward = self._score(episode)
        return observation, reward, terminated, truncated, self._info()

    def _score(self, episode: Episode) -> float:
        if self.reward_fn is None:
            return 0.0
        score = self.reward_fn(episode)
        episode.reward = float(score.total)
        episode.rewards = dict(score.components) or {getattr(self.reward_fn, "name", "reward"):
                                                     episode.reward}
        episode.diagnostics = dict(score.diagnostics)
        if score.per_turn is not None:
            if len(score.per_turn) != len(episode.policy_turns):
                raise ValueError(f"reward {self.reward_fn.name!r} gave {len(score.per_turn)} "
                                 f"per-turn values for {len(episode.policy_turns)} policy turns")
            for turn, value in zip(episode.policy_turns, score.per_turn, strict=True):
                turn.rewards["total"] = value
        plugins.notify_episode_end(episode, dict(episode.rewards))
        return episode.reward

    def _info(self) -> dict[str, Any]:
        episode = self.episode
        info: dict[str, Any] = {
            "messages": list(self.messages),
            "turn": len(episode.policy_turns),
            "task_id": episode.task.id,
        }
        if episode.done:
            info["episode"] = episode
            info["rewards"] = dict(episode.rewards)
        return info

    def render(self) -> str | None:
        if self.render_mode != "ansi" or self.episode is None:
            return None
        return "\n".join(f"[{t.role}] {t.text}" for t in self.episode.turns)

    # -- optional: drawing a finished episode ----------------------------------------------
    def render_episode_png(self, episode: Episode, path: Path) -> Path:
        """Draw a finished ``episode`` as a PNG at ``path`` and return the path written.

        ``gymrl eval render=N`` calls it for the first N episodes once they have all run, so it
        must draw from the Episode record alone (its task, turns and facts), never from the
        env's live state, which by then belongs to another episode. Envs that can draw
        override this; those that can in some configurations only also override
        :meth:`check_render_episode_png`. The base class draws nothing.
        """
        self.check_render_episode_png()
        raise NotImplementedError

    def check_render_episode_png(self) -> None:
        """Raise ConfigError, naming the env and the reason, if this env as configured cannot
        draw episodes; ``gymrl eval`` calls it before any episode runs."""
        if type(self).render_episode_png is LLMEnv.render_episode_png:
            raise ConfigError(f"env {self.name!r} cannot draw episodes as PNG (render=N needs "
                              "an env that implements render_episode_png(episode, path))")
