"""Run untrusted input (or code) through trusted handlers, in disposable confined processes.

``Sandbox("pkg.module")`` starts, on its first call, a warm worker process
(:mod:`gymrl.sandbox_worker`) that imports ``pkg.module`` once (so sympy, say, loads once) and
reads its ``HANDLERS = {name: fn(payload: dict) -> dict}``. Each :meth:`Sandbox.run` runs in a
fresh child of that worker, so no call can poison the next one; the worker keeps a few children
forked and confined ahead of the calls (refilled between calls, never in front of a waiting
call), so neither is on a call's path. A module whose handlers read their payload only as data
(never run it) may set ``REUSE = n``: a child then answers up to ``n`` calls in a row, and is
retired after any error or once worn (:mod:`gymrl.sandbox_worker` says when, and why this is
safe only for such handlers; the calculator does it). What confines a call:

- **rlimits** in the child: CPU time, address space (``memory_mb``), file size, open files,
  no core dumps;
- **seccomp** in the child (:data:`gymrl.sandbox_worker.DENIED`): no sockets, no new processes
  (threads are fine), no exec, no opening files for writing and no other file-system changes, no
  signals, no ptrace, no raising limits, no mounts, namespaces, BPF, io_uring;
- **deadlines**: the worker kills the child at ``time_limit_s`` of wall-clock time; this side
  kills the worker when it does not answer ``REPLY_GRACE_S`` later, and starts a new one on the
  next call;
- **bubblewrap**, when installed (``apt-get install bubblewrap``): the worker runs with no
  network, its own pid/ipc/uts namespaces, no capabilities, an empty environment, a private
  ``/tmp``, and a read-only view of only ``/usr``, the interpreter, and the code it imports.
  Without it (:attr:`Sandbox.isolation` says which) the worker still gets an empty environment,
  but a call can *read* whatever this process's user can read: files, and other processes'
  ``/proc`` entries (their environment, their memory). Handlers that run untrusted *code*
  should insist on ``use_bwrap=True``.

Results are always dicts: the handler's, or ``{"error": message}``; ``run`` never raises.
"""

from __future__ import annotations

import contextlib
import functools
import importlib.util
import json
import os
import select
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import warnings
import weakref
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Any

from gymrl.errors import ConfigError, GymrlError
from gymrl.sandbox_worker import MAX_REPLY_BYTES, MAX_REQUEST_BYTES

#: The two values of :attr:`Sandbox.isolation`.
ISOLATION_BWRAP = "bwrap+seccomp+rlimits"
ISOLATION_PLAIN = "seccomp+rlimits"
#: The worker script, run by path so that it does not import the gymrl package.
WORKER_PATH = Path(__file__).with_name("sandbox_worker.py")
#: How long after the time limit this side waits for a reply before killing the worker.
REPLY_GRACE_S = 5.0
#: How long a worker may take to start (bwrap, importing the handler module, e.g. sympy).
STARTUP_TIMEOUT_S = 60.0
#: How long :meth:`Sandbox.close` lets the worker reap its children and exit before killing it.
CLOSE_GRACE_S = 2.0
#: The worker's whole environment: nothing of this process's (API keys stay here).
WORKER_ENV = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "HOME": "/tmp"}
# System paths bound read-only under bwrap (the /lib-style ones are symlinks on merged-/usr
# systems: mirrored as symlinks, bound otherwise). Only the loader's cache from /etc: /etc also
# holds secrets (shadow, ssh host keys) and the worker runs as root when we do.
_SYSTEM_DIRS = ("/usr", "/lib", "/lib64", "/lib32", "/libx32", "/bin", "/sbin")
_SYSTEM_FILES = ("/etc/ld.so.cache", "/etc/ld.so.conf", "/etc/localtime")


class SandboxError(GymrlError):
    """The sandbox cannot be set up as asked (bubblewrap missing, handler module not found)."""


class _WorkerFailure(Exception):
    """The worker failed a call: it died (``died``), hung, or answered nonsense."""

    def __init__(self, message: str, *, died: bool = False) -> None:
        super().__init__(message)
        self.died = died


