"""Tasks of the tools env, generated and seeded: function calling, arithmetic, retrieval.

Every task carries its gold tool calls (``hidden["gold_calls"]``, in the ToolRL/BFCL shape
``{"name": ..., "parameters": {...}}``), the tools or functions it offers, its family, and the
gold answer when the final response can be checked. Splits are disjoint by construction: each
family draws its train and test tasks from separate seeded streams (retrieval: separate
documents).
"""

from __future__ import annotations

import random
from functools import cache
from itertools import zip_longest
from typing import Any

from gymrl import Task
from gymrl_envs.tools.functions import FUNCTIONS, RATES

FAMILIES = ("function_calling", "arithmetic", "retrieval")
SPLITS = ("train", "test")
_SIZES = {"train": 600, "test": 150}  # per family (function calling: single+multi+irrelevance)

CITIES = ("Lisbon", "Oslo", "Nairobi", "Lima", "Hanoi", "Quito", "Tbilisi", "Perth", "Dakar",
          "Riga", "Cusco", "Bergen", "Porto", "Kyoto", "Tunis", "Gdansk", "Austin", "Leeds")
RESTAURANTS = ("Blue Fig", "Casa Mar", "The Copper Pot", "Noodle Bar 9", "Olive & Thyme")
SYMBOLS = ("ACME", "ZYX", "QRTS", "BLU", "NOVA", "HEXA", "ORBT")
OFF_TOPIC = (
    "Write a two-line poem about the sea.",
    "Who painted the Mona Lisa?",
    "Suggest a name for a black cat.",
    "Explain in one sentence what a verb is.",
    "Give me a synonym for 'happy'.",
    "What is the plural of 'mouse'?",
    "Tell me a fun fact about octopuses.",
    "How do you say 'thank you' in Spanish?",
)


def _call(name: str, **parameters: Any) -> dict[str, Any]:
    return {"name": name, "parameters": parameters}


def _single_request(rng: random.Random) -> tuple[str, dict[str, Any], str]:
    """(request text, gold call, gold answer taken from the simulated result)."""
    kind = rng.choice(sorted(FUNCTIONS))
    city, other = rng.sample(CITIES, 2)
    if kind == "get_weather":
        unit = rng.choice(["celsius", "fahrenheit"])
        call = _call(kind, city=city, unit=unit)
        text = f"What is the temperature in {city} right now, in {unit}?"
    elif kind == "convert_currency":
        src, dst = rng.sample(sorted(RATES), 2)
        amount = rng.randrange(5, 5000)
        call = _call(kind, amount=amount, from_currency=src, to_currency=dst)
        text = f"How much is {amount} {src} in {dst}?"
    elif kind == "get_stock_price":
        symbol = rng.choice(SYMBOLS)
        call = _call(kind, symbol=symbol)
        text = f"What is {symbol} trading at?"
    elif kind == "get_distance":
        unit = rng.choice(["km", "miles"])
        call = _call(kind, origin=city, destination=other, unit=unit)
        text = f"How far is it from {city} to {other} by road, in {unit}?"
    elif kind == "get_population":
        call = _call(kind, city=city)
        text = f"How many people live in {city}?"
    elif kind == "book_table":
        restaurant = rng.choice(RESTAURANTS)
        people, time = rng.randrange(2, 9), f"{rng.randrange(17, 22)}:{rng.choice(['00', '30'])}"
        call = _call(kind, restaurant=restaurant, people=people, time=time)
        text = f"Book a table at {restaurant} for {people} people at {time}."
    elif kind == "set_alarm":
        time = f"0{rng.randrange(5, 10)}:{rng.choice(['00', '15', '30', '45'])}"
        label = rng.choice(["gym", "work", "flight", "meds"])
        call = _call(kind, time=time, label=label)
        text = f"Set an alarm for {time} labelled {label}."
    else:  # get_timezone
        call = _call(kind, city=city)
        text = f"What is the UTC offset of {city}?"
    result = FUNCTIONS[kind].simulate(call["parameters"])
    return text, call, _answer_of(kind, result)


def _answer_of(kind: str, result: str) -> str:
    """The value a user asked for, as the simulated result states it."""
    if kind == "get_weather":
        return result.split(": ")[1].split(" degrees")[0]
    if kind == "convert_currency":
        return result.split(" = ")[1].split()[0]
    if kind in ("get_stock_price",):
        return result.split(": ")[1].split()[0]
    if kind == "get_distance":
        return result.split(": ")[1].split()[0]
    if kind == "get_population":
        return result.split("population ")[1]
    if kind == "book_table":
        return result.split("confirmation ")[1]
    if kind == "set_alarm":
        return result.split("id ")[1]
    return result.split(": ")[1]  # get_timezone: "UTC+3"


