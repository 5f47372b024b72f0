"""The cgroup v2 (unified hierarchy) driver.

One directory, ``<root>/pybox/<id>``, holds the container. Two rules of the
unified hierarchy shape the code (kernel docs admin-guide/cgroup-v2.rst):

- "Top-down Constraint": a controller's files exist in a cgroup only if
  the parent enabled it in ``cgroup.subtree_control``, so every ancestor,
  from the root down to the container's parent, enables the controllers;
- "No Internal Process Constraint": a non-root cgroup that enables
  controllers for its children cannot hold processes itself, so processes
  only ever go into the leaf (``pybox/`` stays empty).

Device rules are not enforced: v2 has no devices.allow, only eBPF programs
of type BPF_CGROUP_DEVICE (runc libcontainer/cgroups/devices/ebpf_linux.go),
which pybox does not build. ``device_rules_enforced`` is therefore False and
the runtime drops CAP_MKNOD instead, so a container cannot create a device
node; devices it is given (bind mounts) stay usable.
"""

from __future__ import annotations

import errno
import logging
import os
import signal
from pathlib import Path

from pybox.runtime.cgroups.base import (
    CPU_PERIOD_US,
    MAX_CPU_SHARES,
    MIN_CPU_SHARES,
    CgroupError,
    CgroupFS,
    Setting,
    cgroup_errors,
    check_path,
    cpu_quota,
    destroy_with_retry,
    parse_flat_keyed,
    path_steps,
    pids_max,
    read_pids,
    remove_tree,
    removed_on_error,
    require_cpuset_within,
    signal_pids,
    swap_total,
    validate_limits,
)
from pybox.runtime.cgroups.devices import DevicePolicy
from pybox.runtime.spec import Limits

__all__ = ["V2Cgroup", "CONTROLLERS", "translate", "cpu_weight"]

log = logging.getLogger(__name__)

# The controllers pybox enables for its cgroups, in the order written to
# cgroup.subtree_control; io is left alone (no --blkio-* flags yet).
CONTROLLERS = ("memory", "pids", "cpu", "cpuset")
_SWAP = "memory.swap.max"


def cpu_weight(shares: int) -> int:
    """``cpu.weight`` for ``--cpu-shares``: runc's linear map of [2, 262144] onto [1, 10000].

    runc libcontainer/cgroups ConvertCPUSharesToCgroupV2Value up to runc
    1.3.1. runc 1.3.2 (opencontainers/cgroups#20) switched to a non-linear
    map so that the default 1024 becomes the default weight 100, where this
    one gives 39.
    """
    return 1 + ((shares - MIN_CPU_SHARES) * 9999) // (MAX_CPU_SHARES - MIN_CPU_SHARES)


def translate(limits: Limits) -> tuple[Setting, ...]:
    """The v2 files and values for ``limits`` (runc libcontainer/cgroups/fs2, cgroup-v2.rst)."""
    settings = []
    if limits.memory:
        settings.append(Setting(file="memory.max", value=str(limits.memory), flag="--memory"))
        # v2 limits swap alone, not memory+swap as --memory-swap counts it
        # (runc ConvertMemorySwapToCgroupV2Value).
        total = swap_total(limits)
        swap = "max" if total == -1 else str(total - limits.memory)
        settings.append(Setting(file=_SWAP, value=swap, flag="--memory-swap"))
    if limits.cpus:
        settings.append(Setting(file="cpu.max", value=f"{cpu_quota(limits.cpus)} {CPU_PERIOD_US}", flag="--cpus"))
    if limits.cpu_shares:
        settings.append(Setting(file="cpu.weight", value=str(cpu_weight(limits.cpu_shares)), flag="--cpu-shares"))
    if limits.cpuset_cpus is not None:
        settings.append(Setting(file="cpuset.cpus", value=limits.cpuset_cpus, flag="--cpuset-cpus"))
    if limits.pids is not None:
        settings.append(Setting(file="pids.max", value=pids_max(limits.pids), flag="--pids-limit"))
    return tuple(settings)


