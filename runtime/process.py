"""The fork/unshare choreography of DESIGN section 4, and waiting for the container.

    parent (pybox)                child                    init (PID 1 of the container)
    cgroup created, subreaper
    fork ───────────────────────> joins the cgroup
                                  unshare ns..., cgroup last
                                  fork ──────────────────> waits on the release pipe
                                  reports init's pid, exits
    network for init's netns
    release ─────────────────────────────────────────────> setsid, rootfs, pivot_root,
                                                           hostname, lo up, privileges,
                                                           signals reset, exec
    exec error? (close-on-exec pipe) <──────────────────── only if exec failed
    forwards signals, waits

Every path of a forked process ends in ``os._exit``: a child must never
return into the CLI's stack.
"""

from __future__ import annotations

import errno
import json
import os
import resource
import signal
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from pybox.errors import PyboxError
from pybox.runtime import linux as L
from pybox.runtime.linux import Linux
from pybox.runtime.rootfs import pivot, prepare_rootfs
from pybox.runtime.security import drop_privileges, reset_signals
from pybox.runtime.spec import ContainerSpec
from pybox.runtime.terminal import open_pty, raw_terminal, relay

__all__ = ["ExecFailed", "Exit", "run_container", "FORWARDED_SIGNALS", "EXIT_CANNOT_EXECUTE", "EXIT_NOT_FOUND"]

EXIT_CANNOT_EXECUTE = 126
EXIT_NOT_FOUND = 127
FORWARDED_SIGNALS = (
    signal.SIGINT,
    signal.SIGTERM,
    signal.SIGHUP,
    signal.SIGQUIT,
    signal.SIGUSR1,
    signal.SIGUSR2,
    signal.SIGWINCH,
)


class ExecFailed(PyboxError):
    """The container started, but its command could not be executed (126) or found (127)."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.exit_code = code


@dataclass(frozen=True, kw_only=True)
class Exit:
    code: int  # the container's status, or 128 + signal
    signal: int | None = None
    pid: int = 0


def _namespace_flags(spec: ContainerSpec) -> int:
    flags = L.CLONE_NEWNS | L.CLONE_NEWUTS | L.CLONE_NEWIPC | L.CLONE_NEWPID
    if spec.network == "none":
        flags |= L.CLONE_NEWNET
    return flags


def _child(linux: Linux, spec: ContainerSpec, join_cgroup: Callable[[int], None], report_w: int,
           init: Callable[[], None]) -> None:
    """Runs in the first fork: namespaces, then the fork that makes PID 1."""
    try:
        join_cgroup(os.getpid())
        linux.unshare(_namespace_flags(spec))
        # The cgroup namespace's root is the cgroup the process is in when it
        # unshares: join first, unshare last.
        linux.unshare(L.CLONE_NEWCGROUP)
        pid = os.fork()
        if pid == 0:
            os.close(report_w)
            init()  # never returns
        os.write(report_w, json.dumps({"pid": pid}).encode())
        os._exit(0)
    except BaseException as e:  # noqa: BLE001 - reported to the parent, then this process ends
        try:
            os.write(report_w, json.dumps({"error": f"{type(e).__name__}: {e}"}).encode())
        finally:
            os._exit(1)


@dataclass(frozen=True)
class _Stdio:
    """What PID 1's standard streams are: a terminal's slave end, or /dev/null for stdin, or the caller's."""

    stdin_null: int | None = None
    tty_slave: int | None = None
    console: str | None = None  # the slave's path, bind-mounted at /dev/console
    output: int | None = None  # where stdout and stderr go instead of the caller's


def _attach_stdio(linux: Linux, stdio: _Stdio) -> None:
    if stdio.tty_slave is not None:
        for target in (0, 1, 2):
            os.dup2(stdio.tty_slave, target)
        # The new session (setsid) takes the terminal as its controlling one.
        linux.set_controlling_terminal(0)
        os.close(stdio.tty_slave)
        return
    if stdio.stdin_null is not None:
        os.dup2(stdio.stdin_null, 0)
    if stdio.output is not None:
        os.dup2(stdio.output, 1)
        os.dup2(stdio.output, 2)


