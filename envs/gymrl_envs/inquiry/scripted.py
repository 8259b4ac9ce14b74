"""Scripted policies of the inquiry env: baselines that read the env's belief, and two test
doubles that prove the ends of the default reward's range (``gymrl check env=inquiry``).

- ``oracle``: asks about the attribute with the greatest expected information gain under the
  user's answering model (exact, from the belief), while that gain is at least ``MIN_GAIN``
  bits and a turn is left for the spec; then gives the belief's most probable joint intent
  (the MAP spec). It never reads the hidden intent, so it is also the SFT demonstration.
  Greedy gains shrink as the belief narrows, so with users who answer vaguely the oracle
  asks up to the turn limit and its bits per question over all its questions falls, though
  question for question it gains the most.
- ``never_ask``: the MAP spec from the opening request alone.
- ``random_ask``: asks about uniformly random attributes (repeats allowed), half as many
  questions as there are attributes, then gives the MAP spec.
- ``malformed``: plain text with no tags, every turn.
- ``clairvoyant``: reads the hidden intent (privileged, like the router's and the tools env's
  oracles) and gives it as the spec at once, asking nothing: the best outcome, which no honest
  policy can count on. A test double, never a demonstration (``demo_policy`` is ``oracle``).
- ``stall``: asks the user something off-topic every turn and never gives a spec: every
  question costs, none informs (the user cannot map it to an attribute), and the turn limit
  ends the episode with a format violation: the worst outcome. With ``max_turns >= 10`` it
  spends the whole question-cost cap.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np

from gymrl_envs.inquiry.space import expected_information_gain

MIN_GAIN = 0.01  # bits: below this an answer cannot change the spec in any useful way


def _ask(env: Any, attribute: str, why: str) -> str:
    label = env.domain.words(attribute).label
    return f"<think>{why}</think>\n<ask>What {label} would you like?</ask>"


def _spec(env: Any, why: str) -> str:
    spec = env.space.map_intent(env.belief)
    return f"<think>{why}</think>\n<spec>{json.dumps(spec)}</spec>"


def _turns_left(env: Any) -> int:
    return env.max_turns - len(env.episode.policy_turns)


def expected_gains(env: Any) -> dict[str, float]:
    """The exact expected information gain (bits) of asking about each attribute now."""
    return {name: expected_information_gain(env.space.marginal(env.belief, name),
                                            env.answer_matrix(name)[1])
            for name in env.space.names}


def oracle(env: Any) -> str:
    if _turns_left(env) > 1:
        gains = expected_gains(env)
        best = max(gains, key=lambda name: gains[name])
        if gains[best] >= MIN_GAIN:
            return _ask(env, best, f"Asking about {best} gains {gains[best]:.2f} bits in "
                                   "expectation, the most of any attribute.")
    return _spec(env, "Nothing left worth asking; the most probable intent.")


def never_ask(env: Any) -> str:
    return _spec(env, "I will guess from the request.")


def random_ask(env: Any) -> str:
    budget = min(len(env.space.names) // 2, env.max_turns - 1)
    if env.episode.facts["questions"] < budget:
        # Its own generator, seeded by the task: drawing from env.np_random would shift the
        # simulated user's draws, and baselines compare on the same user answers.
        rng = np.random.default_rng([env.episode.facts["questions"],
                                     *env.episode.task.id.encode()])
        names = env.space.names
        return _ask(env, names[int(rng.integers(len(names)))], "A random question.")
    return _spec(env, "Enough questions; the most probable intent.")


def malformed(env: Any) -> str:
    return "I think you want a bar chart with a legend."


def clairvoyant(env: Any) -> str:
    intent = env.episode.task.hidden["intent"]
    return f"<think>I know what you want.</think>\n<spec>{json.dumps(intent)}</spec>"


# No domain's words (not even "where", the restaurant's area): no user can map it to an attribute.
OFF_TOPIC = "What is your favourite song?"


def stall(env: Any) -> str:
    return f"<think>Small talk first.</think>\n<ask>{OFF_TOPIC}</ask>"


POLICIES = {"oracle": oracle, "never_ask": never_ask, "random_ask": random_ask,
            "malformed": malformed, "clairvoyant": clairvoyant, "stall": stall}
