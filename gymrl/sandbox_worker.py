"""The sandbox's warm worker: imports a handler module once, then forks one confined child per call.

Run as ``python gymrl/sandbox_worker.py <handler_module> [--time-limit S] [--memory-mb N]``
(:class:`gymrl.sandbox.Sandbox` starts it by file path, so the worker never imports the ``gymrl``
package: half a second and ~100 MB of address space that would count against ``RLIMIT_AS``;
``python -m gymrl.sandbox_worker`` works too, for debugging by hand). This module uses only the
standard library and ``pyseccomp``.

A handler module may also define ``WARMUP = [(name, payload), ...]``: trusted calls the worker
runs once, unconfined, before serving (to load what the handlers import lazily).

Protocol: JSON lines. The worker first writes ``{"ready": true, ...}`` (or ``{"fatal": msg}`` and
exits); then for each request line ``{"name": str, "payload": dict}`` it writes one reply line
``{"result": dict}``, where ``result`` is the handler's dict or ``{"error": msg}``. It exits at
end of input.

Per call the child, before running the handler:

1. points fds 0-2 at /dev/null and closes every other fd but its result pipe (so it cannot read
   the next request or write into the protocol);
2. asks for SIGKILL when the worker dies (``PR_SET_PDEATHSIG``), so no call outlives the worker;
3. sets rlimits: ``RLIMIT_CPU`` (time limit rounded up), ``RLIMIT_AS`` (``memory_mb``; it counts
   the worker's own mappings, ~60 MB with sympy loaded), ``RLIMIT_FSIZE`` 1 MiB,
   ``RLIMIT_NOFILE`` 32, ``RLIMIT_CORE`` 0;
4. loads the seccomp filter of :func:`build_filter` (allow by default, deny the calls listed in
   :data:`DENIED` and a few by argument; ``no_new_privs`` set, a foreign syscall ABI killed),
   compiled to BPF once by the worker (:class:`CompiledFilter`).

The worker waits for the child with a wall-clock deadline (the time limit) and ``kill -9``s it
when it passes; it reads at most :data:`MAX_REPLY_BYTES` of result.
"""

from __future__ import annotations

import argparse
import ctypes
import errno
import gc
import importlib
import json
import math
import os
import resource
import select
import signal
import sys
import time
from collections.abc import Callable
from typing import Any

#: Most bytes of one result (and so of one reply line); more is an error, not a cut JSON.
MAX_REPLY_BYTES = 1_000_000
#: Longest request line the worker reads.
MAX_REQUEST_BYTES = 1_000_000
#: A child may write files of at most this size (and only through fds it already holds: the
#: seccomp filter refuses every open for writing).
FSIZE_BYTES = 1 << 20
#: Open files a child may hold: imports open one file at a time.
NOFILE = 32
#: Longest error message passed back.
MAX_ERROR_CHARS = 500

_PR_SET_PDEATHSIG = 1
_CLONE_THREAD = 0x00010000

