"""Handlers for tests/test_sandbox.py, imported by the sandbox worker (not by the tests).

Each one tries something a sandboxed call must not be able to do, or checks a limit.
"""

from __future__ import annotations

import gc
import os
import resource
import signal
import socket
import subprocess
import sys
import threading
import time
from typing import Any

STATE = {"calls": 0}


def echo(payload: dict) -> dict:
    return {"echo": payload}


def loop_forever(payload: dict) -> dict:
    while True:
        pass


def sleep_forever(payload: dict) -> dict:
    time.sleep(3600)
    return {}


def allocate(payload: dict) -> dict:
    block = bytearray(payload.get("bytes", 2 * 1024**3))
    return {"allocated": len(block)}


def open_socket(payload: dict) -> dict:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(1)
        s.connect(("1.1.1.1", 80))
    return {"connected": True}


def fork(payload: dict) -> dict:
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    return {"forked": pid}


def run_process(payload: dict) -> dict:
    return {"output": subprocess.run(["id"], capture_output=True, text=True).stdout}


def exec_program(payload: dict) -> dict:
    os.execv("/bin/true", ["true"])
    return {}


def write_file(payload: dict) -> dict:
    with open(payload["path"], "w") as f:
        f.write("written from the sandbox")
    return {"written": True}


def kill_worker(payload: dict) -> dict:
    os.kill(os.getppid(), signal.SIGKILL)
    return {"killed": True}


def raise_limit(payload: dict) -> dict:
    resource.setrlimit(resource.RLIMIT_AS, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
    return {"raised": True}


def use_thread(payload: dict) -> dict:
    out: list[int] = []
    thread = threading.Thread(target=lambda: out.append(42))
    thread.start()
    thread.join()
    return {"out": out}


def fail(payload: dict) -> dict:
    raise ValueError("bad input")


def huge_output(payload: dict) -> dict:
    return {"text": "x" * 5_000_000}


def not_a_dict(payload: dict) -> Any:
    return [1, 2, 3]


def exit_early(payload: dict) -> dict:
    os._exit(3)


def count_calls(payload: dict) -> dict:
    STATE["calls"] += 1  # a fresh child per call: always 1
    return {"calls": STATE["calls"], "pid": os.getpid()}


def spin(payload: dict) -> dict:
    """Burn ``seconds`` of CPU time, then say how much this process has used in all."""
    stop = time.process_time() + payload["seconds"]
    while time.process_time() < stop:
        pass
    return {"pid": os.getpid(), "cpu_s": time.process_time()}


def hoard(payload: dict) -> dict:
    """Keep ``mb`` MB alive after the call (a handler that leaks)."""
    STATE.setdefault("hoard", []).append(bytearray(payload["mb"] << 20))
    return {"pid": os.getpid()}


def limits(payload: dict) -> dict:
    names = ("RLIMIT_CPU", "RLIMIT_AS", "RLIMIT_FSIZE", "RLIMIT_NOFILE", "RLIMIT_CORE")
    return {name: list(resource.getrlimit(getattr(resource, name))) for name in names}


def environment(payload: dict) -> dict:
    return {"env": dict(os.environ)}


def exists(payload: dict) -> dict:
    return {path: os.path.exists(path) for path in payload["paths"]}


def pid(payload: dict) -> dict:
    return {"pid": os.getpid()}


def cpu_used(payload: dict) -> dict:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return {"cpu_s": usage.ru_utime + usage.ru_stime,
            "RLIMIT_CPU": list(resource.getrlimit(resource.RLIMIT_CPU))}


def prefault(payload: dict) -> dict:
    STATE["prefaulted"] = True  # in each child, before its request (PREFAULT below)
    return {}


def prefaulted(payload: dict) -> dict:
    return {"prefaulted": STATE.get("prefaulted", False), "pid": os.getpid()}


def find_text(payload: dict) -> dict:
    """Where this child can reach the text joined from ``parts`` (so its request does not hold
    it): among the objects the collector tracks (those not frozen by the worker) and the
    locals of the worker's frames above this call, copied when the child was forked."""
    needle = "".join(payload["parts"])

    def holds(value: Any) -> bool:
        if isinstance(value, (bytes, bytearray, memoryview)):
            return needle in bytes(value).decode("latin-1")
        try:
            return needle in (value if isinstance(value, str) else repr(value))
        except Exception:
            return False

    found = [type(obj).__name__ for obj in gc.get_objects()
             if isinstance(obj, (dict, list, tuple, bytearray)) and obj is not payload
             and holds(obj)]
    frame = sys._getframe(1)
    while frame is not None:
        for name, value in frame.f_locals.items():
            attributes = list(vars(value).values()) if hasattr(value, "__dict__") else []
            if any(holds(item) for item in [value, *attributes]):
                found.append(f"{frame.f_code.co_name}: {name}")
        frame = frame.f_back
    return {"found": found}


HANDLERS = {name: fn for name, fn in list(globals().items())
            if callable(fn) and getattr(fn, "__module__", None) == __name__}
PREFAULT = [("prefault", {})]
