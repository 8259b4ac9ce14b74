"""Registers the first-party tools through the ``gymrl`` entry-point group."""

from __future__ import annotations

from gymrl import hookimpl


@hookimpl
def register_tools(register):
    # Imported here, not at the top, so that `gymrl list` does not pay for loading the tools.
    from gymrl_tools.calculator import CalculatorTool
    from gymrl_tools.kv_store import KVStoreTool
    from gymrl_tools.search import SearchTool

    register("calculator", CalculatorTool,
             description="Exact arithmetic and algebra (sympy) in a sandbox: evaluate, or solve "
                         "for a variable")
    register("search", SearchTool,
             description="Search a local encyclopedia (bm25, offline) or the web (ddgs)")
    register("kv_store", KVStoreTool,
             description="Per-episode key-value store: get, set, delete, list")
