"""The cgroup driver interface, its error, and what the v1 and v2 drivers share.

A container's limits go through one interface (:class:`Cgroup`) with two
drivers, ``v1.py`` and ``v2.py`` (DESIGN.md section 8, rule 4). Both turn
:class:`~pybox.runtime.spec.Limits` into file values with pure functions
first and write them once; the Docker semantics (defaults, minimums) live
here so the two drivers cannot disagree about them.
"""

from __future__ import annotations

import errno
import logging
import os
import re
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from pybox.errors import PyboxError

if TYPE_CHECKING:
    from pybox.runtime.cgroups.devices import DevicePolicy
    from pybox.runtime.spec import Limits

__all__ = [
    "CgroupError",
    "Cgroup",
    "CgroupFS",
    "Setting",
    "CPU_PERIOD_US",
    "MIN_MEMORY",
    "MIN_CPU_SHARES",
    "MAX_CPU_SHARES",
    "check_path",
    "path_steps",
    "cgroup_errors",
    "removed_on_error",
    "parse_flat_keyed",
    "validate_limits",
    "swap_total",
    "cpu_quota",
    "pids_max",
    "parse_cpuset",
    "require_cpuset_within",
    "read_pids",
    "signal_pids",
    "remove_tree",
    "destroy_with_retry",
]

log = logging.getLogger(__name__)

# Docker's --cpus: moby daemon/daemon_unix.go getCPUResources sets the CFS
# period to 100 ms and the quota to NanoCPUs * period / 1e9.
CPU_PERIOD_US = 100_000
# moby daemon/daemon_unix.go linuxMinMemory: "not a kernel limit ... to
# account for overhead during startup".
MIN_MEMORY = 6 * 1024 * 1024
# The kernel's range for cpu.shares (kernel/sched/sched.h MIN_SHARES and
# MAX_SHARES), which moby also uses as linuxMinCPUShares/linuxMaxCPUShares.
MIN_CPU_SHARES = 2
MAX_CPU_SHARES = 262_144
# The kernel refuses a CFS quota below 1 ms (kernel/sched/core.c, min_cfs_quota_period).
_MIN_CPU_QUOTA_US = 1_000
# The largest CONFIG_NR_CPUS of any architecture (x86 MAXSMP); bounds the
# set a --cpuset-cpus range can expand to.
_MAX_CPUS = 8192
_CPUSET = re.compile(r"\d+(-\d+)?(,\d+(-\d+)?)*")


class CgroupError(PyboxError):
    """A cgroup could not be created, configured, joined or removed, or a limit is invalid."""


class Cgroup(Protocol):
    """One container's cgroup, in every hierarchy the host mounts.

    The runtime's process model (DESIGN.md section 4) calls these from a
    single-threaded parent, and :meth:`add_process` also from the child
    between fork and ``unshare(CLONE_NEWCGROUP)``. Errors are CgroupError.
    """

    path: str
    """The path relative to each hierarchy's root, e.g. ``pybox/<64 hex>``."""

    @property
    def device_rules_enforced(self) -> bool:
        """Whether :meth:`create` makes the kernel enforce the device policy.

        True for v1 (the devices controller). False for v2, where the kernel
        needs a BPF_CGROUP_DEVICE program that pybox does not build; the
        runtime then drops CAP_MKNOD so a container cannot make device nodes.
        """
        ...

    def create(self, limits: Limits, *, devices: DevicePolicy) -> None:
        """Make the cgroup and its parents and write ``limits`` and the device policy.

        Limits are validated before anything is created; on a later error the
        caller calls :meth:`destroy`. Calling it again on an existing cgroup
        writes the values again.
        """
        ...

    def add_process(self, pid: int) -> None:
        """Move ``pid`` into the cgroup (``cgroup.procs`` of every hierarchy).

        The child calls it with its own pid before unsharing the cgroup
        namespace, whose root is fixed at unshare time.
        """
        ...

    def oom_killed(self) -> bool:
        """Whether the kernel OOM-killed a process of the cgroup; ask before :meth:`destroy`."""
        ...

    def pids(self) -> list[int]:
        """Every process in the cgroup and the cgroups below it, sorted."""
        ...

    def kill_all(self, sig: int) -> None:
        """Send ``sig`` to every process in the cgroup."""
        ...

    def destroy(self, *, timeout: float = 5.0) -> None:
        """Remove the cgroup (and cgroups below it) from every hierarchy.

        A cgroup with processes cannot be removed (EBUSY): after the first
        failed try every process left is SIGKILLed, and removal is retried
        until ``timeout`` seconds have passed, then CgroupError. Removing a
        cgroup that does not exist is not an error. Parent directories such
        as ``pybox/`` stay.
        """
        ...

    def exists(self) -> bool:
        """Whether the cgroup's directory exists in any hierarchy."""
        ...


