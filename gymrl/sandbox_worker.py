"""The sandbox's warm worker: imports a handler module once, then runs each call in its own
confined child, forked ahead of the call.

Run as ``python gymrl/sandbox_worker.py <handler_module> [--time-limit S] [--memory-mb N]``
(:class:`gymrl.sandbox.Sandbox` starts it by file path, so the worker never imports the ``gymrl``
package: half a second and ~100 MB of address space that would count against ``RLIMIT_AS``;
``python -m gymrl.sandbox_worker`` works too, for debugging by hand). This module uses only the
standard library and ``pyseccomp``.

A handler module may also define ``WARMUP = [(name, payload), ...]``: trusted calls the worker
runs once, unconfined, before serving (to load what the handlers import lazily); and
``PREFAULT``, in the same form: trusted calls each child runs, confined, while it waits for its
request, so that the pages a typical call writes are copied (copy-on-write) before the call
instead of during it (keep them to milliseconds: their CPU time counts against the call's time
limit, as the child's setup does); and ``REUSE = n`` (default 1), described below.

Protocol: JSON lines. The worker first writes ``{"ready": true, ...}`` (or ``{"fatal": msg}`` and
exits); then for each request line ``{"name": str, "payload": dict}`` it writes one reply line
``{"result": dict}``, where ``result`` is the handler's dict or ``{"error": msg}``. At end of
input it kills and reaps its children and exits.

Children: the worker keeps :data:`SPARES` children forked and confined ahead of the calls
(*spares*), so that neither the fork nor the confinement is on a call's path; each child still
serves exactly one call. It forks them when it starts, and refills the pool one fork at a time
and only while no request waits: after a reply, while a spare is left, it first waits up to
:data:`BURST_GAP_S` for the next request (the next call of the same turn), and serves a request
that has come before it forks anything. With none left (more calls in a row than spares), the
next call waits for a fork. Forks happen with no request or result referenced, so a spare holds
no earlier call's data. Before it reads its request, a child:

1. points fds 0-2 at /dev/null and closes every other fd but its request and result pipes (so
   it cannot read the next request or write into the protocol);
2. asks for SIGKILL when the worker dies (``PR_SET_PDEATHSIG``), so no child outlives the
   worker;
3. sets rlimits: ``RLIMIT_CPU`` (time limit rounded up), ``RLIMIT_AS`` (``memory_mb``; it counts
   the worker's own mappings, ~60 MB with sympy loaded), ``RLIMIT_FSIZE`` 1 MiB,
   ``RLIMIT_NOFILE`` 32, ``RLIMIT_CORE`` 0;
4. loads the seccomp filter of :func:`build_filter` (allow by default, deny the calls listed in
   :data:`DENIED` and a few by argument; ``no_new_privs`` set, a foreign syscall ABI killed),
   compiled to BPF once by the worker (:class:`CompiledFilter`);
5. runs the ``PREFAULT`` calls (trusted input; results dropped) if its request has not come
   within :data:`PREFAULT_AFTER_S`.

A call arrives: the worker checks it, writes it to the child kept from the last call (``REUSE``,
below), else to the oldest live spare (or to a freshly forked child when none is left), and
waits for the child with a wall-clock deadline (the time limit, counted from then, less the
CPU time a new child spent on its setup and prefault, which ``RLIMIT_CPU`` counts too) and
``kill -9``s it when it passes; it reads at most
:data:`MAX_REPLY_BYTES` of result. A child spends no CPU time while it waits, so a spare that
waited long still has its whole time limit. A spare that died while it waited is reaped and
replaced.

``REUSE = n`` (n > 1) lets one confined child answer up to ``n`` calls in a row: for handlers
that only *read* their payload as data, never run it as code, so that one call cannot change
what the next computes (the calculator parses with its own grammar and builds sympy objects;
sympy's caches give the same answers). This departs, on purpose and only for such modules, from
"a fresh child per call": a child costs ~10 ms of CPU (fork, prefault, exit), more than the
calculator's whole call, and a lockstep batch of episodes sends a turn's calls back to back,
more of them than any number of spares that is cheap to keep. What still holds: every call runs
confined (same seccomp filter, rlimits, no fds but its pipes); each call gets its whole time
limit (a wall-clock deadline per call; ``RLIMIT_CPU`` is the time limit plus
:data:`REUSE_CPU_S`, the most CPU time a child may have used when it takes another call); and a
child is retired (killed) after any call that ended in an error (a limit, an exception, a bad
result), after ``n`` calls, once it has used :data:`REUSE_CPU_S` of CPU, or once its address
space has grown :data:`REUSE_GROWTH_MB` past the worker's, so that a call never inherits a
child near its limits. Results are then newline-terminated JSON on a pipe the child keeps open.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import ctypes
import dataclasses
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
from collections.abc import Callable, Sequence
from typing import Any, NoReturn

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
#: How long a child waits for its request before it runs the ``PREFAULT`` calls.
PREFAULT_AFTER_S = 0.005
#: Spares kept forked and confined, waiting for a request. A turn may make several calls back
#: to back (ToolRL allows it; the tools env takes at most 5 per turn), and a fork in front of
#: one of them is on its path: ~3 ms of CPU with sympy loaded (copying the worker's page
#: tables), more than a prefaulted calculator call. With five, every call of such a turn finds
#: a spare that has waited (and prefaulted); with two, a turn's third call waited for a fork
#: (measured on the idle machine, turns of 3 calls 20 ms apart, median by position: 1.9 / 1.8 /
#: 6.0 ms with two spares, 1.8 / 1.4 / 2.3 ms with five). Each spare costs ~3.5 MB (calculator:
#: ~3.2 MB of pages copied by its setup and prefault, ~160 kB of page tables; the rest of its
#: ~52 MB is shared with the worker, copy-on-write) and no CPU while it waits.
SPARES = 5
#: After a reply, while a spare is left, how long the worker waits for the next request before
#: it forks: a turn's next call comes within this (the caller reads the reply and sends it,
#: ~0.5 ms, more when it is descheduled); a model writing its next turn takes longer, and its
#: call still finds a spare.
BURST_GAP_S = 0.005
#: A child reused across calls (``REUSE``) takes no more calls once it has used this much CPU
#: time; its ``RLIMIT_CPU`` is the time limit plus this, so every call keeps its whole limit.
REUSE_CPU_S = 0.5
#: ... nor once its address space has grown this far past the worker's (caches, garbage): a
#: call should not fail for the memory that earlier calls left behind.
REUSE_GROWTH_MB = 32

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


def _detach(keep: tuple[int, ...], worker_pid: int) -> None:
    """Point fds 0-2 at /dev/null, close every fd but ``keep``, and die with the worker."""
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(devnull, fd)
    os.close(devnull)
    low = 3
    for fd in sorted(keep):
        os.closerange(low, fd)
        low = fd + 1
    os.closerange(low, 1 << 20)
    _LIBC.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != worker_pid:  # the worker died before PDEATHSIG was set
        os._exit(1)


def _confine(time_limit_s: float, memory_mb: int, reuse: int = 1) -> None:
    """Set the rlimits and load the seccomp filter (see module doc)."""
    # RLIMIT_CPU counts CPU time from the fork: the child's setup and prefault (a few ms; none
    # while it waits for its request) count against it, and the worker's deadline subtracts
    # them too (_Children._deadline), so both limits start from the same point. A reused child
    # takes a call only while it has used at most REUSE_CPU_S, and that call's own limit.
    cpu = max(1, math.ceil(time_limit_s + (REUSE_CPU_S if reuse > 1 else 0.0)))
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


def _child(handlers: dict[str, Callable[[dict], Any]], prefault: Sequence[tuple[str, dict]],
           request_fd: int, result_fd: int, worker_pid: int, time_limit_s: float,
           memory_mb: int, reuse: int = 1) -> NoReturn:
    """A forked child: confine itself, wait for its request, answer it; a reusable one
    (``reuse`` > 1) then waits for the next, until the worker kills it. Exits."""
    status = 1
    try:
        requests = _Requests(request_fd)
        try:
            _detach((request_fd, result_fd), worker_pid)
            _confine(time_limit_s, memory_mb, reuse)
            # Calls back to back would only wait for the prefault (their faults cost no more
            # during the call); a call that comes later finds this child prefaulted.
            if prefault and not requests.waiting(PREFAULT_AFTER_S):
                _prefault(handlers, prefault)
        except BaseException as e:  # fail closed: never read a request unconfined
            _write_result(result_fd, json.dumps(
                _error(f"sandbox setup failed: {type(e).__name__}: {e}")))
        else:
            for _ in range(reuse):
                # To the newline that ends every request, not to end of file: a spare forked
                # after this child holds a copy of the worker's end of this pipe until it
                # closes its inherited fds.
                line = requests.readline(MAX_REQUEST_BYTES + 1)
                if not line.endswith(b"\n"):
                    break
                _write_result(result_fd, _answer(handlers, line, memory_mb))
        os.close(result_fd)  # EOF for the worker now, not after this process is torn down
        status = 0
    finally:
        os._exit(status)  # never run the worker's atexit handlers or flush its buffers


def _write_result(fd: int, data: str) -> None:
    """One result line (JSON has no raw newline), or an error if it is too large."""
    raw = data.encode("utf-8", "replace")
    if len(raw) >= MAX_REPLY_BYTES:
        raw = json.dumps(_error(_too_large(len(raw)))).encode()
    view = memoryview(raw + b"\n")
    while view:
        view = view[os.write(fd, view):]


def _prefault(handlers: dict[str, Callable[[dict], Any]],
              calls: Sequence[tuple[str, dict]]) -> None:
    """Run the module's trusted ``PREFAULT`` calls in this child before its request: the pages
    a typical call writes (caches, reference counts) are copied now, off the call's path."""
    for name, payload in calls:
        with contextlib.suppress(Exception):  # results dropped; a failure is the call's to show
            handlers[name](payload)


