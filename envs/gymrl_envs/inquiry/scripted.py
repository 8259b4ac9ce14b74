"""Scripted policies of the inquiry env: baselines that read the env's belief, and two test
doubles that prove the ends of the default reward's range (``gymrl check env=inquiry``).

- ``oracle``: asks a question while one is worth what it costs, and then gives the belief's
  most probable joint intent (the MAP spec). A question's worth is its value of information:
  the exact expected change, from its answer, of what the env's configured reward pays (the
  expected outcome of the MAP spec over the user's possible answers, from the belief and the
  user's answering model, minus that of the MAP spec now; plus the information gain's pay
  where the reward has one; ``value.py``); its cost is the reward's charge for the next
  question. Of the questions worth their cost it asks the one of greatest expected
  information gain, keeping a turn for the spec. The rule looks one answer ahead: a plan of
  several answers can be worth more than the sum of its parts, but looking two answers ahead
  (the same attribute asked twice) moved mean reward by at most 0.004 a level (diagram, 70
  tasks a level). Vague or unreliable answers are worth less, so at the default price it
  asks novices fewer questions than experts; with free questions it asks them more. It never
  reads the hidden intent, so it is also the SFT demonstration.
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

from gymrl_envs.inquiry import value
from gymrl_envs.inquiry.space import expected_information_gain
from gymrl_envs.inquiry.value import VALUE_TOLERANCE, env_payoff


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


def question_values(env: Any) -> dict[str, float]:
    """What asking about each attribute now is worth: the exact expected change of the env's
    reward from the answer, before the question's charge (``value.question_values``)."""
    return value.question_values(env.space, env.belief, {
        name: env.answer_matrix(name)[1] for name in env.space.names}, env_payoff(env))


def question_charge(env: Any) -> float:
    """What the env's reward charges for the next question."""
    return env_payoff(env).question_charge(env.episode.facts["questions"])


def oracle(env: Any) -> str:
    if _turns_left(env) <= 1:
        return _spec(env, "One turn left; the most probable intent.")
    values, cost = question_values(env), question_charge(env)
    gains = expected_gains(env)
    worth = [name for name in env.space.names if values[name] > cost + VALUE_TOLERANCE]
    if not worth:
        return _spec(env, "No question is worth what it costs; the most probable intent.")
    best = max(worth, key=lambda name: gains[name])
    return _ask(env, best, f"Asking about {best} gains {gains[best]:.2f} bits in expectation, "
                           f"the most of any question worth its cost ({values[best]:.3f} > "
                           f"{cost:.3f}).")


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
