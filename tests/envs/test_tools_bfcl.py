"""BFCL tasks in the tools env: the loader on a local fixture in BFCL's exact file format, the
any-of / optional gold-call matching, and (when ``bfcl-eval`` is installed) the real data."""

from __future__ import annotations

import importlib.util
import json

import jsonschema
import pytest

from gymrl import ConfigError
from gymrl.make import make_env
from gymrl.toolcalls import calls_match, same_call, toolrl_correctness
from gymrl_envs.tools import bfcl

# Entries shaped exactly like BFCL v4's files (one JSON object per line).
QUESTIONS = {
    "simple_python": [
        {"id": "simple_python_0", "question": [[{"role": "user", "content":
            "Find the area of a triangle with a base of 10 units and height of 5 units."}]],
         "function": [{"name": "calculate_triangle_area", "description": "Area of a triangle.",
                       "parameters": {"type": "dict", "properties": {
                           "base": {"type": "integer", "description": "The base."},
                           "height": {"type": "integer", "description": "The height."},
                           "unit": {"type": "string", "description": "The unit."}},
                           "required": ["base", "height"]}}]},
        {"id": "simple_python_89", "question": [[{"role": "user", "content":
            "Fetch Science records of Bluebird High School, scaled by 1.5."}]],
         "function": [{"name": "db_fetch_records", "description": "Fetch records.",
                       "parameters": {"type": "dict", "properties": {
                           "conditions": {"type": "dict", "properties": {
                               "department": {"type": "string"},
                               "school": {"type": "string"}}},
                           "scale": {"type": "float"},
                           "window": {"type": "tuple", "items": {"type": "integer"}},
                           "extra": {"type": "any"},
                           "tags": {"type": "array", "items": {"type": "string"}},
                           "strict": {"type": "boolean", "default": False}},
                           "required": ["conditions", "scale"]}}]},
    ],
    "parallel": [
        {"id": "parallel_0", "question": [[{"role": "system", "content": "Be brief."},
                                           {"role": "user", "content":
                                            "Play Taylor Swift for 20 minutes and Maroon 5 "
                                            "for 15."}]],
         "function": [{"name": "spotify.play", "description": "Play songs.",
                       "parameters": {"type": "dict", "properties": {
                           "artist": {"type": "string"}, "duration": {"type": "integer"}},
                           "required": ["artist", "duration"]}}]},
    ],
    "irrelevance": [
        {"id": "irrelevance_0", "question": [[{"role": "user", "content":
            "Who painted the Mona Lisa?"}]],
         "function": [{"name": "determine_body_mass_index", "description": "BMI.",
                       "parameters": {"type": "dict", "properties": {
                           "weight": {"type": "float"}, "height": {"type": "float"}},
                           "required": ["weight", "height"]}}]},
    ],
}
ANSWERS = {
    "simple_python": [
        {"id": "simple_python_0", "ground_truth": [{"calculate_triangle_area": {
            "base": [10], "height": [5], "unit": ["units", ""]}}]},
        {"id": "simple_python_89", "ground_truth": [{"db_fetch_records": {
            "conditions": [{"department": ["Science"],
                            "school": ["Bluebird High School", "Bluebird HS"]}],
            "scale": [1.5], "window": ["", [1, 2]], "strict": ["", False]}}]},
    ],
    "parallel": [
        {"id": "parallel_0", "ground_truth": [
            {"spotify.play": {"artist": ["Taylor Swift"], "duration": [20]}},
            {"spotify.play": {"artist": ["Maroon 5"], "duration": [15]}}]},
    ],
}


@pytest.fixture
def bfcl_dir(tmp_path):
    """A folder laid out like ``bfcl_eval/data``, holding the fixture above."""
    (tmp_path / "possible_answer").mkdir()
    for category, rows in QUESTIONS.items():
        (tmp_path / f"BFCL_v4_{category}.json").write_text(
            "\n".join(json.dumps(r) for r in rows) + "\n")
    for category, rows in ANSWERS.items():
        (tmp_path / "possible_answer" / f"BFCL_v4_{category}.json").write_text(
            "\n".join(json.dumps(r) for r in rows))  # BFCL's last line has no newline
    return tmp_path


def _by_id(bfcl_dir):
    return {t.id: t for c in QUESTIONS for t in bfcl.read_category(c, bfcl_dir)}


