"""The tool contract: a name, a JSON-schema signature shown to the model, and a call.

Tools are plugins (``register_tools``). An env that exposes tools builds them by name
(``gymrl.make.make_tool``), shows ``tool.spec()`` to the model, and calls ``tool(arguments)``
for each call the model writes. Every call is validated against the tool's JSON schema first
(``jsonschema``); a bad call, or a tool that fails, gives a :class:`ToolResult` with ``error``
set, never an exception into the env: a tool error is something the model must read and fix.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

#: Longest text a tool result may show the model; longer output is cut (and says so).
MAX_RESULT_CHARS = 2000


@dataclass
class ToolResult:
    """What one call returned.

    Attributes:
        content: the text shown to the model (cut to ``MAX_RESULT_CHARS``).
        error: a short message when the call failed (bad arguments, timeout, no result); the
            model sees ``error: <message>``.
        cost_usd: money the call cost (0 for local tools).
        facts: structured detail for rewards and metrics (never shown to the model).
    """

    content: str = ""
    error: str | None = None
    cost_usd: float = 0.0
    facts: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.error is None

    def text(self) -> str:
        """The observation text for the model."""
        body = f"error: {self.error}" if self.error is not None else self.content
        if len(body) > MAX_RESULT_CHARS:
            body = body[:MAX_RESULT_CHARS] + f" ... [cut at {MAX_RESULT_CHARS} characters]"
        return body


class Tool:
    """Base class of tools. Subclasses set ``name``, ``description``, ``parameters`` (a JSON
    schema of type ``object``) and implement :meth:`call`.

    A stateful tool (a key-value store) keeps its state per episode: the env calls
    :meth:`reset` at every episode start, so nothing leaks between episodes.
    """

    name: str = ""
    description: str = ""
    parameters: dict[str, Any] = {"type": "object", "properties": {}}
    stateful: bool = False

    def spec(self) -> dict[str, Any]:
        """The signature shown to the model (the usual function-calling shape)."""
        return {"name": self.name, "description": self.description,
                "parameters": self.parameters}

    def reset(self, seed: int | None = None) -> None:
        """Start a new episode (stateful tools clear their state)."""

    def call(self, arguments: dict[str, Any]) -> ToolResult:
        raise NotImplementedError

    def validate(self, arguments: Any) -> str | None:
        """``None`` when ``arguments`` fit the schema, else a message naming the problem."""
        import jsonschema

        if not isinstance(arguments, dict):
            return f"parameters must be a JSON object, got {type(arguments).__name__}"
        try:
            validator = _validator(json.dumps(self.parameters, sort_keys=True))
        except jsonschema.SchemaError as e:  # the tool's own bug: say so, never crash
            return f"tool {self.name!r} has an invalid schema: {e.message}"
        error = jsonschema.exceptions.best_match(validator.iter_errors(arguments))
        if error is None:
            return None
        where = "/".join(str(p) for p in error.absolute_path)
        return f"{where + ': ' if where else ''}{error.message}"[:300]

    def __call__(self, arguments: Any) -> ToolResult:
        problem = self.validate(arguments)
        if problem is not None:
            return ToolResult(error=f"invalid parameters for {self.name}: {problem}",
                              facts={"invalid": True})
        try:
            return self.call(arguments)
        except Exception as e:  # a tool bug is a tool error for the model, and is recorded
            return ToolResult(error=f"{self.name} failed: {type(e).__name__}: {e}"[:300],
                              facts={"exception": type(e).__name__})

    def close(self) -> None:
        """Release resources (worker processes, clients)."""


_VALIDATORS: dict[str, Any] = {}


def _validator(schema_json: str) -> Any:
    """A compiled validator per schema (checking the schema once)."""
    import jsonschema

    if schema_json not in _VALIDATORS:
        schema = json.loads(schema_json)
        cls = jsonschema.validators.validator_for(schema, default=jsonschema.Draft202012Validator)
        cls.check_schema(schema)
        _VALIDATORS[schema_json] = cls(schema)
    return _VALIDATORS[schema_json]
