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
from gymrl.sandbox_worker import BURST_GAP_S, SPARES, _refill, _Requests

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
    # More than a pipe holds: the rest is written while the worker waits for the result.
    assert sandbox.run("echo", {"x": "y" * 300_000}) == {"echo": {"x": "y" * 300_000}}


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
    # Under bwrap the worker dies after bwrap, by --die-with-parent: a call sent before then
    # may still be answered (at once, by the spare child).
    _eventually(lambda: sandbox.pid is None)
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


# -- the spares: children forked and confined ahead of the calls ----------------------------


def _stat(pid: int) -> tuple[str, int] | None:
    """A process's state (``Z`` for a zombie) and parent, ``None`` once it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    state, ppid = stat[stat.rindex(")") + 2:].split()[:2]
    return state, int(ppid)


def _state(pid: int) -> str | None:
    stat = _stat(pid)
    return stat[0] if stat else None


def _children(pid: int) -> dict[int, str]:
    """The children of process ``pid``, with their states."""
    stats = {int(entry): _stat(int(entry)) for entry in os.listdir("/proc") if entry.isdigit()}
    return {child: stat[0] for child, stat in stats.items() if stat and stat[1] == pid}


def _descendants(pid: int) -> set[int]:
    found, todo = set(), [pid]
    while todo:
        children = set(_children(todo.pop())) - found
        found |= children
        todo += children
    return found


def _eventually(condition, timeout_s: float = 5.0):
    """``condition()``'s first true value, polled until ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while not (value := condition()) and time.monotonic() < deadline:
        time.sleep(0.01)
    return value


def _spares(box: Sandbox, *used: int) -> set[int]:
    """The worker's live children other than ``used``, once there are :data:`SPARES` of them
    (use_bwrap=False: the worker is ``box.pid``)."""
    def live() -> set[int]:
        return {pid for pid, state in _children(box.pid).items()
                if pid not in used and state != "Z"}

    spares = _eventually(lambda: len(live()) == SPARES and live())
    assert spares, live()
    return spares


def test_the_call_runs_in_a_spare_forked_before_it():
    with Sandbox(HANDLERS, time_limit_s=TIME_LIMIT_S, use_bwrap=False) as box:
        first = box.run("pid", {})["pid"]  # in a child forked when the worker started
        spares = _spares(box, first)  # the pool, refilled after the reply
        time.sleep(0.1)
        assert {_children(box.pid).get(pid) for pid in spares} == {"S"}  # reading requests
        # It ran the handler module's PREFAULT calls while it waited.
        result = box.run("prefaulted", {})
        assert result["prefaulted"] is True and result["pid"] in spares


def test_calls_back_to_back_run_in_spares_that_waited_for_them():
    with Sandbox(HANDLERS, time_limit_s=TIME_LIMIT_S, use_bwrap=False) as box:
        first = box.run("pid", {})["pid"]
        ready = _spares(box, first)
        time.sleep(0.1)  # as while a model writes its turn: the spares prefault
        burst = [box.run("prefaulted", {}) for _ in range(SPARES)]  # the turn's calls
        assert {call["pid"] for call in burst} == ready
        assert all(call["prefaulted"] for call in burst)
        # More calls in a row than spares still get a new process each.
        more = [box.run("pid", {})["pid"] for _ in range(SPARES + 1)]
        assert len(set(more)) == SPARES + 1 and not set(more) & ready
        # Idle again, the pool is refilled with new children.
        refilled = _spares(box, first, *ready, *more)
        assert not refilled & ready


def test_killed_spares_are_replaced():
    with Sandbox(HANDLERS, time_limit_s=TIME_LIMIT_S, use_bwrap=False) as box:
        first = box.run("pid", {})["pid"]
        spares = _spares(box, first)
        for pid in spares:
            os.kill(pid, signal.SIGKILL)
        assert _eventually(lambda: {_children(box.pid).get(pid) for pid in spares} == {"Z"})
        pid = box.run("pid", {})["pid"]  # in a child forked for this call
        assert pid not in spares | {first}
        replacements = _spares(box, first, pid, *spares)  # forked after that reply
        assert box.run("pid", {})["pid"] in replacements