def test_schemas_are_converted_to_json_schema(bfcl_dir):
    spec = _by_id(bfcl_dir)["bfcl-simple_python_89"].hidden["function_specs"][0]
    schema = spec["parameters"]
    jsonschema.Draft202012Validator.check_schema(schema)
    props = schema["properties"]
    assert schema["type"] == "object" and props["conditions"]["type"] == "object"
    assert props["scale"]["type"] == "number" and props["window"]["type"] == "array"
    assert props["window"]["items"] == {"type": "integer"} and "type" not in props["extra"]
    assert props["tags"]["type"] == "array" and props["strict"] == {"type": "boolean",
                                                                    "default": False}


def test_fixture_tasks_have_the_generated_tasks_shape(bfcl_dir):
    tasks = _by_id(bfcl_dir)
    assert set(tasks) == {"bfcl-simple_python_0", "bfcl-simple_python_89", "bfcl-parallel_0",
                          "bfcl-irrelevance_0"}
    for task in tasks.values():
        assert task.answer is None and task.split in ("train", "test")
        assert task.split == bfcl.split_of(task.id.removeprefix("bfcl-"))
        assert task.hidden["family"] == "bfcl" and task.hidden["tools"] == []
    irrelevant = tasks["bfcl-irrelevance_0"]
    assert irrelevant.hidden["gold_calls"] == [] and irrelevant.hidden["kind"] == "irrelevance"
    assert tasks["bfcl-parallel_0"].prompt == (
        "System: Be brief.\n\nUser: Play Taylor Swift for 20 minutes and Maroon 5 for 15.")
    # The concrete call is each parameter's first possible answer; "" first: left out.
    gold = tasks["bfcl-simple_python_89"].hidden["gold_calls"][0]
    assert gold["parameters"] == {"conditions": {"department": "Science",
                                                 "school": "Bluebird High School"},
                                  "scale": 1.5}
    assert set(gold["optional"]) == {"window", "strict"}


def test_any_of_values_and_optional_parameters_match(bfcl_dir):
    tasks = _by_id(bfcl_dir)
    [area] = tasks["bfcl-simple_python_0"].hidden["gold_calls"]
    call = {"name": "calculate_triangle_area", "parameters": {"base": 10, "height": 5}}
    assert same_call(call, area)  # optional unit left out
    assert same_call({**call, "parameters": {"base": 10.0, "height": "5", "unit": "Units"}},
                     area)
    assert not same_call({**call, "parameters": {"base": 10, "height": 5, "unit": "cm"}}, area)
    assert not same_call({**call, "parameters": {"base": 10}}, area)  # required one missing
    assert not same_call({**call, "parameters": {"base": 10, "height": 5, "x": 1}}, area)
    [fetch] = tasks["bfcl-simple_python_89"].hidden["gold_calls"]
    for school in ("Bluebird HS", "bluebird high school"):
        made = {"name": "db_fetch_records", "parameters": {
            "conditions": {"department": "Science", "school": school}, "scale": 1.5,
            "window": [1, 2], "strict": False}}
        assert same_call(made, fetch) and toolrl_correctness([made], [fetch]) == 3.0
    wrong = {"name": "db_fetch_records", "parameters": {
        "conditions": {"department": "Science", "school": "Other"}, "scale": 1.5}}
    assert not same_call(wrong, fetch) and toolrl_correctness([wrong], [fetch]) < 3.0


def test_toolrl_correctness_with_acceptable_and_optional_hand_computed():
    gold = [{"name": "f", "parameters": {"a": 1}, "acceptable": {"a": [1, 2], "b": ["x"]},
             "optional": ["b"]}]
    assert toolrl_correctness([{"name": "f", "parameters": {"a": 2}}], gold) == 3.0
    assert toolrl_correctness([{"name": "f", "parameters": {"a": 2, "b": "x"}}], gold) == 3.0
    # S_max = 1 + 1 + 2 parameters. Wrong b: names 1, values 1 -> 6 * 3 / 4 - 3.
    assert toolrl_correctness([{"name": "f", "parameters": {"a": 2, "b": "y"}}], gold) == 1.5
    # Wrong a, b left out (allowed): names 1, values 1.
    assert toolrl_correctness([{"name": "f", "parameters": {"a": 3}}], gold) == 1.5
    assert calls_match([{"name": "f", "parameters": {"a": 2}}], gold)


def test_many_calls_of_one_name_are_paired_exactly():
    gold = [{"name": "play", "parameters": {"song": i}} for i in range(8)]
    assert toolrl_correctness(gold[::-1], gold) == 3.0
    assert toolrl_correctness(gold[:7], gold) < 3.0