def _answer(handlers: dict[str, Callable[[dict], Any]], line: bytes, memory_mb: int) -> str:
    """Run the request line's handler: the result JSON."""
    try:
        request = json.loads(line)  # the worker checked name and payload
        result = handlers[request["name"]](request["payload"])
        if not isinstance(result, dict):
            result = _error(f"handler returned {type(result).__name__}, not a dict")
    except MemoryError:
        result = _error(f"memory limit of {memory_mb} MB exceeded")
    except BaseException as e:  # the handler's failure is the caller's answer
        result = _error(f"{type(e).__name__}: {e}")
    try:
        return json.dumps(result)
    except MemoryError:
        return json.dumps(_error(f"memory limit of {memory_mb} MB exceeded"))
    except (TypeError, ValueError) as e:
        return json.dumps(_error(f"handler result is not JSON: {e}"))


def _too_large(size: int | str) -> str:
    return f"output too large: {size} bytes (limit {MAX_REPLY_BYTES})"


def _whole_result(chunks: list[bytes]) -> dict | None:
    """The result, if ``chunks`` hold one whole JSON object (else None)."""
    try:
        result = json.loads(b"".join(chunks))
    except ValueError:
        return None
    return result if isinstance(result, dict) else None


@dataclasses.dataclass
class _Child:
    """A forked child, seen from the worker: its pid and the worker's ends of its pipes."""

    pid: int
    request_fd: int | None  # written, then closed
    result_fd: int
    pidfd: int | None  # None before Linux 5.3: poll instead
    request: memoryview | None = None  # what is left to write of its request
    deadline: float = math.inf  # time.monotonic() by which its call must be done
    calls_left: int = 1  # calls it may still take (REUSE); its pipe closes after the last

    def vm_mb(self) -> float:
        """Its address space in MB (0 where it cannot be read)."""
        return _vm_size_mb(f"/proc/{self.pid}/status")

    def cpu_s(self) -> float:
        """CPU time the child has used so far (0 where it cannot be read)."""
        clock = ctypes.c_int()
        if _LIBC.clock_getcpuclockid(self.pid, ctypes.byref(clock)) != 0:
            return 0.0
        try:
            return time.clock_gettime(clock.value)
        except OSError:
            return 0.0

    def send(self) -> None:
        """Write what the request pipe takes of :attr:`request`; close it when all is sent."""
        if self.request_fd is None or self.request is None:
            return
        try:
            self.request = self.request[os.write(self.request_fd, self.request):]
        except BlockingIOError:  # the pipe is full: the caller waits until it is writable
            pass
        except BrokenPipeError:  # the child is gone: its exit says why
            self.request = None
        if not self.request:
            self.request = None
            if not self.calls_left:
                os.close(self.request_fd)
                self.request_fd = None

    def close_fds(self) -> None:
        for fd in (self.request_fd, self.result_fd, self.pidfd):
            if fd is not None:
                with contextlib.suppress(OSError):
                    os.close(fd)
        self.request_fd = self.pidfd = None
        self.request = None


