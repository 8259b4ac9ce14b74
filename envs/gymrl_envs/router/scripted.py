"""Scripted routers: baselines and test doubles that read the env's hidden task.

Each policy decomposes the task into its hops (privileged knowledge), asks one expert per hop
with the hop's single-fact question, carries the expert's reply into the next hop (so expert
mistakes propagate, as they would for a model), and answers with the last reply. They differ
only in which expert they pick for a domain.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import numpy as np

from gymrl_envs.router.world import RELATIONS

# A relation as the chain in the first thought names it (multi-hop questions use these words).
CHAIN_WORDS = {"capital_of": "capital", "country_of": "country", "birthplace": "born",
               "birth_year": "year", "author_of": "author", "discoverer_of": "discoverer",
               "arithmetic": "arithmetic"}

_ANSWER_RE = re.compile(r"The answer is (.+?)\.?$")


def _reply_answer(text: str) -> str:
    m = _ANSWER_RE.search(text.strip())
    return (m.group(1) if m else text).strip()


def _route(env: Any, choose: Callable[[Any, str], str], *, chain: bool = False) -> str:
    episode = env.episode
    hops = episode.task.hidden.get("hops", [])
    calls = [c for c in episode.tool_calls if c.error is None]
    k = len(calls)
    last = _reply_answer(calls[-1].result) if calls else ""
    if not hops:  # an open question: ask it whole, once
        if k == 0:
            expert = choose(env, "open")
            return (f"<think>An open question; I will ask {expert}.</think>\n"
                    f"<search>{expert}: {episode.task.prompt}</search>")
        return f"<think>{expert_said(last)}</think>\n<answer>{last}</answer>"
    if k < len(hops):
        hop = hops[k]
        if hop["relation"] == "arithmetic":
            question = hop["question"]
        else:
            subject = hop["subject"] if k == 0 else last
            question = RELATIONS[hop["relation"]][3].format(x=subject)
        expert = choose(env, hop["domain"])
        if chain:
            # The first turn lists the question's relations, innermost first, each by one
            # word (the question's own in multi-hop questions), and every step names its own:
            # whether another step follows is then read off the list (is there a word after
            # this one?) instead of a hop count guessed from the whole question up front.
            words = ", ".join(CHAIN_WORDS[h["relation"]] for h in hops)
            step = (f"Chain: {words}. " if k == 0 else "") + \
                f"Step {k + 1} ({CHAIN_WORDS[hop['relation']]})"
        else:
            step = f"Step {k + 1} of {len(hops)}"
        return (f"<think>{step} is a {hop['domain']} question; {expert} should answer "
                f"it.</think>\n<search>{expert}: {question}</search>")
    return f"<think>{expert_said(last)}</think>\n<answer>{last}</answer>"


def expert_said(answer: str) -> str:
    return f"The experts' answers lead to {answer}."


def _accuracy(env: Any, name: str, domain: str) -> float:
    return env.pool.profiles[name].accuracy.get(domain, 0.0)


def _choices(env: Any) -> dict[str, str]:
    """Each policy's pick per domain, worked out once per pool (the pool does not change)."""
    pool = env.pool
    cached = getattr(pool, "_scripted_choices", None)
    if cached is None:
        profiles = pool.profiles
        price = {n: p.price_per_mtok for n, p in profiles.items()}
        mean_acc = {n: float(np.mean(list(p.accuracy.values()) or [0.0]))
                    for n, p in profiles.items()}
        cached = {"strongest": max(profiles, key=lambda n: (mean_acc[n], price[n])),
                  "cheapest": min(profiles, key=price.__getitem__)}
        domains = {d for p in profiles.values() for d in p.accuracy} | {"open"}
        for domain in domains:
            best = max(_accuracy(env, n, domain) for n in profiles)
            cached[f"oracle/{domain}"] = min(
                (n for n in profiles if _accuracy(env, n, domain) == best),
                key=price.__getitem__)
        pool._scripted_choices = cached
    return cached


def _oracle(env: Any, domain: str) -> str:
    return _choices(env)[f"oracle/{domain}"]


def _strongest(env: Any, domain: str) -> str:
    return _choices(env)["strongest"]


def _cheapest(env: Any, domain: str) -> str:
    return _choices(env)["cheapest"]


def _random_expert(env: Any, domain: str) -> str:
    # A private generator: drawing from env.np_random would change the experts' luck.
    episode = env.episode
    rng = np.random.default_rng([episode.seed or 0, len(episode.policy_turns), 7])
    names = list(env.pool.profiles)
    return names[int(rng.integers(len(names)))]


def oracle(env: Any) -> str:
    """Per hop, the cheapest of the most accurate experts for the hop's domain."""
    return _route(env, _oracle)


def oracle_chain(env: Any) -> str:
    """The oracle's routing; its thoughts list the question's relations instead of a count."""
    return _route(env, _oracle, chain=True)


def strongest(env: Any) -> str:
    """Always the expert with the best average accuracy (the priciest on ties)."""
    return _route(env, _strongest)


def cheapest(env: Any) -> str:
    """Always the cheapest expert."""
    return _route(env, _cheapest)


def random(env: Any) -> str:
    """A uniformly random expert per hop."""
    return _route(env, _random_expert)


def no_call(env: Any) -> str:
    """Answers at once without calling anyone (a guess)."""
    return "<think>I will answer without asking.</think>\n<answer>I do not know</answer>"


def malformed(env: Any) -> str:
    """Breaks the grammar every turn (no tags): the worst format."""
    return "The answer is probably somewhere, I think."


def costly_wrong(env: Any) -> str:
    """Spends the whole call budget on the priciest expert, then answers wrongly with bad format."""
    episode = env.episode
    calls = [c for c in episode.tool_calls if c.error is None]
    if len(calls) < env.max_calls:
        expert = max(env.pool.profiles, key=lambda n: env.pool.profiles[n].price_per_mtok)
        padding = " ".join(["please answer carefully and in detail"] * 40)
        return (f"<think>ask again</think>\n<search>{expert}: {episode.task.prompt} "
                f"{padding}</search>")
    return "<answer>wrong</answer> trailing text"


POLICIES: dict[str, Callable[[Any], str]] = {
    "oracle": oracle,
    "oracle_chain": oracle_chain,
    "strongest": strongest,
    "cheapest": cheapest,
    "random": random,
    "no_call": no_call,
    "malformed": malformed,
    "costly_wrong": costly_wrong,
}