def test_env_scores_fixture_tasks_and_answers_neutrally(bfcl_dir):
    seen = 0
    for split in ("train", "test"):
        env = make_env("tools", families="bfcl", split=split, bfcl_dir=str(bfcl_dir),
                       bfcl_categories="simple_python,parallel,irrelevance").unwrapped
        for task in env.tasks:
            env.reset(seed=0, options={"task_id": task.id})
            first, *_ = env.step(env.scripted_policies["oracle"](env))
            if task.hidden["gold_calls"]:
                assert first.count('{"status": "ok"}') == len(task.hidden["gold_calls"])
                env.step(env.scripted_policies["oracle"](env))
            assert env.episode.rewards["tool_correctness"] == 3.0
            assert env.episode.rewards["tool_format"] == 1.0
            assert env.episode.rewards["outcome"] == 0.0  # the response is not scored
            seen += 1
    assert seen == 4


def test_wrong_calls_score_lower_and_errors_are_clear(bfcl_dir, monkeypatch):
    env = make_env("tools", families="bfcl", split=bfcl.split_of("simple_python_0"),
                   bfcl_dir=str(bfcl_dir), bfcl_categories="simple_python").unwrapped
    env.reset(seed=0, options={"task_id": "bfcl-simple_python_0"})
    obs, *_ = env.step('<think>t</think><tool_call>[{"name": "calculate_triangle_area", '
                       '"parameters": {"base": "ten", "height": 5}}]</tool_call>')
    assert "invalid parameters" in obs
    env.step("<think>t</think><response>done</response>")
    assert env.episode.rewards["tool_correctness"] < 3.0
    with pytest.raises(ConfigError, match="unknown \\['chess'\\]"):
        make_env("tools", families="bfcl", bfcl_categories="chess", bfcl_dir=str(bfcl_dir))
    with pytest.raises(ConfigError, match="no .*BFCL_v4_multiple.json"):
        make_env("tools", families="bfcl", bfcl_categories="multiple", bfcl_dir=str(bfcl_dir))
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a, **k: None if name == "bfcl_eval" else real(name, *a, **k))
    bfcl.load_bfcl.cache_clear()
    with pytest.raises(ConfigError, match="pip install --no-deps bfcl-eval"):
        make_env("tools", families="bfcl")
    bfcl.load_bfcl.cache_clear()


requires_bfcl = pytest.mark.skipif(
    importlib.util.find_spec("bfcl_eval") is None,
    reason="bfcl-eval is not installed (pip install --no-deps bfcl-eval): no real BFCL data")


@requires_bfcl
def test_real_categories_load_with_valid_schemas():
    schemas = set()
    for category in bfcl.CATEGORIES + bfcl.LIVE_CATEGORIES:
        tasks = [t for s in ("train", "test") for t in bfcl.load_bfcl((category,), s)]
        assert tasks, category
        assert all(bool(t.hidden["gold_calls"]) != (category in bfcl.IRRELEVANCE)
                   for t in tasks)
        schemas |= {json.dumps(f["parameters"], sort_keys=True)
                    for t in tasks for f in t.hidden["function_specs"]}
    for schema in schemas:
        jsonschema.Draft202012Validator.check_schema(json.loads(schema))


@requires_bfcl
def test_oracle_scores_full_call_accuracy_on_real_bfcl():
    env = make_env("tools", families="bfcl", split="test").unwrapped
    assert {t.hidden["category"] for t in env.tasks} == set(bfcl.CATEGORIES)
    by_category: dict[str, list] = {}
    for task in env.tasks:
        by_category.setdefault(task.hidden["category"], []).append(task)
    tasks = [t for group in by_category.values() for t in group[:20]]  # every category
    for task in tasks:
        env.reset(seed=0, options={"task_id": task.id})
        done = False
        while not done:
            _, _, terminated, truncated, _ = env.step(env.scripted_policies["oracle"](env))
            done = terminated or truncated
        assert env.metrics(env.episode)["call_accuracy"] == 1.0, task.id
        assert env.episode.rewards["tool_correctness"] == 3.0, task.id
    assert len(tasks) == 20 * len(by_category)


def test_calls_match_pairs_exactly_where_first_fit_would_pair_wrongly():
    # The first call fits both gold calls; first-fit would give it the first and strand the
    # second call, which only the first gold call accepts.
    gold = [{"name": "f", "parameters": {"a": 1}, "acceptable": {"a": [1, 2]}},
            {"name": "f", "parameters": {"a": 2}, "acceptable": {"a": [2, 3]}}]
    assert calls_match([{"name": "f", "parameters": {"a": 2}},
                        {"name": "f", "parameters": {"a": 1}}], gold)
    assert not calls_match([{"name": "f", "parameters": {"a": 1}},
                            {"name": "f", "parameters": {"a": 1}}], gold)
