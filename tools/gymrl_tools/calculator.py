"""The ``calculator`` tool: exact arithmetic and algebra with sympy, in a sandbox.

The model's expression goes to :mod:`gymrl_tools.calculator_worker` in a
:class:`gymrl.sandbox.Sandbox` worker: a restricted grammar, never ``eval``, with the sandbox's
time and memory limits as the backstop. The result string's format is
documented there (exact value first, e.g. ``3/4 = 0.75``); rewards may compare answers with it.
"""

from __future__ import annotations

import threading
from typing import Any

from gymrl import Tool, ToolResult

#: The handler module the sandbox imports (sympy is imported there, never in this process).
WORKER_MODULE = "gymrl_tools.calculator_worker"


class CalculatorTool(Tool):
    """Evaluates an expression exactly, or solves an equation for a variable.

    Args:
        time_limit_s: wall-clock limit of one call in the sandbox.
        memory_mb: address-space limit of one call (the sympy worker itself takes ~60 MB).
        use_bwrap: run the sandbox under bubblewrap: ``None`` when installed and working,
            ``True`` required, ``False`` never (see :class:`gymrl.sandbox.Sandbox`).
    """

    name = "calculator"
    description = ("Exact arithmetic and algebra (sympy): evaluate an expression, or solve an "
                   "equation for a variable")
    parameters: dict[str, Any] = {
        "type": "object",
        "properties": {
            "expression": {
                "type": "string", "maxLength": 2000,
                "description": "e.g. 1/3 + 1/6, 2^100, sqrt(8), 2*x + 3 = 11",
            },
            "solve_for": {
                "type": "string", "pattern": "^[A-Za-z][A-Za-z0-9_]{0,31}$",
                "description": "the variable to solve an equation for (optional)",
            },
        },
        "required": ["expression"],
        "additionalProperties": False,
    }

    def __init__(self, time_limit_s: float = 2.0, memory_mb: int = 512,
                 use_bwrap: bool | None = None) -> None:
        self.time_limit_s = time_limit_s
        self.memory_mb = memory_mb
        self.use_bwrap = use_bwrap
        self._sandbox: Any = None
        self._sandbox_lock = threading.Lock()

    @property
    def sandbox(self) -> Any:
        """This tool's sandbox, created on first use (its worker starts on the first call)."""
        with self._sandbox_lock:
            if self._sandbox is None:
                from gymrl.sandbox import Sandbox

                self._sandbox = Sandbox(WORKER_MODULE, time_limit_s=self.time_limit_s,
                                        memory_mb=self.memory_mb, use_bwrap=self.use_bwrap)
            return self._sandbox

    def call(self, arguments: dict[str, Any]) -> ToolResult:
        payload = {"expression": arguments["expression"],
                   "solve_for": arguments.get("solve_for")}
        reply = self.sandbox.run("calculate", payload)
        if "error" in reply:
            return ToolResult(error=str(reply["error"]))
        facts = {key: value for key, value in reply.items() if key != "result"}
        return ToolResult(content=str(reply.get("result", "")), facts=facts)

    def close(self) -> None:
        """Stop the sandbox worker (a later call starts a new one)."""
        with self._sandbox_lock:
            if self._sandbox is not None:
                self._sandbox.close()