class _Children:
    """The worker's children: the spares, forked ahead of the calls and confined, each waiting
    for its request; the child kept from the last call (``REUSE``); and the children that
    answered and are exiting, reaped later.

    Forking a process with sympy loaded takes milliseconds (copying page tables, then the
    child's copy-on-write faults), as does confining the child; spares do all of that between
    calls. Each child serves one call, or up to ``reuse`` in a row (module doc).
    """

    def __init__(self, handlers: dict[str, Callable[[dict], Any]],
                 prefault: Sequence[tuple[str, dict]], time_limit_s: float,
                 memory_mb: int, reuse: int = 1, worker_vm_mb: float = 0.0) -> None:
        self.handlers = handlers
        self.prefault = list(prefault)
        self.time_limit_s = time_limit_s
        self.memory_mb = memory_mb
        self.reuse = reuse
        self.max_vm_mb = worker_vm_mb + REUSE_GROWTH_MB
        self.spares: collections.deque[_Child] = collections.deque()  # oldest first
        self.kept: _Child | None = None  # answered a call and may take the next (REUSE)
        self.exiting: list[int] = []

    def ready(self) -> int:
        """How many spares are waiting; one that died (was killed) meanwhile is reaped and
        dropped."""
        for child in list(self.spares):
            if os.waitpid(child.pid, os.WNOHANG)[0] != 0:
                child.close_fds()
                self.spares.remove(child)
        return len(self.spares)

    def fork_spare(self) -> bool:
        """Fork one more spare; False if that failed (left to the next call to report)."""
        self._reap_exiting()
        try:
            self.spares.append(self._fork())
        except OSError:
            return False
        return True

    def start(self, line: bytes) -> _Child | dict:
        """Hand a request line (already checked) to the oldest spare, or to a child forked for
        it when none is left, and write what its pipe takes at once: the child, for
        :meth:`finish`, or ``{"error": ...}``."""
        self._reap_exiting()
        child = self.kept
        self.kept = None
        if child is not None and os.waitpid(child.pid, os.WNOHANG)[0] != 0:
            child.close_fds()  # it died (was killed) while it waited: not this call's fault
            child = None
        if child is not None:  # its earlier calls' CPU time is not this call's (RLIMIT_CPU)
            child.deadline = time.monotonic() + self.time_limit_s
        else:
            if self.ready():
                child = self.spares.popleft()  # the oldest: the likeliest to have prefaulted
            else:
                try:
                    child = self._fork()
                except OSError as e:  # out of processes or memory: this call fails
                    return _error(f"cannot start a sandboxed call: {e}")
            child.deadline = self._deadline(child)
        child.calls_left -= 1
        child.request = memoryview(line)
        os.set_blocking(child.request_fd, False)  # type: ignore[arg-type]
        child.send()
        return child

    def close(self) -> None:
        """Kill and reap every child (the worker is about to exit)."""
        if self.kept is not None:
            self._retire(self.kept)
            self.kept = None
        children = self.exiting + [child.pid for child in self.spares]
        for child in self.spares:
            child.close_fds()
        self.spares.clear()
        self.exiting = []
        for pid in children:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)

    def _fork(self) -> _Child:
        fds: list[int] = []
        try:
            fds += os.pipe()
            fds += os.pipe()
            request_read, request_write, result_read, result_write = fds
            worker_pid = os.getpid()
            pid = os.fork()
        except OSError:
            for fd in fds:
                os.close(fd)
            raise
        if pid == 0:
            _child(self.handlers, self.prefault, request_read, result_write, worker_pid,
                   self.time_limit_s, self.memory_mb, self.reuse)
        os.close(request_read)
        os.close(result_write)
        try:
            pidfd: int | None = os.pidfd_open(pid)
        except (AttributeError, OSError):
            pidfd = None
        return _Child(pid, request_write, result_read, pidfd, calls_left=self.reuse)

    def _retire(self, child: _Child) -> None:
        """Kill a child that answered (reaped later, off the caller's path)."""
        child.close_fds()
        with contextlib.suppress(OSError):
            os.kill(child.pid, signal.SIGKILL)
        self.exiting.append(child.pid)

    def _keep_or_retire(self, child: _Child, result: dict) -> None:
        """After a whole result: keep a reusable child for the next call, unless the call
        failed or the child is worn (its calls, CPU time or memory; module doc)."""
        if (child.calls_left > 0 and "error" not in result and child.cpu_s() <= REUSE_CPU_S
                and child.vm_mb() <= self.max_vm_mb):
            self.kept = child
        else:
            self._retire(child)

    def _reap_exiting(self) -> None:
        """Reap the children that have exited; kill any other (a child that answered and
        kept running: SIGKILL is a no-op for one already exiting)."""
        alive = []
        for pid in self.exiting:
            if os.waitpid(pid, os.WNOHANG)[0] == 0:
                os.kill(pid, signal.SIGKILL)
                alive.append(pid)
        self.exiting = alive

    def _deadline(self, child: _Child) -> float:
        """When the call must be done: the time limit from now, less the CPU time the child
        used before its request (its setup and prefault, counted by ``RLIMIT_CPU`` too). So
        the wall-clock deadline still comes first for a busy single thread, and a call that
        runs too long is "timed out after <limit>s", as when a child was forked per call."""
        return time.monotonic() + self.time_limit_s - child.cpu_s()

    def finish(self, child: _Child) -> dict:
        """Send the rest of ``child``'s request and wait for its result, at most until its
        deadline.

        A child closes its result pipe before it exits, so a whole result is returned at once
        and the child's exit (tearing down a copy of the worker's address space) is reaped
        later, off the caller's path.
        """
        chunks: list[bytes] = []
        size = 0
        eof = False
        status: int | None = None
        failure: str | None = None
        early: dict | None = None
        try:
            while not (eof and status is not None):
                remaining = child.deadline - time.monotonic()
                if remaining <= 0:
                    failure = f"timed out after {self.time_limit_s:g}s"
                    break
                child.send()
                watch = ([] if eof else [child.result_fd]) + (
                    [child.pidfd] if child.pidfd is not None else [])
                writing = [child.request_fd] if child.request is not None else []
                wait = remaining if child.pidfd is not None else min(remaining, 0.002)
                ready = select.select(watch, writing, [], wait)[0]
                if child.result_fd in ready:
                    data = os.read(child.result_fd, 1 << 16)
                    if not data:
                        eof = True
                    size += len(data)
                    if size > MAX_REPLY_BYTES:
                        failure = _too_large(f"more than {MAX_REPLY_BYTES}")
                        break
                    chunks.append(data)
                    if (data.endswith(b"\n") and status is None
                            and (early := _whole_result(chunks)) is not None):
                        break  # a whole result line; the child is kept, or reaped later
                if status is None and (child.pidfd is None or child.pidfd in ready):
                    reaped, wait_status = os.waitpid(child.pid, os.WNOHANG)
                    if reaped:
                        status = wait_status
        finally:
            if early is not None:
                self._keep_or_retire(child, early)
            else:
                child.close_fds()
                if status is None:
                    os.kill(child.pid, signal.SIGKILL)
                    status = os.waitpid(child.pid, 0)[1]
        if early is not None:
            return early
        if failure is not None:
            return _error(failure)
        return _interpret(b"".join(chunks), status, self.time_limit_s, self.memory_mb)


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


