"""Berkeley Function Calling Leaderboard (BFCL v4) tasks for the tools env, read from ``bfcl-eval``.

The PyPI package ``bfcl-eval`` ships BFCL's questions (``bfcl_eval/data/BFCL_v4_<category>.json``)
and possible answers (``bfcl_eval/data/possible_answer/BFCL_v4_<category>.json``), one JSON object
per line. Only those data files are read: the package's Python code is never imported (its
declared dependencies are heavy and not needed), so ``pip install --no-deps bfcl-eval`` suffices.
Any folder with the same layout (a checkout of BFCL's data) works too.

Each entry becomes a tools-env :class:`~gymrl.Task` of family ``bfcl``, shaped like the generated
function-calling tasks:

- ``prompt``: the user's message; a conversation (system or assistant turns) becomes a
  transcript with one ``Role: text`` paragraph per message.
- ``hidden["function_specs"]``: the functions offered, with BFCL's parameter schemas converted to
  JSON Schema (:func:`to_json_schema`). BFCL functions have no implementation: a call that fits
  the schema gets the neutral observation ``{"status": "ok"}`` (see ``env.SpecTool``).
- ``hidden["gold_calls"]``: one concrete right call per BFCL ground-truth call (each parameter's
  first possible answer; left out when that is BFCL's ``""``, "may be omitted"), with every
  possible answer in ``acceptable`` and the omittable parameters in ``optional``
  (``gymrl.toolcalls`` matches against them). Irrelevance categories have no gold call.
- ``answer``: ``None``, as for the generated tasks without a checkable answer: the final
  response is not scored, only the calls are.
- ``hidden["kind"]``: the category, except that ``irrelevance`` and ``live_irrelevance`` are both
  kind ``irrelevance`` (the env's irrelevance metric keys on it); ``hidden["category"]`` keeps it.

Splits are BFCL's entries divided by a hash of their id (``TEST_FRACTION`` to test): the same on
every machine and seed. Entries whose gold call BFCL itself could not match (a required parameter
with no possible answer) are left out.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
from functools import cache
from itertools import islice, product
from pathlib import Path
from typing import Any

from gymrl import ConfigError, Task

#: Categories with one user request and ground-truth calls (or none, for irrelevance).
CATEGORIES = ("simple_python", "multiple", "parallel", "parallel_multiple", "irrelevance")
LIVE_CATEGORIES = ("live_simple", "live_multiple", "live_parallel", "live_parallel_multiple",
                   "live_irrelevance")
IRRELEVANCE = ("irrelevance", "live_irrelevance")
TEST_FRACTION = 0.2
#: At most this many concrete values stand for one possible answer with nested choices.
MAX_ALTERNATIVES = 64
INSTALL = "pip install --no-deps bfcl-eval"

# BFCL's python-style type names that are not JSON Schema's; "any" drops the constraint.
_TYPES = {"dict": "object", "float": "number", "tuple": "array"}
_OMIT = object()  # a possible answer of "": the parameter may be left out


def data_dir() -> Path:
    """The ``data`` folder of the installed ``bfcl-eval``, found without importing it."""
    spec = importlib.util.find_spec("bfcl_eval")  # a top-level spec: the package is not run
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError(f"tools families 'bfcl' needs the BFCL data: {INSTALL}")
    return Path(next(iter(spec.submodule_search_locations))) / "data"


def to_json_schema(schema: dict[str, Any]) -> dict[str, Any]:
    """BFCL's parameter schema as JSON Schema: types ``dict`` -> ``object``, ``float`` ->
    ``number``, ``tuple`` -> ``array``, ``any`` -> no type constraint; ``integer``,
    ``string``, ``boolean`` and ``array`` stay. Nested ``properties`` and ``items`` are
    converted too; other keys (``description``, ``enum``, ``default``, ...) are kept.
    """
    out: dict[str, Any] = {}
    for key, value in schema.items():
        if key == "type":
            if value != "any":
                out[key] = _TYPES.get(value, value)
        elif key == "properties" and isinstance(value, dict):
            out[key] = {k: to_json_schema(v) for k, v in value.items()}
        elif key in ("items", "additionalProperties") and isinstance(value, dict):
            out[key] = to_json_schema(value)
        else:
            out[key] = value
    return out


def _alternatives(value: Any) -> list[Any]:
    """The concrete values one BFCL possible answer stands for.

    As in BFCL's checker, a dict (or each dict in a list) is a pattern one level deep: each key
    maps to a list of literal possible values, ``""`` meaning "leave the key out". Anything
    else is literal.
    """
    if isinstance(value, dict):
        return _expand(value)
    if isinstance(value, list) and any(isinstance(v, dict) for v in value):
        return [list(combo) for combo in islice(
            product(*(_expand(v) if isinstance(v, dict) else [v] for v in value)),
            MAX_ALTERNATIVES)]
    return [value]


def _expand(pattern: dict[str, Any]) -> list[dict[str, Any]]:
    keys = list(pattern)
    options = [[_OMIT if o == "" else o for o in
                (pattern[k] if isinstance(pattern[k], list) else [pattern[k]])] for k in keys]
    return [{k: v for k, v in zip(keys, combo, strict=True) if v is not _OMIT}
            for combo in islice(product(*options), MAX_ALTERNATIVES)]


def gold_call(name: str, answers: dict[str, list[Any]]) -> dict[str, Any] | None:
    """A gold call (``gymrl.toolcalls`` shape) from one BFCL ground-truth call, or ``None``
    when a required parameter has no possible answer."""
    parameters: dict[str, Any] = {}
    acceptable: dict[str, list[Any]] = {}
    optional: list[str] = []
    for key, options in answers.items():
        values = [a for o in options if o != "" for a in _alternatives(o)]
        if "" in options:
            optional.append(key)
        elif not values:
            return None
        if options and options[0] != "" and values:
            parameters[key] = values[0]
        if len(values) != 1 or key in optional:
            acceptable[key] = values
    call: dict[str, Any] = {"name": name, "parameters": parameters}
    if acceptable:
        call["acceptable"] = acceptable
    if optional:
        call["optional"] = optional
    return call


def _prompt(messages: list[dict[str, str]]) -> str:
    if len(messages) == 1 and messages[0]["role"] == "user":
        return messages[0]["content"]
    return "\n\n".join(f"{m['role'].capitalize()}: {m['content']}" for m in messages)


def split_of(entry_id: str) -> str:
    """``train`` or ``test``, from a stable hash of a BFCL entry id."""
    bucket = int.from_bytes(hashlib.sha256(entry_id.encode()).digest()[:8], "big") / 2**64
    return "test" if bucket < TEST_FRACTION else "train"


def _read_lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()
            if line.strip()]


def read_category(category: str, root: Path) -> list[Task]:
    """Every usable entry of one BFCL category under ``root`` (both splits)."""
    questions = root / f"BFCL_v4_{category}.json"
    if not questions.is_file():
        raise ConfigError(f"BFCL category {category!r}: no {questions}")
    answers: dict[str, Any] = {}
    if category not in IRRELEVANCE:
        answer_file = root / "possible_answer" / questions.name
        if not answer_file.is_file():
            raise ConfigError(f"BFCL category {category!r}: no {answer_file}")
        answers = {a["id"]: a["ground_truth"] for a in _read_lines(answer_file)}
    tasks = []
    for entry in _read_lines(questions):
        gold: list[dict[str, Any] | None] = []
        for call in answers.get(entry["id"], []):
            gold.extend(gold_call(name, params) for name, params in call.items())
        if None in gold or (category not in IRRELEVANCE and not gold):
            continue
        specs = [{"name": f["name"], "description": f.get("description", ""),
                  "parameters": to_json_schema(f.get("parameters") or {"type": "dict"})}
                 for f in entry["function"]]
        kind = "irrelevance" if category in IRRELEVANCE else category
        tasks.append(Task(
            id=f"bfcl-{entry['id']}", prompt=_prompt(entry["question"][0]), answer=None,
            split=split_of(entry["id"]),
            hidden={"family": "bfcl", "kind": kind, "category": category, "gold_calls": gold,
                    "functions": [], "function_specs": specs, "tools": []}))
    return tasks


def parse_categories(categories: str) -> tuple[str, ...]:
    """``default`` (the non-live categories), ``all`` (live ones too), or a comma-separated
    list of categories."""
    if categories == "default":
        return CATEGORIES
    if categories == "all":
        return CATEGORIES + LIVE_CATEGORIES
    chosen = tuple(c.strip() for c in categories.split(",") if c.strip())
    unknown = [c for c in chosen if c not in CATEGORIES + LIVE_CATEGORIES]
    if unknown or not chosen:
        raise ConfigError(f"bfcl categories {categories!r}: unknown {unknown}; allowed: "
                          f"'default', 'all' or a comma-separated subset of "
                          f"{', '.join(CATEGORIES + LIVE_CATEGORIES)}")
    return chosen


@cache
def load_bfcl(categories: tuple[str, ...], split: str, root: str | None = None) -> tuple[Task, ...]:
    """The tasks of ``categories`` in ``split``, from ``root`` or the installed ``bfcl-eval``."""
    folder = Path(root) if root else data_dir()
    return tuple(t for c in categories for t in read_category(c, folder) if t.split == split)
