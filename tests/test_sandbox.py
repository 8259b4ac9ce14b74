"""The sandbox: limits, seccomp, the worker's lifecycle (handlers: tests/sandbox_handlers.py)."""

from __future__ import annotations

import os
import shutil
import signal
import time
from pathlib import Path

import pytest

from gymrl import sandbox as sandbox_module
from gymrl.sandbox import ISOLATION_BWRAP, ISOLATION_PLAIN, Sandbox, SandboxError

TIME_LIMIT_S = 1.0
HANDLERS = "sandbox_handlers"  # tests/sandbox_handlers.py; tests/ is on sys.path under pytest


@pytest.fixture(scope="module", params=[False, None], ids=["plain", "auto"])
def sandbox(request):
    """One warm sandbox per isolation mode (``auto`` is bwrap where it is installed)."""
    box = Sandbox(HANDLERS, time_limit_s=TIME_LIMIT_S, memory_mb=256, use_bwrap=request.param)
    yield box
    box.close()


def timed(box: Sandbox, name: str, payload: dict | None = None) -> tuple[dict, float]:
    start = time.monotonic()
    result = box.run(name, {} if payload is None else payload)
    return result, time.monotonic() - start


def test_runs_a_handler(sandbox):
    assert sandbox.run("echo", {"a": [1, "two"]}) == {"echo": {"a": [1, "two"]}}
    assert sandbox.isolation in (ISOLATION_BWRAP, ISOLATION_PLAIN)


@pytest.mark.parametrize("handler", ["loop_forever", "sleep_forever"])
def test_runaway_call_is_stopped_at_the_time_limit(sandbox, handler):
    result, elapsed = timed(sandbox, handler)
    assert result["error"].startswith(f"timed out after {TIME_LIMIT_S:g}s")
    assert TIME_LIMIT_S * 0.9 < elapsed < TIME_LIMIT_S + 1.5
    assert sandbox.run("echo", {"after": True}) == {"echo": {"after": True}}


def test_memory_limit(sandbox):
    result = sandbox.run("allocate", {"bytes": 2 * 1024**3})
    assert result["error"].startswith("memory limit of 256 MB exceeded")
    assert sandbox.run("allocate", {"bytes": 10 * 1024**2}) == {"allocated": 10 * 1024**2}


@pytest.mark.parametrize("handler", ["open_socket", "fork", "run_process", "exec_program",
                                     "kill_worker", "raise_limit"])
def test_forbidden_calls_fail(sandbox, handler):
    sandbox.run("echo", {})
    pid = sandbox.pid
    result, elapsed = timed(sandbox, handler)
    assert result["error"].startswith(("PermissionError", "ValueError: not allowed")), result
    assert elapsed < TIME_LIMIT_S
    assert sandbox.pid == pid  # the worker survived (kill_worker could not reach it)


def test_no_file_writes(sandbox, tmp_path):
    target = tmp_path / "written.txt"
    result = sandbox.run("write_file", {"path": str(target)})
    assert result["error"].startswith(("PermissionError", "FileNotFoundError")), result
    assert not target.exists()


def test_threads_are_allowed(sandbox):
    assert sandbox.run("use_thread", {}) == {"out": [42]}


def test_handler_exception_names_its_type(sandbox):
    assert sandbox.run("fail", {}) == {"error": "ValueError: bad input"}


def test_bad_results(sandbox):
    assert sandbox.run("huge_output", {})["error"].startswith("output too large")
    assert "not a dict" in sandbox.run("not_a_dict", {})["error"]
    assert sandbox.run("exit_early", {}) == {
        "error": "handler exited without a result (exit status 3)"}


def test_every_call_gets_a_fresh_child(sandbox):
    assert [sandbox.run("count_calls", {})["calls"] for _ in range(3)] == [1, 1, 1]


def test_child_limits(sandbox):
    limits = sandbox.run("limits", {})
    assert limits["RLIMIT_CPU"] == [1, 2]
    assert limits["RLIMIT_AS"] == [256 * 1024**2] * 2
    assert limits["RLIMIT_CORE"] == [0, 0]
    assert limits["RLIMIT_NOFILE"][1] <= 64
    assert limits["RLIMIT_FSIZE"][1] <= 1 << 20


def test_worker_environment_is_empty(monkeypatch):
    monkeypatch.setenv("GYMRL_TEST_SECRET", "hunter2")
    with Sandbox(HANDLERS, use_bwrap=False) as box:
        env = box.run("environment", {})["env"]
    assert "GYMRL_TEST_SECRET" not in env
    assert set(env) <= {"PATH", "LANG", "HOME", "PWD"}


def test_bad_input_never_raises(sandbox):
    assert "unknown handler" in sandbox.run("no_such_handler", {})["error"]
    assert "error" in sandbox.run(42, {})  # type: ignore[arg-type]
    assert "error" in sandbox.run("echo", "not a dict")  # type: ignore[arg-type]
    assert "not JSON" in sandbox.run("echo", {"x": object()})["error"]
    assert "too large" in sandbox.run("echo", {"x": "y" * 2_000_000})["error"]


def test_worker_is_restarted_after_being_killed(sandbox):
    assert sandbox.run("echo", {}) == {"echo": {}}
    old = sandbox.pid
    os.kill(old, signal.SIGKILL)
    assert sandbox.run("echo", {"again": 1}) == {"echo": {"again": 1}}
    assert sandbox.pid not in (None, old)


def test_hung_worker_is_replaced(monkeypatch):
    monkeypatch.setattr(sandbox_module, "REPLY_GRACE_S", 0.5)
    with Sandbox(HANDLERS, time_limit_s=0.5, use_bwrap=False) as box:
        assert box.run("echo", {}) == {"echo": {}}
        os.kill(box.pid, signal.SIGSTOP)  # a worker that never answers
        result, elapsed = timed(box, "echo")
        assert "did not answer in time" in result["error"]
        assert elapsed < 3
        assert box.run("echo", {}) == {"echo": {}}


def test_close_then_run_starts_a_new_worker():
    box = Sandbox(HANDLERS, use_bwrap=False)
    assert box.pid is None  # started lazily
    assert box.run("echo", {}) == {"echo": {}}
    old = box.pid
    box.close()
    assert box.pid is None
    assert box.run("echo", {}) == {"echo": {}}
    assert box.pid != old
    box.close()


def test_start_failures_are_errors():
    assert "cannot find module" in Sandbox("no_such_module_xyz").run("f", {})["error"]
    with Sandbox("json", use_bwrap=False) as box:  # importable, but no HANDLERS
        assert "defines no HANDLERS" in box.run("f", {})["error"]


def test_use_bwrap_without_bwrap_says_how_to_install(monkeypatch):
    monkeypatch.setattr(sandbox_module.shutil, "which", lambda name: None)
    with pytest.raises(SandboxError, match="apt-get install bubblewrap"):
        Sandbox(HANDLERS, use_bwrap=True)
    assert Sandbox(HANDLERS).isolation == ISOLATION_PLAIN


@pytest.mark.skipif(shutil.which("bwrap") is None, reason="bubblewrap is not installed")
def test_bwrap_shows_only_what_the_worker_needs():
    with Sandbox(HANDLERS, use_bwrap=True) as box:
        assert box.isolation == ISOLATION_BWRAP
        here = Path(__file__).resolve()
        seen = box.run("exists", {"paths": ["/etc/shadow", "/etc/passwd", "/home", str(here),
                                            str(here.with_name("sandbox_handlers.py"))]})
    assert seen == {"/etc/shadow": False, "/etc/passwd": False, "/home": False,
                    str(here): False, str(here.with_name("sandbox_handlers.py")): True}
