"""Router tasks: generated multi-hop QA over the synthetic world, and a JSONL loader.

Generated tasks are single-hop (one fact, or arithmetic) and 2-3-hop chains across domains, so
a good router calls a different specialist for each hop. Splits are fixed by the world seed.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from gymrl import ConfigError, Task
from gymrl_envs.router.world import RELATIONS, build_world

# Chains of relations and the question that asks for the last object from the first subject.
CHAINS: dict[tuple[str, ...], str] = {
    ("author_of", "birthplace"): "In which city was the author of {x} born?",
    ("author_of", "birth_year"): "In what year was the author of {x} born?",
    ("birthplace", "country_of"): "In which country was {x} born?",
    ("discoverer_of", "birth_year"): "In what year was the discoverer of {x} born?",
    ("discoverer_of", "birthplace"): "Where was the discoverer of {x} born?",
    ("country_of", "capital_of"): "What is the capital of the country that {x} is in?",
    ("author_of", "birthplace", "country_of"): "In which country was the author of {x} born?",
    ("discoverer_of", "birthplace", "country_of"):
        "In which country was the discoverer of {x} born?",
    ("birthplace", "country_of", "capital_of"):
        "What is the capital of the country where {x} was born?",
}
MATH_TEMPLATE = "What is {a} * {b} + {c}?"
SPLITS = ("train", "test")


def _hop(relation: str, subject: str, answer: str) -> dict[str, Any]:
    _, _, domain, template = RELATIONS[relation]
    return {"relation": relation, "subject": subject, "answer": answer, "domain": domain,
            "question": template.format(x=subject)}


def _chain_task(world: Any, chain: tuple[str, ...], head: str, template: str,
                task_id: str) -> Task:
    hops, subject = [], head
    for relation in chain:
        answer = world.lookup(relation, subject)
        hops.append(_hop(relation, subject, answer))
        subject = answer
    domains = [h["domain"] for h in hops]
    return Task(id=task_id, prompt=template.format(x=head), answer=[subject],
                hidden={"hops": hops, "domain": domains[-1] if len(hops) == 1 else "multi",
                        "kind": f"{len(hops)}hop", "domains": domains})


@lru_cache(maxsize=4)
def generate_tasks(world_seed: int = 0, per_relation: int = 150, per_chain: int = 120,
                   n_math: int = 300, test_fraction: float = 0.2) -> dict[str, list[Task]]:
    """Generate the task set of a world: ``{"train": [...], "test": [...]}``."""
    world = build_world(world_seed)
    rng = np.random.default_rng(world_seed + 1)
    tasks: list[Task] = []
    for relation, (subject_type, _, _, template) in RELATIONS.items():
        subjects = world.entities[subject_type]
        picks = rng.choice(len(subjects), size=min(per_relation, len(subjects)), replace=False)
        for i in sorted(int(p) for p in picks):
            tasks.append(_chain_task(world, (relation,), subjects[i], template,
                                     f"{relation}-{i}"))
    for chain, template in CHAINS.items():
        subject_type = RELATIONS[chain[0]][0]
        subjects = world.entities[subject_type]
        picks = rng.choice(len(subjects), size=min(per_chain, len(subjects)), replace=False)
        for i in sorted(int(p) for p in picks):
            tasks.append(_chain_task(world, chain, subjects[i], template,
                                     f"{'+'.join(chain)}-{i}"))
    for i in range(n_math):
        a, b, c = (int(v) for v in rng.integers([11, 11, 1], [99, 99, 999]))
        question = MATH_TEMPLATE.format(a=a, b=b, c=c)
        answer = str(a * b + c)
        hop = {"relation": "arithmetic", "subject": f"{a} * {b} + {c}", "answer": answer,
               "domain": "math", "question": question}
        tasks.append(Task(id=f"math-{i}", prompt=question, answer=[answer],
                          hidden={"hops": [hop], "domain": "math", "kind": "1hop",
                                  "domains": ["math"]}))
    order = rng.permutation(len(tasks))
    n_test = int(round(test_fraction * len(tasks)))
    test_ids = {int(i) for i in order[:n_test]}
    out: dict[str, list[Task]] = {"train": [], "test": []}
    for i, task in enumerate(tasks):
        task.split = "test" if i in test_ids else "train"
        out[task.split].append(task)
    return out


def load_qa_jsonl(path: str | Path, *, split: str = "test") -> list[Task]:
    """Load real QA data in the NQ / HotpotQA / FlashRAG JSONL shape.

    Each line is an object with ``question`` and one of ``answer`` (string), ``answers`` or
    ``golden_answers`` (lists); ``id`` or ``_id`` is optional. The simulated experts answer
    such open questions by overall skill (domain ``open``); real experts answer them truly.
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"QA file {str(path)!r} does not exist")
    tasks: list[Task] = []
    with path.open(encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ConfigError(f"{path}:{lineno}: not valid JSON ({exc.msg})") from None
            if not isinstance(row, dict) or not isinstance(row.get("question"), str):
                raise ConfigError(f"{path}:{lineno}: each line needs a string 'question'")
            answers = _answers(row)
            if not answers:
                raise ConfigError(f"{path}:{lineno}: needs 'answer', 'answers' or "
                                  "'golden_answers' with at least one string")
            task_id = str(row.get("id", row.get("_id", f"{path.stem}-{lineno}")))
            tasks.append(Task(id=task_id, prompt=row["question"].strip(), answer=answers,
                              hidden={"hops": [], "domain": "open", "kind": "open",
                                      "domains": ["open"]}, split=split))
    if not tasks:
        raise ConfigError(f"QA file {str(path)!r} holds no tasks")
    return tasks


def _answers(row: dict[str, Any]) -> list[str]:
    for key in ("golden_answers", "answers", "answer"):
        value = row.get(key)
        if isinstance(value, str):
            return [value]
        if isinstance(value, Iterable) and not isinstance(value, dict):
            return [str(v) for v in value if isinstance(v, str | int | float)]
    return []