def _init(linux: Linux, spec: ContainerSpec, merged: Path, release_r: int, error_w: int, stdio: _Stdio,
          load_seccomp: Callable[[], None] | None) -> None:
    """PID 1: wait for the parent, build the rootfs, drop privileges, exec. Never returns."""
    try:
        if not os.read(release_r, 1):
            os._exit(1)  # the parent gave up before releasing us
        os.close(release_r)
        linux.setsid()
        _attach_stdio(linux, stdio)
        prepare_rootfs(linux, spec, merged, console=stdio.console)
        pivot(linux, merged, readonly=spec.readonly_rootfs)
        linux.sethostname(spec.hostname)
        if spec.network == "none":
            linux.set_link_up("lo")
        for limit in spec.rlimits:
            resource.setrlimit(limit.resource, (limit.soft, limit.hard))
        drop_privileges(linux, spec.security, spec.process.user, load_seccomp=load_seccomp)
        os.chdir(spec.process.cwd)
        reset_signals(linux)
        env = dict(e.split("=", 1) for e in spec.process.env)
        os.execvpe(spec.process.args[0], list(spec.process.args), env)
    except OSError as e:
        _report_exec_error(error_w, spec, e)
    except BaseException as e:  # noqa: BLE001
        os.write(error_w, json.dumps({"code": 125, "message": f"container init failed: {type(e).__name__}: {e}"})
                 .encode())
    os._exit(125)


def _seccomp_loader(spec: ContainerSpec, linux: Linux, cache: Path | None) -> Callable[[], None] | None:
    """The filter's BPF program, made (or found in ``cache``) now, loaded by PID 1 later.

    libseccomp's program generation costs more than the rest of a container's
    start; the program depends only on the filter, so it is kept by key.
    """
    if spec.security.seccomp is None:
        return None
    from pybox.runtime import seccomp

    flt = spec.security.seccomp
    path = cache / f"{seccomp.filter_key(flt)}.bpf" if cache is not None else None
    program = None
    if path is not None:
        try:
            program = path.read_bytes()
        except FileNotFoundError:
            pass
    if program is None:
        program = seccomp.compile_bpf(flt)
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f".{path.name}.{os.getpid()}")
            tmp.write_bytes(program)
            os.replace(tmp, path)

    def apply() -> None:
        linux.load_seccomp_program(program)

    return apply


def _report_exec_error(error_w: int, spec: ContainerSpec, e: OSError) -> None:
    command = spec.process.args[0]
    if e.errno in (errno.ENOENT, errno.ENOTDIR):
        code, message = EXIT_NOT_FOUND, f"{command}: executable file not found in $PATH"
    elif e.errno in (errno.EACCES, errno.EPERM, errno.ENOEXEC, errno.EISDIR):
        code, message = EXIT_CANNOT_EXECUTE, f"{command}: permission denied (not executable)"
    else:
        code, message = 125, f"container init failed: {e}"
    os.write(error_w, json.dumps({"code": code, "message": message}).encode())
    os._exit(code)


def _read_all(fd: int) -> bytes:
    chunks = []
    while chunk := os.read(fd, 65536):
        chunks.append(chunk)
    return b"".join(chunks)


def _exit_of(status: int, pid: int) -> Exit:
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        return Exit(code=128 + sig, signal=sig, pid=pid)
    return Exit(code=os.WEXITSTATUS(status), pid=pid)


def _wait_status(pid: int) -> Exit:
    while True:
        try:
            _, status = os.waitpid(pid, 0)
        except ChildProcessError:
            return Exit(code=125, pid=pid)
        if os.WIFEXITED(status) or os.WIFSIGNALED(status):
            return _exit_of(status, pid)