# What the seccomp filter refuses, by reason. Each call fails with EPERM (clone3 with ENOSYS,
# so that glibc falls back to clone(), whose flags a filter can read: clone3 passes them in
# memory). Calls that this architecture lacks are skipped. The filter is the same for every
# child (nothing depends on its pid), so the worker builds it once.
DENIED: dict[str, tuple[str, ...]] = {
    # No network. (Under bwrap there is no network namespace to reach anyway.)
    "network": ("socket", "socketpair"),
    # No new processes: fork, vfork, exec, and clone without CLONE_THREAD (threads stay
    # allowed); see build_filter().
    "processes": ("fork", "vfork", "execve", "execveat"),
    # No writes to the file system: opening for writing, creating, truncating (build_filter()),
    # and every call that changes names, modes, owners, times or attributes.
    "files": ("creat", "truncate", "rename", "renameat", "renameat2", "unlink", "unlinkat",
              "mkdir", "mkdirat", "rmdir", "link", "linkat", "symlink", "symlinkat", "mknod",
              "mknodat", "chmod", "fchmod", "fchmodat", "fchmodat2", "chown", "fchown",
              "lchown", "fchownat", "utime", "utimes", "utimensat", "futimesat", "setxattr",
              "lsetxattr", "fsetxattr", "removexattr", "lremovexattr", "fremovexattr",
              "name_to_handle_at", "open_by_handle_at"),
    # No touching other processes: ptrace, their memory, their fds, and no sending signals
    # at all (the worker is a process too; abort() then ends the child by other means).
    "other processes": ("ptrace", "process_vm_readv", "process_vm_writev", "pidfd_getfd",
                        "kcmp", "kill", "tkill", "tgkill", "rt_sigqueueinfo",
                        "rt_tgsigqueueinfo", "pidfd_send_signal"),
    # No raising its own limits (root may raise hard limits) or cancelling PDEATHSIG.
    "limits": ("setrlimit",),
    # No namespaces, mounts, kernel modules, BPF, keyrings, io_uring (whose operations bypass
    # seccomp), clocks, swap, reboot.
    "system": ("mount", "umount2", "pivot_root", "chroot", "unshare", "setns", "open_tree",
               "move_mount", "fsopen", "fsmount", "fsconfig", "fspick", "mount_setattr",
               "reboot", "kexec_load", "kexec_file_load", "init_module", "finit_module",
               "delete_module", "bpf", "perf_event_open", "userfaultfd", "keyctl", "add_key",
               "request_key", "io_uring_setup", "io_uring_enter", "io_uring_register",
               "swapon", "swapoff", "acct", "settimeofday", "clock_settime", "clock_adjtime",
               "adjtimex", "sethostname", "setdomainname", "iopl", "ioperm", "quotactl",
               "syslog", "vhangup"),
}


def build_filter() -> Any:
    """The child's seccomp filter (pyseccomp): allow by default, refuse what :data:`DENIED`
    lists, and a few calls by their arguments."""
    import pyseccomp as sc

    flt = sc.SyscallFilter(sc.ALLOW)
    # Without this the kernel turns on its Speculative Store Bypass mitigation for the child,
    # which cost ~5 ms per call here; that mitigation guards a process's secrets from code
    # running inside it, and a child holds nothing the untrusted input may not see.
    flt.set_attr(sc.Attr.CTL_SSB, 1)
    deny = _denier(flt)
    for names in DENIED.values():
        for name in names:
            deny(name)
    # Processes but not threads: clone without CLONE_THREAD; clone3 hides its flags.
    deny("clone", sc.Arg(0, sc.MASKED_EQ, _CLONE_THREAD, 0))
    deny("clone3", action=sc.ERRNO(errno.ENOSYS))
    # Opening for writing, creating or truncating (flags are argument 1 of open, 2 of openat).
    # O_TMPFILE needs O_WRONLY or O_RDWR, so it is covered; openat2 hides its flags in memory.
    for flag in (os.O_WRONLY, os.O_RDWR, os.O_CREAT, os.O_TRUNC):
        deny("open", sc.Arg(1, sc.MASKED_EQ, flag, flag))
        deny("openat", sc.Arg(2, sc.MASKED_EQ, flag, flag))
    deny("openat2", action=sc.ERRNO(errno.ENOSYS))
    # Reading limits (prlimit64 with no new limit) is fine; setting them is not.
    deny("prlimit64", sc.Arg(2, sc.NE, 0))
    deny("prctl", sc.Arg(0, sc.EQ, _PR_SET_PDEATHSIG))
    return flt


def _denier(flt: Any) -> Callable[..., None]:
    import pyseccomp as sc

    arch = sc.system_arch()

    def deny(name: str, *args: Any, action: int = sc.ERRNO(errno.EPERM)) -> None:
        if sc.resolve_syscall(arch, name) < 0:  # not a call on this architecture
            return
        flt.add_rule(action, name, *args)

    return deny


#: libc, loaded before forking, for prctl() and syscall().
_LIBC = ctypes.CDLL(None, use_errno=True)
_PR_SET_NO_NEW_PRIVS = 38
_SECCOMP_SET_MODE_FILTER = 1
_SECCOMP_FILTER_FLAG_SPEC_ALLOW = 1 << 2  # libseccomp's CTL_SSB attribute, as a load flag


class _SockFprog(ctypes.Structure):
    """The kernel's ``struct sock_fprog``: a classic BPF program (8-byte instructions)."""

    _fields_ = (("len", ctypes.c_ushort), ("filter", ctypes.c_void_p))