class CgroupFS:
    """File operations on cgroupfs.

    The drivers do all their I/O through this object so the v2 tests can
    pass a fake that behaves like the kernel on a plain directory (interface
    files appear on mkdir and go with rmdir, which a real directory cannot do).
    Methods raise OSError.
    """

    def read(self, path: Path) -> str:
        return path.read_text()

    def write(self, path: Path, value: str) -> None:
        """Write ``value`` in one write(2), as cgroupfs takes one value (or one device rule) per write.

        No O_CREAT: cgroupfs has no files to create, so a missing file (a
        controller not enabled, a feature the kernel lacks) is ENOENT, as in
        runc's fscommon.WriteFile.
        """
        fd = os.open(path, os.O_WRONLY | os.O_TRUNC | os.O_CLOEXEC)
        try:
            os.write(fd, value.encode())
        finally:
            os.close(fd)

    def mkdir(self, path: Path) -> None:
        """Create the cgroup ``path``; an existing one is fine."""
        with suppress(FileExistsError):
            os.mkdir(path)

    def rmdir(self, path: Path) -> None:
        os.rmdir(path)


@dataclass(frozen=True, kw_only=True)
class Setting:
    """A value for one cgroup file, with the flag it comes from for error messages."""

    file: str
    value: str
    flag: str

    @property
    def controller(self) -> str:
        return self.file.split(".", 1)[0]


def check_path(path: str) -> str:
    """``path`` if it is a relative cgroup path without ``.``/``..`` or empty components."""
    if not path or path.startswith("/") or any(part in ("", ".", "..") for part in path.split("/")):
        raise CgroupError(f"cgroup path must be relative, without '.', '..' or empty components: {path!r}")
    return path


def path_steps(root: Path, path: str) -> list[Path]:
    """Each directory from below ``root`` down to ``root/path``: ``root/a``, ``root/a/b``."""
    steps, current = [], root
    for part in path.split("/"):
        current = current / part
        steps.append(current)
    return steps


@contextmanager
def cgroup_errors(what: str) -> Iterator[None]:
    """Turn an OSError inside the block into CgroupError("<what>: <reason>")."""
    try:
        yield
    except OSError as e:
        raise CgroupError(f"{what}: {e.strerror or e}") from e


@contextmanager
def removed_on_error(cgroup: Cgroup) -> Iterator[None]:
    """Destroy ``cgroup`` if the block fails and the cgroup did not exist before it.

    So a create that fails half-way (a bad --cpuset-cpus, a missing
    controller) leaves nothing, while a failed re-create of a running
    container's cgroup does not kill the container.
    """
    existed = cgroup.exists()
    try:
        yield
    except BaseException:
        if not existed:
            try:
                cgroup.destroy()
            except CgroupError as e:
                log.warning("could not remove the half-made cgroup %s: %s", cgroup.path, e)
        raise


def parse_flat_keyed(text: str) -> dict[str, int]:
    """A "flat keyed" file (``key value`` per line, kernel docs cgroup-v2.rst "Conventions")."""
    fields = {}
    for line in text.splitlines():
        key, _, value = line.partition(" ")
        if value.strip().lstrip("-").isdigit():
            fields[key] = int(value)
    return fields


def validate_limits(limits: Limits, *, host_cpus: int) -> None:
    """Reject what Docker rejects, naming the flag; 0 means "not set" as in Docker.

    ``host_cpus`` is the number of CPUs this process may run on (Docker's
    "Range of CPUs is from 0.01 to N" check in daemon/daemon_unix.go).
    """
    _validate_memory(limits)
    if limits.cpus and not (cpu_quota(limits.cpus) >= _MIN_CPU_QUOTA_US and limits.cpus <= host_cpus):
        raise CgroupError(f"--cpus {limits.cpus:g}: must be between 0.01 and {host_cpus} (the CPUs available)")
    if limits.cpu_shares and not MIN_CPU_SHARES <= limits.cpu_shares <= MAX_CPU_SHARES:
        raise CgroupError(
            f"--cpu-shares {limits.cpu_shares}: must be between {MIN_CPU_SHARES} and {MAX_CPU_SHARES}"
            " (0 for the default)"
        )
    if limits.cpuset_cpus is not None:
        parse_cpuset(limits.cpuset_cpus)
    if limits.pids is not None and limits.pids < -1:
        raise CgroupError(f"--pids-limit {limits.pids}: must be positive, or 0 or -1 for unlimited")


def _validate_memory(limits: Limits) -> None:
    memory, swap = limits.memory or 0, limits.memory_swap or 0
    if memory and memory < MIN_MEMORY:
        raise CgroupError(f"--memory {memory}: the minimum is 6 MiB ({MIN_MEMORY} bytes)")
    if swap > 0 and not memory:  # -1 alone asks for nothing
        raise CgroupError("--memory-swap needs --memory: it limits memory and swap together")
    if swap < -1 or 0 < swap < memory:
        raise CgroupError(
            f"--memory-swap {swap}: must be at least --memory ({memory}), as it counts memory plus swap;"
            " -1 for unlimited swap"
        )