def function_calling_tasks(split: str, n: int, seed: int) -> list[Task]:
    """Single calls (60%), two calls (20%), and irrelevance cases (20%: call nothing)."""
    rng = random.Random(f"function_calling/{split}/{seed}")
    tasks = []
    for i in range(n):
        roll = rng.random()
        if roll < 0.6:
            text, call, answer = _single_request(rng)
            calls, answers, kind = [call], [answer], "single"
        elif roll < 0.8:
            (t1, c1, _), (t2, c2, _) = _single_request(rng), _single_request(rng)
            while c2["name"] == c1["name"]:
                t2, c2, _ = _single_request(rng)
            text, calls, answers, kind = f"{t1} Also: {t2}", [c1, c2], None, "multiple"
        else:
            text, calls, answers, kind = rng.choice(OFF_TOPIC), [], None, "irrelevance"
        offered = {c["name"] for c in calls}
        distractors = [f for f in sorted(FUNCTIONS) if f not in offered]
        offered |= set(rng.sample(distractors, rng.randrange(1, 3)))
        tasks.append(Task(
            id=f"fc-{split}-{i}", prompt=text, answer=answers, split=split,
            hidden={"family": "function_calling", "kind": kind, "gold_calls": calls,
                    "functions": sorted(offered), "tools": []}))
    return tasks


_ARITHMETIC = (
    ("A warehouse holds {a} crates with {b} bottles each. {c} bottles are shipped out. How "
     "many bottles remain?", "{a}*{b}-{c}"),
    ("Tickets cost {b} dollars each. A school buys {a} tickets and gets {c} dollars off the "
     "total. How much does it pay?", "{a}*{b}-{c}"),
    ("A train runs at {b} km per hour for {a} hours, then {c} km more. How far does it go in "
     "total?", "{b}*{a}+{c}"),
    ("What is {a} squared minus {b} times {c}?", "{a}^2-{b}*{c}"),
    ("A farm has {a} rows of {b} trees and plants {c} more trees. How many trees are there "
     "now?", "{a}*{b}+{c}"),
    ("{p} kilograms of rice are split equally into {b} bags. How many kilograms are in each "
     "bag, minus the {d} kilograms taken from each bag?", "{p}/{b}-{d}"),
)


def arithmetic_tasks(split: str, n: int, seed: int) -> list[Task]:
    """Word problems with 3-digit numbers: exact integer answers that need the calculator."""
    rng = random.Random(f"arithmetic/{split}/{seed}")
    tasks = []
    for i in range(n):
        template, expression = rng.choice(_ARITHMETIC)
        a, b, c = rng.randrange(101, 999), rng.randrange(12, 99), rng.randrange(101, 999)
        k = rng.randrange(101, 999)
        d = rng.randrange(2, 99)
        values = {"a": a, "b": b, "c": c, "p": b * k, "d": d}
        expr = expression.format(**values)
        answer = _integer_value(expr)
        tasks.append(Task(
            id=f"ar-{split}-{i}", prompt=template.format(**values), answer=[str(answer)],
            split=split,
            hidden={"family": "arithmetic", "kind": "arithmetic",
                    "gold_calls": [_call("calculator", expression=expr)],
                    "functions": [], "tools": ["calculator", "search"]}))
    return tasks


def _integer_value(expr: str) -> int:
    """The value of a generated expression: only ``+ - * / ^`` on integers (our own text)."""
    import ast
    import operator

    ops = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul,
           ast.Div: operator.floordiv, ast.Pow: operator.pow}

    def walk(node: ast.AST) -> int:
        if isinstance(node, ast.BinOp) and type(node.op) in ops:
            return ops[type(node.op)](walk(node.left), walk(node.right))
        if isinstance(node, ast.Constant) and isinstance(node.value, int):
            return node.value
        raise ValueError(f"unexpected node {ast.dump(node)}")

    return walk(ast.parse(expr.replace("^", "**"), mode="eval").body)


def retrieval_tasks(split: str, n: int, seed: int) -> list[Task]:
    """Questions whose answers are in the local corpus (``gymrl_tools.corpus``)."""
    from gymrl_tools.corpus import generate_corpus, generate_questions, split_questions

    questions = split_questions(generate_questions(generate_corpus(seed), seed=seed),
                                seed=seed)[split]
    rng = random.Random(f"retrieval/{split}/{seed}")
    picked = rng.sample(questions, min(n, len(questions)))
    return [Task(id=f"rt-{split}-{q.id}", prompt=q.question, answer=[q.answer, *q.aliases],
                 split=split,
                 hidden={"family": "retrieval", "kind": "retrieval", "doc_id": q.doc_id,
                         "gold_calls": [_call("search", query=q.question)], "functions": [],
                         "tools": ["search", "calculator"]})
            for q in picked]


_BUILDERS = {"function_calling": function_calling_tasks, "arithmetic": arithmetic_tasks,
             "retrieval": retrieval_tasks}


@cache
def generate_tasks(families: tuple[str, ...], split: str, seed: int = 0) -> tuple[Task, ...]:
    """The tasks of ``families`` in ``split``, interleaved by family (deterministic)."""
    per = [_BUILDERS[f](split, _SIZES[split], seed) for f in families]
    return tuple(t for group in zip_longest(*per) for t in group if t is not None)