class CompiledFilter:
    """:func:`build_filter` compiled to BPF once, loaded by each child with one system call.

    libseccomp compiles its rules to BPF inside ``load()``: ~4.5 ms per child here, most of a
    call's cost. The worker compiles once (``seccomp_export_bpf``) and each child installs the
    same program with ``seccomp(SECCOMP_SET_MODE_FILTER, SPEC_ALLOW)`` after setting
    ``no_new_privs``, which is what libseccomp's ``load()`` does with these attributes. The
    program carries libseccomp's architecture check, so a foreign syscall ABI is still killed.
    """

    def __init__(self) -> None:
        import tempfile

        import pyseccomp as sc

        with tempfile.TemporaryFile() as fh:
            build_filter().export_bpf(fh)
            fh.seek(0)
            program = fh.read()
        if not program or len(program) % 8:
            raise OSError(f"seccomp_export_bpf gave {len(program)} bytes, not BPF")
        self.syscall = sc.resolve_syscall(sc.system_arch(), "seccomp")
        if self.syscall < 0:
            raise OSError("this architecture has no seccomp system call")
        self._buffer = ctypes.create_string_buffer(program, len(program))
        self._program = _SockFprog(len(program) // 8,
                                   ctypes.cast(self._buffer, ctypes.c_void_p))

    def load(self) -> None:
        """Install the program on the calling process (for good: it cannot be removed)."""
        if _LIBC.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_SET_NO_NEW_PRIVS) failed")
        if _LIBC.syscall(self.syscall, _SECCOMP_SET_MODE_FILTER,
                         _SECCOMP_FILTER_FLAG_SPEC_ALLOW, ctypes.byref(self._program)) != 0:
            raise OSError(ctypes.get_errno(), "seccomp(SECCOMP_SET_MODE_FILTER) failed")


#: The filter, compiled once by the worker before it forks; ``None`` outside a worker:
#: children then build and load their own.
_PREBUILT: CompiledFilter | None = None


def _confine(result_fd: int, worker_pid: int, time_limit_s: float, memory_mb: int) -> None:
    """Everything a child does to itself before running untrusted input (see module doc)."""
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(devnull, fd)
    low, high = sorted((devnull, result_fd))
    os.closerange(3, low)
    os.closerange(low + 1, high)
    os.closerange(high + 1, 1 << 20)
    os.close(devnull)
    _LIBC.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != worker_pid:  # the worker died before PDEATHSIG was set
        os._exit(1)
    cpu = max(1, math.ceil(time_limit_s))
    memory = memory_mb * 1024 * 1024
    for limit, value in ((resource.RLIMIT_CPU, (cpu, cpu + 1)),
                         (resource.RLIMIT_AS, (memory, memory)),
                         (resource.RLIMIT_FSIZE, (FSIZE_BYTES, FSIZE_BYTES)),
                         (resource.RLIMIT_NOFILE, (NOFILE, NOFILE)),
                         (resource.RLIMIT_CORE, (0, 0))):
        resource.setrlimit(limit, value)
    (_PREBUILT if _PREBUILT is not None else build_filter()).load()


def _error(message: str) -> dict[str, str]:
    return {"error": message[:MAX_ERROR_CHARS]}


def _child(fn: Callable[[dict], Any], payload: dict, result_fd: int, worker_pid: int,
           time_limit_s: float, memory_mb: int) -> None:
    """Run one call in the forked child; never returns."""
    status = 1
    try:
        try:
            _confine(result_fd, worker_pid, time_limit_s, memory_mb)
        except BaseException as e:  # fail closed: never run the handler unconfined
            data = json.dumps(_error(f"sandbox setup failed: {type(e).__name__}: {e}"))
        else:
            try:
                result = fn(payload)
                if not isinstance(result, dict):
                    result = _error(f"handler returned {type(result).__name__}, not a dict")
            except MemoryError:
                result = _error(f"memory limit of {memory_mb} MB exceeded")
            except BaseException as e:  # the handler's failure is the caller's answer
                result = _error(f"{type(e).__name__}: {e}")
            try:
                data = json.dumps(result)
            except MemoryError:
                data = json.dumps(_error(f"memory limit of {memory_mb} MB exceeded"))
            except (TypeError, ValueError) as e:
                data = json.dumps(_error(f"handler result is not JSON: {e}"))
        raw = data.encode("utf-8", "replace")
        if len(raw) > MAX_REPLY_BYTES:
            raw = json.dumps(_error(_too_large(len(raw)))).encode()
        view = memoryview(raw)
        while view:
            view = view[os.write(result_fd, view):]
        os.close(result_fd)  # EOF for the worker now, not after this process is torn down
        status = 0
    finally:
        os._exit(status)  # never run the worker's atexit handlers or flush its buffers


