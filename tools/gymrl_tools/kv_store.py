"""The ``kv_store`` tool: a small key-value memory that lasts one episode."""

from __future__ import annotations

import json
from typing import Any

from gymrl import Tool, ToolResult

#: Most keys a store holds; a model that keeps writing new keys gets an error, not more memory.
MAX_KEYS = 100


class KVStoreTool(Tool):
    """A key-value store the model can write notes to and read back, cleared every episode.

    Operations: ``set`` (key, value), ``get`` (key), ``delete`` (key), ``list`` (no arguments;
    the sorted keys as a JSON list). Replies are deterministic: ``ok`` for writes, the value for
    ``get``.
    """

    name = "kv_store"
    description = ("A key-value store for notes during this episode: op=set (key, value), "
                   "get (key), delete (key) or list (all keys)")
    parameters: dict[str, Any] = {
        "type": "object",
        "properties": {
            "op": {"enum": ["get", "set", "delete", "list"]},
            "key": {"type": "string", "minLength": 1, "maxLength": 100},
            "value": {"type": "string", "maxLength": 1000},
        },
        "required": ["op"],
        "additionalProperties": False,
    }
    stateful = True

    def __init__(self) -> None:
        self._store: dict[str, str] = {}

    def reset(self, seed: int | None = None) -> None:
        """Forget everything: what one episode wrote never reaches the next."""
        self._store.clear()

    def call(self, arguments: dict[str, Any]) -> ToolResult:
        op: str = arguments["op"]
        key: str | None = arguments.get("key")
        value: str | None = arguments.get("value")
        # A stray argument is an error rather than ignored, so the model learns the signature.
        if op != "set" and value is not None:
            return self._error(op, f"{op} takes no value")
        if op == "list":
            if key is not None:
                return self._error(op, "list takes no key")
            return self._ok(op, json.dumps(sorted(self._store)))
        if key is None:
            return self._error(op, f"{op} needs a key")
        if op == "set":
            if value is None:
                return self._error(op, "set needs a value")
            if key not in self._store and len(self._store) >= MAX_KEYS:
                return self._error(op, f"store is full ({MAX_KEYS} keys); delete a key first")
            self._store[key] = value
            return self._ok(op, "ok")
        if key not in self._store:
            return self._error(op, f"no such key {key!r}")
        if op == "delete":
            del self._store[key]
            return self._ok(op, "ok")
        return self._ok(op, self._store[key])

    def _ok(self, op: str, content: str) -> ToolResult:
        return ToolResult(content=content, facts={"op": op, "keys": len(self._store)})

    def _error(self, op: str, message: str) -> ToolResult:
        return ToolResult(error=message, facts={"op": op, "keys": len(self._store)})
