"""The cgroup v1 driver (also used on hybrid hosts).

v1 has one hierarchy per mount, so a container's cgroup is one directory in
each: ``<mount>/pybox/<id>`` under cpu, cpuacct, memory, ..., the named
``name=systemd`` hierarchy and, on a hybrid host, the unified one, as
runc's fs driver does (libcontainer/cgroups/fs). Paths are relative to each
hierarchy's root, like Docker's ``/docker/<id>``, not to pybox's own cgroup.
"""

from __future__ import annotations

import logging
import os
import signal
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from pybox.runtime.cgroups.base import (
    CPU_PERIOD_US,
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
from pybox.runtime.cgroups.discover import Hierarchy
from pybox.runtime.spec import Limits

__all__ = ["V1Cgroup", "translate"]

log = logging.getLogger(__name__)

_MEMORY = "memory.limit_in_bytes"
_MEMSW = "memory.memsw.limit_in_bytes"
_CPUSET_FILES = ("cpuset.cpus", "cpuset.mems")
_FREEZE_TIMEOUT = 1.0


def translate(limits: Limits) -> tuple[Setting, ...]:
    """The v1 files and values for ``limits`` (runc libcontainer/cgroups/fs, kernel docs cgroup-v1/)."""
    settings = []
    if limits.memory:
        settings.append(Setting(file=_MEMORY, value=str(limits.memory), flag="--memory"))
        # memsw limits memory plus swap together (cgroup-v1/memory.rst, 2.4), the unit of --memory-swap.
        settings.append(Setting(file=_MEMSW, value=str(swap_total(limits)), flag="--memory-swap"))
    if limits.cpus:
        # Period before quota, as runc's fs/cpu.go writes them.
        settings.append(Setting(file="cpu.cfs_period_us", value=str(CPU_PERIOD_US), flag="--cpus"))
        settings.append(Setting(file="cpu.cfs_quota_us", value=str(cpu_quota(limits.cpus)), flag="--cpus"))
    if limits.cpu_shares:
        settings.append(Setting(file="cpu.shares", value=str(limits.cpu_shares), flag="--cpu-shares"))
    if limits.cpuset_cpus is not None:
        settings.append(Setting(file="cpuset.cpus", value=limits.cpuset_cpus, flag="--cpuset-cpus"))
    if limits.pids is not None:
        settings.append(Setting(file="pids.max", value=pids_max(limits.pids), flag="--pids-limit"))
    return tuple(settings)


class V1Cgroup:
    """A container's cgroup in every v1 hierarchy (see :class:`~pybox.runtime.cgroups.base.Cgroup`).

    ``hierarchies`` come from :func:`~pybox.runtime.cgroups.discover.discover`;
    their mount points may be anywhere, so tests can point them at a temporary tree.
    """

    def __init__(self, path: str, hierarchies: Sequence[Hierarchy], *, fs: CgroupFS | None = None) -> None:
        self.path = check_path(path)
        self._hierarchies = tuple(hierarchies)
        self._fs = fs or CgroupFS()

    @property
    def device_rules_enforced(self) -> bool:
        """True when the devices controller is mounted: ``create`` writes the policy to it."""
        return self._hierarchy("devices") is not None

    def create(self, limits: Limits, *, devices: DevicePolicy) -> None:
        validate_limits(limits, host_cpus=len(os.sched_getaffinity(0)))
        settings = translate(limits)
        for setting in settings:
            self._controller_dir(setting)  # a missing controller fails before anything is made
        with removed_on_error(self):
            for hierarchy in self._hierarchies:
                self._make(hierarchy)
            for setting in settings:
                if setting.file == "cpuset.cpus":
                    self._check_cpuset(setting)
            self._write_memory([s for s in settings if s.controller == "memory"])
            for setting in settings:
                if setting.controller != "memory":
                    self._write(setting)
            self._write_devices(devices)

    def add_process(self, pid: int) -> None:
        # Plain writes only: the child runs this between fork and unshare.
        for hierarchy in self._hierarchies:
            procs = self._dir(hierarchy) / "cgroup.procs"
            with cgroup_errors(f"cannot move process {pid} into {procs}"):
                self._fs.write(procs, str(pid))

    def oom_killed(self) -> bool:
        """True if the kernel OOM-killed a process here.

        ``memory.oom_control`` counts kills as ``oom_kill`` since kernel 4.13
        (commit 8e675f7af507, "mm/oom_kill: count global and memory cgroup oom
        kills"); older kernels only show ``under_oom`` while an OOM is in progress.
        """
        memory = self._hierarchy("memory")
        if memory is None:
            return False
        path = self._dir(memory) / "memory.oom_control"
        with cgroup_errors(f"cannot read {path}"):
            fields = parse_flat_keyed(self._fs.read(path))
        if "oom_kill" in fields:
            return fields["oom_kill"] > 0
        return fields.get("under_oom", 0) > 0

    def pids(self) -> list[int]:
        found: set[int] = set()
        for hierarchy in self._hierarchies:
            found |= read_pids(self._fs, self._dir(hierarchy))
        return sorted(found)

    def kill_all(self, sig: int) -> None:
        with self._frozen():
            signal_pids(self.pids(), sig)

    def destroy(self, *, timeout: float = 5.0) -> None:
        destroy_with_retry(self._remove, lambda: self.kill_all(signal.SIGKILL), timeout=timeout, what=self.path)

    def exists(self) -> bool:
        return any(self._dir(h).is_dir() for h in self._hierarchies)

    def _dir(self, hierarchy: Hierarchy) -> Path:
        return hierarchy.mount_point / self.path

    def _hierarchy(self, controller: str) -> Hierarchy | None:
        return next((h for h in self._hierarchies if controller in h.controllers), None)

    def _controller_dir(self, setting: Setting) -> Path:
        hierarchy = self._hierarchy(setting.controller)
        if hierarchy is None:
            raise CgroupError(f"{setting.flag} needs the {setting.controller} cgroup controller, which is not mounted")
        return self._dir(hierarchy)

    def _make(self, hierarchy: Hierarchy) -> None:
        for step in path_steps(hierarchy.mount_point, self.path):
            with cgroup_errors(f"cannot create cgroup {step}"):
                self._fs.mkdir(step)
                if "cpuset" in hierarchy.controllers:
                    self._inherit_cpuset(step)

    def _inherit_cpuset(self, directory: Path) -> None:
        """Copy cpus and mems from the parent into a cpuset cgroup that has none.

        A v1 cpuset starts empty and refuses processes until both are set
        (kernel docs cgroup-v1/cpusets.rst 1.9; ENOSPC), so every level is
        filled from its parent on the way down, as runc's fs/cpuset.go
        ensureParent and copyIfNeeded do.
        """
        for name in _CPUSET_FILES:
            if not self._fs.read(directory / name).strip():
                self._fs.write(directory / name, self._fs.read(directory.parent / name).strip())

    def _check_cpuset(self, setting: Setting) -> None:
        parent = self._controller_dir(setting).parent / "cpuset.cpus"
        with cgroup_errors(f"cannot read {parent}"):
            available = self._fs.read(parent)
        require_cpuset_within(setting.value, available)

    def _write(self, setting: Setting) -> None:
        path = self._controller_dir(setting) / setting.file
        with cgroup_errors(f"{setting.flag}: cannot write {setting.value} to {path}"):
            self._fs.write(path, setting.value)

    def _write_memory(self, settings: list[Setting]) -> None:
        """Write the memory limit and memory+swap in an order the kernel accepts.

        The kernel keeps memory <= memsw at every moment (EINVAL otherwise),
        so runc's fs/memory.go setMemoryAndSwap raises memsw first when the
        new memsw exceeds the current memory limit. Without swap accounting
        (no memsw file: CONFIG_MEMCG_SWAP off or swapaccount=0) only memory is
        limited, as Docker does with a warning.
        """
        if not settings:
            return
        memory, memsw = settings
        directory = self._controller_dir(memory)
        if not (directory / _MEMSW).exists():
            log.warning("swap accounting is off in this kernel (no %s): swap is not limited", _MEMSW)
            self._write(memory)
            return
        with cgroup_errors(f"cannot read {directory / _MEMORY}"):
            current = int(self._fs.read(directory / _MEMORY))
        total = int(memsw.value)
        for setting in (memsw, memory) if total == -1 or current < total else (memory, memsw):
            self._write(setting)

    def _write_devices(self, policy: DevicePolicy) -> None:
        """Apply the device policy (kernel docs cgroup-v1/devices.rst).

        Deny everything, then allow each rule; "a" in devices.allow allows
        everything. Both whole-list writes need a cgroup without children,
        which a cgroup being created is.
        """
        hierarchy = self._hierarchy("devices")
        if hierarchy is None:
            log.debug("no devices hierarchy: device policy for %s not enforced", self.path)
            return
        directory = self._dir(hierarchy)
        lines = [("devices.allow", "a")] if policy.allow_all else [
            ("devices.deny", "a"), *(("devices.allow", rule.v1_line()) for rule in policy.rules)
        ]
        for name, line in lines:
            with cgroup_errors(f"device policy: cannot write {line!r} to {directory / name}"):
                self._fs.write(directory / name, line)

    @contextmanager
    def _frozen(self) -> Iterator[None]:
        """Freeze the cgroup while the block runs, when the freezer is mounted.

        A frozen process cannot fork between our listing of pids and the
        signal, and a signal sent to it is handled on thaw; runc's
        signalAllProcesses freezes for the same reason (kernel docs
        cgroup-v1/freezer-subsystem.rst).
        """
        freezer = self._hierarchy("freezer")
        state = None if freezer is None else self._dir(freezer) / "freezer.state"
        if state is None or not state.exists():
            yield
            return
        with cgroup_errors(f"cannot freeze {self.path}"):
            self._fs.write(state, "FROZEN")
        try:
            with cgroup_errors(f"cannot read {state}"):
                self._wait_frozen(state)
            yield
        finally:
            with cgroup_errors(f"cannot thaw {self.path}"):
                self._fs.write(state, "THAWED")

    def _wait_frozen(self, state: Path) -> None:
        """Wait until the freezer reports FROZEN; a task in uninterruptible sleep can keep it FREEZING.

        After the timeout the signals are sent anyway: they still reach
        every process listed, only a fork in between might escape, which
        the caller's retry (destroy) catches.
        """
        deadline = time.monotonic() + _FREEZE_TIMEOUT
        while self._fs.read(state).strip() != "FROZEN":
            if time.monotonic() >= deadline:
                log.debug("cgroup %s did not freeze within %ss", self.path, _FREEZE_TIMEOUT)
                return
            time.sleep(0.005)

    def _remove(self) -> list[Path]:
        return [self._dir(h) for h in self._hierarchies if not remove_tree(self._fs, self._dir(h))]