def _reap_orphans() -> None:
    """As a subreaper, pybox may inherit exited strays; collect them without blocking."""
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def run_container(
    spec: ContainerSpec,
    merged: Path,
    *,
    join_cgroup: Callable[[int], None],
    on_started: Callable[[int], None] = lambda pid: None,
    linux: Linux | None = None,
    seccomp_cache: Path | None = None,
    output: int | None = None,
    stop_on_interrupt: bool = False,
) -> Exit:
    """Run the container to its end; signals sent to pybox meanwhile go to it.

    With ``stop_on_interrupt`` (a build's RUN), SIGINT, SIGTERM and SIGHUP
    kill the container instead and raise KeyboardInterrupt once it is gone:
    a shell as PID 1 ignores them, and a build must stop at Ctrl-C.
    """
    linux = linux or Linux()
    # fork() copies only the calling thread: locks other threads hold stay
    # locked forever in the child (DESIGN section 4).
    if threading.active_count() != 1:
        raise PyboxError(f"internal error: {threading.active_count()} threads alive before fork")
    linux.set_child_subreaper()
    report_r, report_w = os.pipe2(os.O_CLOEXEC)
    release_r, release_w = os.pipe2(os.O_CLOEXEC)
    error_r, error_w = os.pipe2(os.O_CLOEXEC)
    master = None
    if spec.process.terminal:
        master, slave, console = open_pty()
        stdio = _Stdio(tty_slave=slave, console=console)
    elif not spec.process.stdin_open:
        stdio = _Stdio(stdin_null=os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC), output=output)
    else:
        stdio = _Stdio(output=output)
    sys.stdout.flush()
    sys.stderr.flush()

    # Everything PID 1 needs must be loaded before pivot_root hides the host's files.
    load_seccomp = _seccomp_loader(spec, linux, seccomp_cache)

    def init() -> None:
        if master is not None:
            os.close(master)
        _init(linux, spec, merged, release_r, error_w, stdio, load_seccomp)

    child = os.fork()
    if child == 0:
        # The child keeps report_w; init (forked from it) keeps release_r and error_w.
        for fd in (report_r, release_w, error_r):
            os.close(fd)
        _child(linux, spec, join_cgroup, report_w, init)
    os.close(report_w)
    os.close(release_r)
    os.close(error_w)
    for fd in (stdio.stdin_null, stdio.tty_slave):
        if fd is not None:
            os.close(fd)
    try:
        report = json.loads(_read_all(report_r) or b"{}")
        os.close(report_r)
        _wait_status(child)
        if "pid" not in report:
            raise PyboxError(f"cannot start the container: {report.get('error', 'the setup process died')}")
        pid = report["pid"]
        on_started(pid)
        interrupted: list[int] = []
        forward = _forward_signals(pid, interrupted if stop_on_interrupt else None)
        try:
            os.write(release_w, b"1")
            os.close(release_w)
            release_w = -1
            failure = _read_all(error_r)
            os.close(error_r)
            error_r = -1
            if master is not None and not failure:
                with raw_terminal(sys.stdin.fileno()):
                    status = relay(master, pid, stdin_open=spec.process.stdin_open, wait=os.waitpid)
                result = _exit_of(status, pid)
            else:
                result = _wait_status(pid)
        finally:
            forward()
        _reap_orphans()
        if interrupted:
            raise KeyboardInterrupt
        if failure:
            doc = json.loads(failure)
            raise ExecFailed(doc["message"], doc["code"])
        return result
    finally:
        for fd in (release_w, error_r, -1 if master is None else master):
            if fd >= 0:
                os.close(fd)


_STOPPING = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


def _forward_signals(pid: int, interrupted: list[int] | None = None) -> Callable[[], None]:
    """Send the signals pybox receives to the container; returns a function restoring the old handlers.

    The handlers only forward: stopping is the container's decision (DESIGN
    section 4). Given ``interrupted``, a stopping signal is recorded there
    and kills the container instead.
    """

    def forward(signum: int, frame: object) -> None:
        if interrupted is not None and signum in _STOPPING:
            interrupted.append(signum)
            signum = signal.SIGKILL
        try:
            os.kill(pid, signum)
        except ProcessLookupError:
            pass

    previous = {sig: signal.signal(sig, forward) for sig in FORWARDED_SIGNALS}

    def restore() -> None:
        for sig, handler in previous.items():
            signal.signal(sig, handler)

    return restore