def test_spares_hold_no_earlier_call_data():
    with Sandbox(HANDLERS, time_limit_s=TIME_LIMIT_S, use_bwrap=False) as box:
        secret = {"parts": ["hunter", "2-"]}  # the handler looks for "hunter2-"
        for i in range(SPARES + 2):  # back to back: children forked between these calls
            assert box.run("echo", {"secret": f"hunter2-{i}"})["echo"]
        back_to_back = box.run("find_text", secret)
        assert box.run("echo", {"secret": "hunter2-late"})["echo"]
        time.sleep(0.2)  # the pool refills after it
        for _ in range(SPARES):
            assert box.run("find_text", secret) == back_to_back == {"found": []}


def test_refill_never_forks_in_front_of_a_waiting_request():
    class Pool:  # a double of the worker's _Children
        def __init__(self, spares: int) -> None:
            self.spares = [object()] * spares
            self.forks = 0

        def ready(self) -> int:
            return len(self.spares)

        def fork_spare(self) -> bool:
            self.forks += 1
            self.spares.append(object())
            return True

    read, write = os.pipe()
    try:
        requests = _Requests(read)
        empty = Pool(0)
        _refill(requests, empty)  # nothing waits and no spare is left: fork at once
        assert empty.forks == SPARES
        one_left = Pool(SPARES - 1)
        start = time.monotonic()
        _refill(requests, one_left)  # a turn's next call may come: wait for it first
        assert one_left.forks == 1 and time.monotonic() - start >= BURST_GAP_S
        os.write(write, b'{"name": "echo", "payload": {}}\n')
        for spares in range(SPARES):
            pool = Pool(spares)
            _refill(requests, pool)
            assert pool.forks == 0  # the request goes first
    finally:
        os.close(read)
        os.close(write)


def test_requests_are_read_line_by_line():
    read, write = os.pipe()
    os.write(write, b"one\ntwo\n" + b"x" * 10 + b"\nlast")
    os.close(write)
    requests = _Requests(read)
    try:
        assert requests.readline(100) == b"one\n"
        assert requests.waiting()  # "two" was read with "one": waiting in the buffer
        assert requests.readline(100) == b"two\n"
        assert requests.readline(5) == b"xxxxx"  # a line longer than asked: its start
        assert requests.readline(100) == b"xxxxx\n"
        assert requests.readline(100) == b"last"
        assert requests.readline(100) == b""
        assert requests.waiting()  # the end of input is news too
    finally:
        os.close(read)


def test_each_call_runs_in_a_new_process(sandbox):
    pids = [sandbox.run("pid", {})["pid"] for _ in range(4)]
    assert len(set(pids)) == 4


def test_a_spare_has_its_whole_time_limit_after_waiting(sandbox):
    sandbox.run("echo", {})
    time.sleep(TIME_LIMIT_S * 1.2)  # the spare waits longer than a call may run
    used = sandbox.run("cpu_used", {})
    assert used["RLIMIT_CPU"] == [1, 2]
    assert used["cpu_s"] < 0.2 * TIME_LIMIT_S  # its setup and prefault only: waiting is free


@pytest.mark.parametrize("use_bwrap", [False, None], ids=["plain", "auto"])
def test_close_leaves_no_processes(use_bwrap):
    box = Sandbox(HANDLERS, time_limit_s=TIME_LIMIT_S, use_bwrap=use_bwrap)
    for _ in range(SPARES + 1):  # more than the spares: one child forked while a call waited
        assert box.run("echo", {}) == {"echo": {}}
    worker = box.pid
    # The spares among them; under bwrap, below bwrap's pid-1 process and the worker.
    least = SPARES + (0 if box.isolation == ISOLATION_PLAIN else 2)

    def tree() -> set[int]:
        found = _descendants(worker)
        return found if len(found) >= least else set()

    processes = {worker} | _eventually(tree)
    assert len(processes) > least
    box.close()
    states = {pid: _state(pid) for pid in processes}
    if box.isolation == ISOLATION_PLAIN:  # the worker reaped its children, we reaped it
        assert set(states.values()) == {None}, states
    else:  # bwrap's pid-1 process exits after the worker, and is left for init to reap
        assert _eventually(lambda: {_state(pid) for pid in processes} <= {None, "Z"}), states


# -- REUSE: one confined child answers several calls in a row (data-only handlers) -----------

REUSE_HANDLERS = "sandbox_reuse_handlers"  # tests/sandbox_reuse_handlers.py: REUSE = 4