def _too_large(size: int | str) -> str:
    return f"output too large: {size} bytes (limit {MAX_REPLY_BYTES})"


#: Children that delivered a whole result and are exiting; reaped before the next call.
_EXITING: list[int] = []


def _reap_exiting() -> None:
    """Reap the children that were exiting after their result; any still alive is killed."""
    while _EXITING:
        pid = _EXITING.pop()
        if os.waitpid(pid, os.WNOHANG)[0] == 0:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)


def _whole_result(chunks: list[bytes]) -> dict | None:
    """The result, if ``chunks`` hold one whole JSON object (else None)."""
    try:
        result = json.loads(b"".join(chunks))
    except ValueError:
        return None
    return result if isinstance(result, dict) else None


def run_call(fn: Callable[[dict], Any], payload: dict, time_limit_s: float,
             memory_mb: int) -> dict:
    """Run ``fn(payload)`` in a fresh confined child; the result dict or ``{"error": ...}``.

    A child closes its result pipe before it exits, so a whole result is returned at once and
    the child's exit (tearing down a copy of the worker's address space) is waited for before
    the next call, off the caller's path.
    """
    _reap_exiting()
    read_fd, write_fd = os.pipe()
    worker_pid = os.getpid()
    try:
        pid = os.fork()
    except OSError as e:  # out of processes or memory: this call fails, the worker stays
        os.close(read_fd)
        os.close(write_fd)
        return _error(f"cannot start a sandboxed call: {e}")
    if pid == 0:
        os.close(read_fd)
        _child(fn, payload, write_fd, worker_pid, time_limit_s, memory_mb)
    os.close(write_fd)
    try:
        pidfd: int | None = os.pidfd_open(pid)
    except (AttributeError, OSError):  # before Linux 5.3: poll instead
        pidfd = None
    deadline = time.monotonic() + time_limit_s
    chunks: list[bytes] = []
    size = 0
    eof = False
    status: int | None = None
    failure: str | None = None
    early: dict | None = None
    try:
        while not (eof and status is not None):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                failure = f"timed out after {time_limit_s:g}s"
                break
            watch = ([] if eof else [read_fd]) + ([pidfd] if pidfd is not None else [])
            wait = remaining if pidfd is not None else min(remaining, 0.002)
            ready = select.select(watch, [], [], wait)[0] if watch else []
            if read_fd in ready:
                data = os.read(read_fd, 1 << 16)
                if not data:
                    eof = True
                size += len(data)
                if size > MAX_REPLY_BYTES:
                    failure = _too_large(f"more than {MAX_REPLY_BYTES}")
                    break
                chunks.append(data)
                if eof and status is None and (early := _whole_result(chunks)) is not None:
                    break  # the child is exiting; _reap_exiting() waits for it later
            if status is None and (pidfd is None or pidfd in ready):
                reaped, wait_status = os.waitpid(pid, os.WNOHANG)
                if reaped:
                    status = wait_status
                    if pidfd is not None:
                        os.close(pidfd)
                        pidfd = None
    finally:
        if early is not None:
            _EXITING.append(pid)
        elif status is None:
            os.kill(pid, signal.SIGKILL)
            status = os.waitpid(pid, 0)[1]
        os.close(read_fd)
        if pidfd is not None:
            os.close(pidfd)
    if early is not None:
        return early
    if failure is not None:
        return _error(failure)
    return _interpret(b"".join(chunks), status, time_limit_s, memory_mb)


