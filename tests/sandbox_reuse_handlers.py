"""tests/sandbox_handlers.py's handlers, served by children that take up to ``REUSE`` calls each
(tests/test_sandbox.py, the reuse tests)."""

from sandbox_handlers import HANDLERS, PREFAULT  # noqa: F401  (the worker reads them here)

REUSE = 4