def swap_total(limits: Limits) -> int | None:
    """Docker's memory+swap limit in bytes, -1 for unlimited swap, None for no limit.

    With only --memory, Docker allows as much swap as memory: "By default,
    MemorySwap is set to twice the size of Memory" (moby
    daemon/daemon_unix.go, adaptContainerSettings).
    """
    if not limits.memory:
        return None
    return limits.memory_swap or 2 * limits.memory


def cpu_quota(cpus: float) -> int:
    """CFS quota in microseconds per CPU_PERIOD_US for ``--cpus``; rounded, as 0.29 * 100000 is 28999.99..."""
    return round(cpus * CPU_PERIOD_US)


def pids_max(pids: int) -> str:
    """The ``pids.max`` value for ``--pids-limit``: 0 and -1 mean unlimited, as in Docker."""
    return "max" if pids <= 0 else str(pids)


def parse_cpuset(text: str, *, flag: str = "--cpuset-cpus") -> frozenset[int]:
    """The CPUs of a cpuset list such as ``0-2,4`` (kernel docs admin-guide/cgroup-v1/cpusets.rst)."""
    if not _CPUSET.fullmatch(text):
        raise CgroupError(f"{flag} {text!r}: expected CPU numbers and ranges such as 0-2,4")
    cpus: set[int] = set()
    for part in text.split(","):
        first, _, last = part.partition("-")
        low, high = int(first), int(last or first)
        if low > high:
            raise CgroupError(f"{flag} {text!r}: the range {part} runs backwards")
        if high >= _MAX_CPUS:
            raise CgroupError(f"{flag} {text!r}: CPU {high} is beyond any kernel's limit of {_MAX_CPUS}")
        cpus.update(range(low, high + 1))
    return frozenset(cpus)


def require_cpuset_within(requested: str, available: str) -> None:
    """Fail unless every CPU of ``requested`` is in the parent's ``available`` list.

    The kernel would answer EINVAL; this says which CPUs (Docker: "Requested
    CPUs are not available").
    """
    have = parse_cpuset(available.strip(), flag="available CPUs") if available.strip() else frozenset()
    missing = parse_cpuset(requested) - have
    if missing:
        listed = ",".join(str(cpu) for cpu in sorted(missing))
        raise CgroupError(
            f"--cpuset-cpus {requested}: CPUs {listed} are not available (available: {available.strip() or 'none'})"
        )


def read_pids(fs: CgroupFS, top: Path) -> set[int]:
    """The pids in ``cgroup.procs`` of ``top`` and every cgroup below it; none if ``top`` is gone."""
    pids: set[int] = set()
    for dirpath, _, _ in os.walk(top):
        try:
            text = fs.read(Path(dirpath, "cgroup.procs"))
        except FileNotFoundError:
            continue  # removed while walking
        except OSError as e:
            raise CgroupError(f"cannot list the processes of {dirpath}: {e.strerror}") from e
        pids.update(int(line) for line in text.split())
    return pids


def signal_pids(pids: Iterable[int], sig: int) -> None:
    """Send ``sig`` to each pid; one that has exited meanwhile is skipped."""
    for pid in pids:
        with suppress(ProcessLookupError):
            os.kill(pid, sig)


def remove_tree(fs: CgroupFS, top: Path) -> bool:
    """rmdir ``top`` and the cgroups below it, deepest first; True once gone, False while busy.

    cgroupfs refuses to remove a cgroup that has processes or child cgroups
    with EBUSY (kernel/cgroup/cgroup.c, cgroup_destroy_locked); its
    interface files go with the directory. runc's RemovePath also removes
    children first, as a container may have made sub-cgroups.
    """
    for dirpath, _, _ in os.walk(top, topdown=False):
        try:
            fs.rmdir(Path(dirpath))
        except FileNotFoundError:
            continue
        except OSError as e:
            if e.errno == errno.EBUSY:
                return False
            raise CgroupError(f"cannot remove cgroup {dirpath}: {e.strerror}") from e
    return True


def destroy_with_retry(
    remove: Callable[[], list[Path]],
    kill: Callable[[], None],
    *,
    timeout: float,
    what: str,
) -> None:
    """Call ``remove`` (which returns the directories still busy) until nothing is left.

    After each failed try, ``kill`` SIGKILLs what is left: a process can
    fork between listing and killing, and a killed one leaves the cgroup
    only when the kernel has finished its exit. Backoff as in runc's
    RemovePaths (10 ms, doubling).
    """
    deadline = time.monotonic() + timeout
    delay = 0.01
    while busy := remove():
        if time.monotonic() >= deadline:
            raise CgroupError(
                f"cannot remove cgroup {what}: still busy after {timeout:g}s: " + ", ".join(map(str, busy))
            )
        kill()
        time.sleep(delay)
        delay = min(delay * 2, 0.2)