class Sandbox:
    """A warm worker that runs named handlers on untrusted payloads in confined children.

    Args:
        handler_module: importable module path defining ``HANDLERS = {name: fn}``, each
            ``fn(payload: dict) -> dict`` (JSON in, JSON out). Trusted code: it is imported
            unconfined, once; only the calls run confined.
        time_limit_s: wall-clock limit of one call (CPU time is limited to it, rounded up).
        memory_mb: address-space limit of one call, including the worker's own mappings
            (about 60 MB with sympy loaded).
        use_bwrap: ``True`` requires bubblewrap (raises :class:`SandboxError` without it);
            ``False`` never uses it; ``None`` uses it when it is installed and works here.
        python_path: extra folders the worker needs on ``sys.path`` (bound read-only under
            bwrap). The folder holding ``handler_module`` and the interpreter's prefixes are
            added by themselves.
        startup_timeout_s: how long starting the worker may take.

    Raises:
        SandboxError: ``use_bwrap=True`` and bwrap is not installed.
        ConfigError: a non-positive time limit, or a memory limit under 64 MB.
    """

    def __init__(self, handler_module: str, *, time_limit_s: float = 2.0, memory_mb: int = 512,
                 use_bwrap: bool | None = None, python_path: Sequence[str | os.PathLike] = (),
                 startup_timeout_s: float = STARTUP_TIMEOUT_S) -> None:
        if not time_limit_s > 0:
            raise ConfigError(f"time_limit_s must be positive, got {time_limit_s!r}")
        if memory_mb < 64:
            raise ConfigError(f"memory_mb must be at least 64, got {memory_mb!r}")
        if use_bwrap and shutil.which("bwrap") is None:
            raise SandboxError("use_bwrap=True, but bubblewrap (bwrap) is not on PATH: "
                               "apt-get install bubblewrap")
        self.handler_module = handler_module
        self.time_limit_s = float(time_limit_s)
        self.memory_mb = int(memory_mb)
        self.use_bwrap = use_bwrap
        self.python_path = [os.path.abspath(p) for p in python_path]
        self.startup_timeout_s = startup_timeout_s
        self._lock = threading.Lock()
        self._proc: subprocess.Popen | None = None
        self._stderr: IO[bytes] | None = None
        self._owner_pid = os.getpid()
        self._stop_worker: weakref.finalize | None = None

    @property
    def isolation(self) -> str:
        """``"bwrap+seccomp+rlimits"`` or ``"seccomp+rlimits"``: what confines the calls."""
        return ISOLATION_BWRAP if self._bwrap() else ISOLATION_PLAIN

    @property
    def pid(self) -> int | None:
        """The worker's process id (bwrap's under bubblewrap), ``None`` while none runs."""
        proc = self._proc
        return proc.pid if proc is not None and proc.poll() is None else None

    def run(self, name: str, payload: dict[str, Any]) -> dict[str, Any]:
        """Run handler ``name`` on ``payload`` in a fresh confined child.

        Returns:
            The handler's result dict, or ``{"error": message}`` (timeout, memory limit, the
            handler's exception as ``"<Type>: <message>"``, output too large, bad payload,
            worker failure). Never raises.
        """
        if not isinstance(name, str):
            return {"error": f"handler name must be a string, got {type(name).__name__}"}
        if not isinstance(payload, dict):
            return {"error": f"payload must be a dict, got {type(payload).__name__}"}
        try:
            line = json.dumps({"name": name, "payload": payload}).encode() + b"\n"
        except (TypeError, ValueError, RecursionError) as e:
            return {"error": f"payload is not JSON: {e}"}
        if len(line) > MAX_REQUEST_BYTES:
            return {"error": f"payload too large: {len(line)} bytes (limit {MAX_REQUEST_BYTES})"}
        with self._lock:
            for attempt in range(2):
                try:
                    proc = self._ensure_worker()
                    return self._exchange(proc, line)
                except SandboxError as e:
                    return {"error": str(e)}
                except _WorkerFailure as e:
                    self._stop(kill=True)
                    # A worker killed from outside (or dead since the last call) is replaced
                    # once; a hung one is not retried: the payload may be what hangs it.
                    if not (e.died and attempt == 0):
                        return {"error": str(e)}
        raise AssertionError("unreachable")

    def close(self) -> None:
        """Stop the worker and its children (a later :meth:`run` starts a new one)."""
        with self._lock:
            self._stop()

    def __enter__(self) -> Sandbox:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- the worker -------------------------------------------------------------------------

    def _ensure_worker(self) -> subprocess.Popen:
        if self._owner_pid != os.getpid():  # we were forked: that worker belongs to the parent
            self._proc, self._stderr, self._stop_worker = None, None, None
            self._owner_pid = os.getpid()
        if self._proc is not None and self._proc.poll() is None:
            return self._proc
        self._stop()
        argv = self._worker_argv()
        stderr = tempfile.TemporaryFile()  # noqa: SIM115  (lives as long as the worker)
        try:
            proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                    stderr=stderr, env=WORKER_ENV, cwd="/", bufsize=0,
                                    start_new_session=True)
        except OSError as e:
            stderr.close()
            raise SandboxError(f"cannot start the sandbox worker: {e}") from e
        self._proc, self._stderr = proc, stderr
        # Stops the worker when this Sandbox is closed or collected, or the interpreter exits.
        self._stop_worker = weakref.finalize(self, _kill, proc, stderr)
        try:
            hello = _read_reply(proc, time.monotonic() + self.startup_timeout_s)
        except _WorkerFailure as e:
            hello = {"fatal": str(e)}
        if not hello.get("ready"):
            detail = hello.get("fatal") or f"unexpected first line {str(hello)[:200]}"
            tail = _tail(stderr)
            self._stop(kill=True)
            raise SandboxError(f"sandbox worker for {self.handler_module} failed to start "
                               f"({self.isolation}): {detail}" + (f"; stderr: {tail}" if tail
                                                                  else ""))
        return proc

    def _exchange(self, proc: subprocess.Popen, line: bytes) -> dict[str, Any]:
        deadline = time.monotonic() + self.time_limit_s + REPLY_GRACE_S
        _write_request(proc, line, deadline)
        reply = _read_reply(proc, deadline)
        result = reply.get("result")
        if not isinstance(result, dict):
            raise _WorkerFailure(f"sandbox worker answered nonsense: {str(reply)[:200]}")
        return result

    def _stop(self, *, kill: bool = False) -> None:
        """Stop the worker: by ending its input (it reaps its children and exits), or, with
        ``kill`` (it failed), by SIGKILL at once."""
        if kill and self._proc is not None and self._owner_pid == os.getpid():
            with contextlib.suppress(OSError):
                self._proc.kill()
        if self._stop_worker is not None:
            self._stop_worker()
        self._proc, self._stderr, self._stop_worker = None, None, None

    def _bwrap(self) -> str | None:
        """The bwrap to run the worker under, or ``None``."""
        if self.use_bwrap is False:
            return None
        path = shutil.which("bwrap")
        if path is None:
            if self.use_bwrap:
                raise SandboxError("use_bwrap=True, but bubblewrap (bwrap) is not on PATH: "
                                   "apt-get install bubblewrap")
            return None
        if self.use_bwrap or _bwrap_works(path):
            return path
        return None

    def _worker_argv(self) -> list[str]:
        command = [sys.executable, "-I", "-B", str(WORKER_PATH), self.handler_module,
                   "--time-limit", repr(self.time_limit_s), "--memory-mb", str(self.memory_mb)]
        entries, binds = list(self.python_path), list(self.python_path)
        for module in (self.handler_module, "pyseccomp"):
            module_entries, module_binds = _locate(module)
            entries += module_entries
            binds += module_binds
        for entry in dict.fromkeys(entries):  # -I drops PYTHONPATH: pass folders as arguments
            command += ["--path", entry]
        bwrap = self._bwrap()
        if bwrap is None:
            return command
        binds += [str(WORKER_PATH)] + _prefixes()
        return [bwrap, *_bwrap_args(binds), "--", *command]