class V2Cgroup:
    """A container's cgroup in the unified hierarchy mounted at ``root``.

    See :class:`~pybox.runtime.cgroups.base.Cgroup` for the contract.
    """

    def __init__(self, path: str, root: Path, *, fs: CgroupFS | None = None) -> None:
        self.path = check_path(path)
        self._root = root
        self._dir = root / path
        self._fs = fs or CgroupFS()

    @property
    def device_rules_enforced(self) -> bool:
        """Always False: v2 device control needs a BPF program pybox does not load (see the module docstring)."""
        return False

    def create(self, limits: Limits, *, devices: DevicePolicy) -> None:
        validate_limits(limits, host_cpus=len(os.sched_getaffinity(0)))
        settings = translate(limits)
        available = self._read_set(self._root / "cgroup.controllers")
        for setting in settings:
            if setting.controller not in available:
                raise CgroupError(
                    f"{setting.flag} needs the {setting.controller} cgroup controller, which cgroup v2 does not offer"
                    f" here (available: {' '.join(sorted(available)) or 'none'})"
                )
        with removed_on_error(self):
            self._make([c for c in CONTROLLERS if c in available])
            for setting in settings:
                self._apply(setting)
        if not devices.allow_all:
            log.debug("cgroup v2: device policy for %s not enforced (no BPF device program)", self.path)

    def add_process(self, pid: int) -> None:
        # Plain writes only: the child runs this between fork and unshare.
        procs = self._dir / "cgroup.procs"
        with cgroup_errors(f"cannot move process {pid} into {procs}"):
            self._fs.write(procs, str(pid))

    def oom_killed(self) -> bool:
        """True if ``memory.events`` counts an ``oom_kill``; False without the memory controller."""
        if "memory" not in self._read_set(self._dir / "cgroup.controllers"):
            return False
        events = self._dir / "memory.events"
        with cgroup_errors(f"cannot read {events}"):
            return parse_flat_keyed(self._fs.read(events)).get("oom_kill", 0) > 0

    def pids(self) -> list[int]:
        return sorted(read_pids(self._fs, self._dir))

    def kill_all(self, sig: int) -> None:
        kill = self._dir / "cgroup.kill"
        if sig == signal.SIGKILL and kill.exists():
            # cgroup.kill (kernel 5.14) SIGKILLs the whole subtree in the
            # kernel, so a process forking meanwhile cannot escape.
            with cgroup_errors(f"cannot write {kill}"):
                self._fs.write(kill, "1")
        else:
            signal_pids(self.pids(), sig)

    def destroy(self, *, timeout: float = 5.0) -> None:
        destroy_with_retry(
            lambda: [] if remove_tree(self._fs, self._dir) else [self._dir],
            lambda: self.kill_all(signal.SIGKILL),
            timeout=timeout,
            what=self.path,
        )

    def exists(self) -> bool:
        return self._dir.is_dir()

    def _read_set(self, path: Path) -> set[str]:
        with cgroup_errors(f"cannot read {path}"):
            return set(self._fs.read(path).split())

    def _make(self, controllers: list[str]) -> None:
        """Create each directory down to the leaf, enabling ``controllers`` in every ancestor first."""
        steps = path_steps(self._root, self.path)
        for parent, directory in zip([self._root, *steps[:-1]], steps, strict=True):
            self._enable(parent, controllers)
            with cgroup_errors(f"cannot create cgroup {directory}"):
                self._fs.mkdir(directory)

    def _enable(self, directory: Path, controllers: list[str]) -> None:
        subtree = directory / "cgroup.subtree_control"
        missing = [c for c in controllers if c not in self._read_set(subtree)]
        if not missing:
            return
        line = " ".join(f"+{c}" for c in missing)
        try:
            self._fs.write(subtree, line)
        except OSError as e:
            if e.errno == errno.EBUSY:
                raise CgroupError(
                    f"cannot enable {line} in {directory}: it holds processes, and cgroup v2 lets only cgroups"
                    " without processes hand controllers to their children"
                ) from e
            raise CgroupError(f"cannot write {line!r} to {subtree}: {e.strerror}") from e

    def _apply(self, setting: Setting) -> None:
        path = self._dir / setting.file
        if setting.file == _SWAP and not path.exists():
            log.warning("swap accounting is off in this kernel (no %s): swap is not limited", _SWAP)
            return
        if setting.file == "cpuset.cpus":
            effective = self._dir.parent / "cpuset.cpus.effective"
            with cgroup_errors(f"cannot read {effective}"):
                require_cpuset_within(setting.value, self._fs.read(effective))
        with cgroup_errors(f"{setting.flag}: cannot write {setting.value} to {path}"):
            self._fs.write(path, setting.value)