def _interpret(data: bytes, status: int, time_limit_s: float, memory_mb: int) -> dict:
    """The result of a child that ended by itself, from its output and wait status."""
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        try:
            name = signal.Signals(sig).name
        except ValueError:
            name = f"signal {sig}"
        if sig in (signal.SIGXCPU, signal.SIGKILL):  # RLIMIT_CPU: soft, then hard
            return _error(f"timed out after {time_limit_s:g}s (CPU time limit)")
        if sig in (signal.SIGSEGV, signal.SIGBUS, signal.SIGABRT):
            # C code (GMP, numpy, a deep recursion) that cannot allocate usually dies this way.
            return _error(f"memory limit of {memory_mb} MB exceeded, or the handler crashed "
                          f"(killed by {name})")
        if sig == signal.SIGSYS:
            return _error("killed by SIGSYS: a forbidden system call ABI")
        return _error(f"handler killed by {name}")
    if not data:
        return _error(f"handler exited without a result (exit status {os.WEXITSTATUS(status)})")
    try:
        result = json.loads(data)
    except ValueError:
        return _error("handler wrote an unreadable result")
    if not isinstance(result, dict):
        return _error("handler wrote a result that is not a JSON object")
    return result


def _serve(handlers: dict[str, Callable[[dict], Any]], reply: Callable[[dict], None],
           time_limit_s: float, memory_mb: int) -> None:
    """Answer request lines from stdin until it closes."""
    stdin = sys.stdin.buffer
    while True:
        line = stdin.readline(MAX_REQUEST_BYTES + 1)
        if not line:
            return
        if not line.endswith(b"\n"):  # too long: skip to the end of that line
            while line and not line.endswith(b"\n"):
                line = stdin.readline(1 << 16)
            reply({"result": _error(f"request longer than {MAX_REQUEST_BYTES} bytes")})
            continue
        try:
            request = json.loads(line)
            name, payload = request["name"], request["payload"]
        except (ValueError, TypeError, KeyError):
            reply({"result": _error("malformed request")})
            continue
        if not isinstance(name, str) or name not in handlers:
            known = ", ".join(sorted(handlers))
            reply({"result": _error(f"unknown handler {name!r}; known: {known}")})
            continue
        if not isinstance(payload, dict):
            reply({"result": _error("payload must be a JSON object")})
            continue
        reply({"result": run_call(handlers[name], payload, time_limit_s, memory_mb)})


def _vm_size_mb() -> float:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmSize:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("handler_module")
    parser.add_argument("--time-limit", type=float, default=2.0)
    parser.add_argument("--memory-mb", type=int, default=512)
    parser.add_argument("--path", action="append", default=[],
                        help="a folder to append to sys.path (repeatable)")
    args = parser.parse_args(argv)
    sys.path.extend(p for p in args.path if p not in sys.path)
    sys.dont_write_bytecode = True  # children may not write files; the worker need not either
    # The protocol gets a private copy of stdout; fd 1 becomes stderr, so a stray print() in a
    # handler module cannot corrupt it.
    out = os.fdopen(os.dup(1), "w", encoding="utf-8")
    os.dup2(2, 1)

    def reply(message: dict) -> None:
        out.write(json.dumps(message) + "\n")
        out.flush()

    global _PREBUILT
    try:
        _PREBUILT = CompiledFilter()  # a filter that cannot be built fails now, not per call
        module = importlib.import_module(args.handler_module)
        handlers = getattr(module, "HANDLERS", None)
        if not isinstance(handlers, dict) or not handlers:
            raise TypeError(f"{args.handler_module} defines no HANDLERS dict")
        # Trusted sample calls, run here once so that lazy imports and caches are filled before
        # the first fork instead of in every child.
        for name, payload in getattr(module, "WARMUP", ()):
            handlers[name](payload)
    except Exception as e:  # the parent shows this as the reason the sandbox cannot start
        reply({"fatal": f"{type(e).__name__}: {e}"[:MAX_ERROR_CHARS]})
        return 1
    # Children then never run the garbage collector over the worker's objects, which would
    # copy every page of them (copy-on-write) in every call.
    gc.freeze()
    vm_mb = _vm_size_mb()
    if vm_mb >= args.memory_mb:
        reply({"fatal": f"memory_mb={args.memory_mb} is below the worker's own address space "
                        f"({vm_mb:.0f} MB after importing {args.handler_module})"})
        return 1
    reply({"ready": True, "handlers": sorted(handlers), "vm_mb": round(vm_mb, 1)})
    _serve(handlers, reply, args.time_limit, args.memory_mb)
    return 0


if __name__ == "__main__":
    # Started by path, Python put this file's folder (gymrl/) first on sys.path: drop it, so
    # that gymrl's modules cannot shadow top-level ones.
    if sys.path and os.path.abspath(sys.path[0]) == os.path.dirname(os.path.abspath(__file__)):
        del sys.path[0]
    sys.exit(main())