def _locate(module: str) -> tuple[list[str], list[str]]:
    """The ``sys.path`` folders and the paths to bind that make ``module`` importable."""
    top = module.split(".")[0]
    try:
        spec = importlib.util.find_spec(top)
    except (ImportError, ValueError) as e:
        raise SandboxError(f"cannot find module {module!r}: {e}") from e
    if spec is None:
        raise SandboxError(f"cannot find module {module!r} (is its folder on sys.path?)")
    if spec.submodule_search_locations:  # a package: bind its folder(s), not its neighbours
        folders = [os.path.abspath(p) for p in spec.submodule_search_locations]
        return [os.path.dirname(p) for p in folders], folders
    if spec.origin and os.path.isabs(spec.origin):  # a single module file
        return [os.path.dirname(spec.origin)], [spec.origin]
    return [], []  # built in


def _prefixes() -> list[str]:
    """The interpreter's folders: the venv, the base installation, the real executable's."""
    paths = {sys.prefix, sys.exec_prefix, sys.base_prefix, sys.base_exec_prefix,
             os.path.dirname(os.path.dirname(os.path.realpath(sys.executable)))}
    return sorted(p for p in paths if p and p != "/")


def _bwrap_args(binds: Sequence[str]) -> list[str]:
    """bwrap options: namespaces, no capabilities, empty environment, read-only binds."""
    args = ["--unshare-all", "--die-with-parent", "--new-session", "--cap-drop", "ALL",
            "--clearenv"]
    for key, value in WORKER_ENV.items():
        args += ["--setenv", key, value]
    args += _system_binds()
    # /tmp before the binds: a bind under /tmp must land inside the private tmpfs.
    args += ["--tmpfs", "/tmp", "--proc", "/proc", "--dev", "/dev"]
    system = {"/usr", "/tmp", "/proc", "/dev"}
    # Parents first: binding a parent after its child would hide the child.
    for path in sorted(dict.fromkeys(os.path.abspath(b) for b in binds),
                       key=lambda p: (p.count("/"), p)):
        if path in system or path == "/" or not os.path.exists(path):
            continue
        args += ["--ro-bind", path, path]
    args += ["--chdir", "/tmp"]
    return args


