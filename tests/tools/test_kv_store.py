"""The kv_store tool: operations, per-episode isolation, limits and errors."""

from __future__ import annotations

import json

import pytest

from gymrl_tools.kv_store import MAX_KEYS, KVStoreTool


@pytest.fixture
def store() -> KVStoreTool:
    tool = KVStoreTool()
    tool.reset(seed=0)
    return tool


def test_set_get_delete_list(store):
    assert store({"op": "set", "key": "city", "value": "Goburg"}).content == "ok"
    assert store({"op": "set", "key": "year", "value": "1598"}).content == "ok"
    assert store({"op": "get", "key": "city"}).content == "Goburg"
    assert store({"op": "set", "key": "city", "value": "Piton"}).content == "ok"  # overwrite
    assert store({"op": "get", "key": "city"}).content == "Piton"
    assert json.loads(store({"op": "list"}).content) == ["city", "year"]
    assert store({"op": "delete", "key": "city"}).content == "ok"
    assert store({"op": "list"}).content == '["year"]'
    assert store({"op": "set", "key": "empty", "value": ""}).ok  # an empty note is a note
    assert store({"op": "get", "key": "empty"}).content == ""


def test_reset_starts_each_episode_empty(store):
    store({"op": "set", "key": "k", "value": "v"})
    store.reset(seed=1)
    assert store({"op": "list"}).content == "[]"
    assert store({"op": "get", "key": "k"}).error == "no such key 'k'"


def test_stores_are_independent():
    a, b = KVStoreTool(), KVStoreTool()
    a({"op": "set", "key": "k", "value": "v"})
    assert b({"op": "list"}).content == "[]"
    assert KVStoreTool.stateful and a.spec()["name"] == "kv_store"


def test_key_limit(store):
    for i in range(MAX_KEYS):
        assert store({"op": "set", "key": f"k{i:03d}", "value": "v"}).ok
    full = store({"op": "set", "key": "one_more", "value": "v"})
    assert full.error == f"store is full ({MAX_KEYS} keys); delete a key first"
    assert store({"op": "set", "key": "k000", "value": "new"}).ok  # overwriting needs no room
    store({"op": "delete", "key": "k001"})
    assert store({"op": "set", "key": "one_more", "value": "v"}).ok


@pytest.mark.parametrize(("arguments", "error"), [
    ({"op": "get", "key": "x"}, "no such key 'x'"),
    ({"op": "delete", "key": "x"}, "no such key 'x'"),
    ({"op": "set", "key": "x"}, "set needs a value"),
    ({"op": "get"}, "get needs a key"),
    ({"op": "list", "key": "x"}, "list takes no key"),
    ({"op": "get", "key": "x", "value": "v"}, "get takes no value"),
])
def test_operation_errors(store, arguments, error):
    result = store(arguments)
    assert result.error == error and result.facts["op"] == arguments["op"]


@pytest.mark.parametrize("arguments", [
    {}, {"op": "pop"}, {"op": "set", "key": "k" * 101, "value": "v"},
    {"op": "set", "key": "k", "value": "v" * 1001}, {"op": "set", "key": "", "value": "v"},
    {"op": "get", "key": 3}, {"op": "list", "extra": True}, [],
])
def test_schema_violations_are_error_results(store, arguments):
    result = store(arguments)
    assert not result.ok and result.error.startswith("invalid parameters for kv_store")