class _Requests:
    """Request lines, read from a file descriptor with no other buffer in between, so that
    :meth:`waiting` can tell whether one has come (``sys.stdin.buffer`` may hold one that
    ``select`` cannot see)."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.buffer = b""  # read, not yet returned (bytes: nothing keeps a line once returned)
        self.eof = False

    def waiting(self, timeout_s: float = 0.0) -> bool:
        """Whether input (a request, or its end) has come, waiting at most ``timeout_s``."""
        return bool(self.buffer) or self.eof or bool(
            select.select([self.fd], [], [], timeout_s)[0])

    def readline(self, limit: int) -> bytes:
        """The next line with its newline, or its first ``limit`` bytes; ``b""`` at the end."""
        while ((end := self.buffer.find(b"\n", 0, limit)) < 0 and len(self.buffer) < limit
               and not self.eof):
            chunk = os.read(self.fd, 1 << 16)
            self.eof = not chunk
            self.buffer += chunk
        size = end + 1 if end >= 0 else limit
        line, self.buffer = self.buffer[:size], self.buffer[size:]
        return line


def _serve(requests: _Requests, handlers: dict[str, Callable[[dict], Any]],
           children: _Children, reply: Callable[[dict], None]) -> None:
    """Answer request lines until the end of input, keeping spares ready between calls.

    Spares are forked only here, where no request or result is referenced (a spare is a copy
    of this process, and must not hold another call's input or output).
    """
    while True:
        _refill(requests, children)
        line = _read_request(requests, handlers, reply)
        if line is None:
            return
        if not line:  # not a valid request, and answered as such
            continue
        child = children.start(line)
        del line
        reply({"result": child if isinstance(child, dict) else children.finish(child)})


def _refill(requests: _Requests, children: _Children) -> None:
    """Fork spares up to :data:`SPARES`, one at a time, while no request is waiting: a fork
    in front of a request would be on its call's path. While a spare is left, the next call of
    a turn, due within :data:`BURST_GAP_S`, goes first; with none left, it would need a fork
    anyway."""
    wait = BURST_GAP_S
    while children.ready() < SPARES:
        if requests.waiting(wait if children.spares else 0.0) or not children.fork_spare():
            return
        wait = 0.0


def _read_request(requests: _Requests, handlers: dict[str, Callable[[dict], Any]],
                  reply: Callable[[dict], None]) -> bytes | None:
    """The next request line, checked; ``b""`` for one that is not valid (answered here with
    its error), ``None`` at the end of input."""
    line = requests.readline(MAX_REQUEST_BYTES + 1)
    if not line:
        return None
    if not line.endswith(b"\n"):  # too long: skip to the end of that line
        while line and not line.endswith(b"\n"):
            line = requests.readline(1 << 16)
        reply({"result": _error(f"request longer than {MAX_REQUEST_BYTES} bytes")})
        return b""
    try:
        request = json.loads(line)
        name, payload = request["name"], request["payload"]
    except (ValueError, TypeError, KeyError):
        reply({"result": _error("malformed request")})
        return b""
    if not isinstance(name, str) or name not in handlers:
        known = ", ".join(sorted(handlers))
        reply({"result": _error(f"unknown handler {name!r}; known: {known}")})
        return b""
    if not isinstance(payload, dict):
        reply({"result": _error("payload must be a JSON object")})
        return b""
    return line


def _vm_size_mb(status: str = "/proc/self/status") -> float:
    try:
        with open(status) as f:
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
        prefault = list(getattr(module, "PREFAULT", ()))
        reuse = getattr(module, "REUSE", 1)
        if not isinstance(reuse, int) or isinstance(reuse, bool) or reuse < 1:
            raise TypeError(f"{args.handler_module}.REUSE must be an int >= 1, got {reuse!r}")
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
    children = _Children(handlers, prefault, args.time_limit, args.memory_mb, reuse, vm_mb)
    try:
        while children.ready() < SPARES and children.fork_spare():
            pass  # the first calls' children, forked before this worker says it is ready
        reply({"ready": True, "handlers": sorted(handlers), "vm_mb": round(vm_mb, 1)})
        _serve(_Requests(sys.stdin.fileno()), handlers, children, reply)
    finally:
        children.close()
    return 0


if __name__ == "__main__":
    # Started by path, Python put this file's folder (gymrl/) first on sys.path: drop it, so
    # that gymrl's modules cannot shadow top-level ones.
    if sys.path and os.path.abspath(sys.path[0]) == os.path.dirname(os.path.abspath(__file__)):
        del sys.path[0]
    sys.exit(main())