@pytest.fixture(params=[False, None], ids=["plain", "auto"])
def reusing(request):
    box = Sandbox(REUSE_HANDLERS, time_limit_s=TIME_LIMIT_S, memory_mb=256,
                  use_bwrap=request.param, python_path=[Path(__file__).parent])  # its import
    yield box
    box.close()


def test_reuse_serves_up_to_reuse_calls_per_child(reusing):
    calls = [reusing.run("count_calls", {}) for _ in range(9)]
    assert [c["calls"] for c in calls] == [1, 2, 3, 4, 1, 2, 3, 4, 1]
    pids = [c["pid"] for c in calls]
    assert len({*pids[:4]}) == len({*pids[4:8]}) == 1 and len(set(pids)) == 3


def test_reuse_retires_a_child_after_any_error(reusing):
    first = reusing.run("pid", {})["pid"]
    assert reusing.run("pid", {})["pid"] == first
    assert "ValueError" in reusing.run("fail", {})["error"]  # in that child, which then goes
    after = reusing.run("pid", {})["pid"]
    assert after != first
    assert "error" in reusing.run("not_a_dict", {})
    assert reusing.run("pid", {})["pid"] != after


@pytest.mark.parametrize("handler", ["open_socket", "fork", "write_file", "raise_limit",
                                     "kill_worker"])
def test_reuse_a_kept_child_is_still_confined(reusing, handler, tmp_path):
    kept = reusing.run("pid", {})["pid"]
    result = reusing.run(handler, {"path": str(tmp_path / "x")})
    assert "error" in result, result
    assert not (tmp_path / "x").exists()
    assert reusing.run("pid", {})["pid"] not in (kept, None)  # retired after the error
    limits = reusing.run("limits", {})
    assert limits["RLIMIT_CPU"] == [2, 3]  # ceil(limit + REUSE_CPU_S), then SIGKILL a second on
    assert limits["RLIMIT_AS"] == [256 << 20] * 2


def test_reuse_each_call_keeps_its_whole_time_limit(reusing):
    first = reusing.run("spin", {"seconds": 0.4})
    # 0.4 s used before it, 0.65 s of its own: past the time limit in all, within it per call
    # (with room for the wall clock: the deadline is wall-clock time).
    second = reusing.run("spin", {"seconds": 0.65 * TIME_LIMIT_S})
    assert "error" not in second and second["pid"] == first["pid"]
    assert second["cpu_s"] > TIME_LIMIT_S
    # That child has used more than REUSE_CPU_S: the next call gets another.
    assert reusing.run("pid", {})["pid"] != first["pid"]
    # A runaway call in a kept child is still stopped at the limit, and the next call works.
    reusing.run("pid", {})
    result, elapsed = timed(reusing, "loop_forever")
    assert "timed out" in result["error"] and elapsed < TIME_LIMIT_S + 1.0
    assert reusing.run("echo", {"a": 1}) == {"echo": {"a": 1}}


def test_reuse_a_kept_child_killed_while_it_waits_is_replaced():
    with Sandbox(REUSE_HANDLERS, time_limit_s=TIME_LIMIT_S, use_bwrap=False) as box:
        kept = box.run("pid", {})["pid"]
        os.kill(kept, signal.SIGKILL)  # plain mode: its pid is ours to see
        assert _eventually(lambda: _children(box.pid).get(kept) in ("Z", None))
        assert box.run("echo", {"a": 1}) == {"echo": {"a": 1}}
        assert box.run("pid", {})["pid"] != kept


def test_reuse_retires_a_child_whose_memory_grew(reusing):
    first = reusing.run("hoard", {"mb": 8})["pid"]
    assert reusing.run("pid", {})["pid"] == first  # 8 MB more: under REUSE_GROWTH_MB
    assert reusing.run("hoard", {"mb": 40})["pid"] == first
    assert reusing.run("pid", {})["pid"] != first  # 48 MB more: retired


@pytest.mark.parametrize("value", ["0", "1.5", "True", "'4'"])
def test_reuse_must_be_a_positive_int(tmp_path, monkeypatch, value):
    monkeypatch.syspath_prepend(str(tmp_path))
    (tmp_path / "bad_reuse.py").write_text(
        f"HANDLERS = {{'f': lambda payload: {{}}}}\nREUSE = {value}\n")
    with Sandbox("bad_reuse", python_path=[tmp_path], use_bwrap=False) as box:
        error = box.run("f", {})["error"]
    assert "REUSE must be an int >= 1" in error and value in error