def _system_binds() -> list[str]:
    args: list[str] = []
    for path in _SYSTEM_DIRS:
        if os.path.islink(path):
            args += ["--symlink", os.readlink(path), path]
        elif os.path.isdir(path):
            args += ["--ro-bind", path, path]
    for path in _SYSTEM_FILES:
        args += ["--ro-bind-try", path, path]
    return args


@functools.cache
def _bwrap_works(bwrap: str) -> bool:
    """Whether bwrap can create its namespaces here (in many containers it cannot)."""
    try:
        done = subprocess.run([bwrap, "--unshare-all", "--die-with-parent", "--cap-drop", "ALL",
                               *_system_binds(), "--proc", "/proc", "--dev", "/dev", "true"],
                              capture_output=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return False
    if done.returncode != 0:
        warnings.warn("bubblewrap is installed but cannot create a sandbox here "
                      f"({done.stderr.decode(errors='replace').strip()[:200]}); running "
                      f"sandbox workers with {ISOLATION_PLAIN} only", RuntimeWarning,
                      stacklevel=3)
    return done.returncode == 0


def _write_request(proc: subprocess.Popen, line: bytes, deadline: float) -> None:
    """Send one request line; a worker that stopped reading cannot block us past ``deadline``."""
    fd = proc.stdin.fileno()  # type: ignore[union-attr]
    os.set_blocking(fd, False)
    view = memoryview(line)
    try:
        while view:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not select.select([], [fd], [], remaining)[1]:
                raise _WorkerFailure("sandbox worker stopped reading requests; restarted it")
            with contextlib.suppress(BlockingIOError):
                view = view[os.write(fd, view):]
    except OSError as e:  # BrokenPipeError: it is gone
        raise _WorkerFailure(f"sandbox worker died ({e})", died=True) from e


def _read_reply(proc: subprocess.Popen, deadline: float) -> dict[str, Any]:
    """One JSON line from the worker, before ``deadline`` (``time.monotonic()``)."""
    fd = proc.stdout.fileno()  # type: ignore[union-attr]
    buffer = bytearray()
    limit = MAX_REPLY_BYTES + 4096  # the result plus its envelope
    while not buffer.endswith(b"\n"):
        remaining = deadline - time.monotonic()
        if remaining <= 0 or not select.select([fd], [], [], remaining)[0]:
            raise _WorkerFailure("sandbox worker did not answer in time; restarted it")
        chunk = os.read(fd, 1 << 16)
        if not chunk:
            code = proc.poll()
            raise _WorkerFailure(f"sandbox worker died (exit status {code})", died=True)
        buffer += chunk
        if len(buffer) > limit:
            raise _WorkerFailure(f"sandbox worker reply longer than {limit} bytes")
    try:
        reply = json.loads(bytes(buffer))
    except ValueError:
        reply = None
    if not isinstance(reply, dict):
        raise _WorkerFailure(f"sandbox worker wrote a line that is not JSON: {buffer[:200]!r}")
    return reply


def _kill(proc: subprocess.Popen, stderr: IO[bytes]) -> None:
    """Stop a worker: end its input and give it :data:`CLOSE_GRACE_S` to kill and reap its
    children and exit, then kill it. (Killed, its children die with it, by PDEATHSIG or bwrap's
    --die-with-parent, but are left for init to reap, which some containers' init never does.)"""
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        if proc.poll() is None:
            with contextlib.suppress(OSError):
                proc.stdin.close()  # type: ignore[union-attr]
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=CLOSE_GRACE_S)
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=10)
    for stream in (proc.stdin, proc.stdout, stderr):
        with contextlib.suppress(OSError):
            if stream is not None:
                stream.close()


def _tail(stderr: IO[bytes], size: int = 800) -> str:
    """The end of a worker's stderr, for error messages."""
    try:
        stderr.seek(max(0, stderr.seek(0, os.SEEK_END) - size))
        return stderr.read().decode(errors="replace").strip()
    except (OSError, ValueError):
        return ""
