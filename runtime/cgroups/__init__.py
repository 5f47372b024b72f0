"""Container cgroups: limits, device policy, process tracking, cleanup.

:func:`open_cgroup` reads the host's layout from mountinfo and returns the
v1 driver (v1 and hybrid hosts) or the v2 driver behind one interface,
:class:`Cgroup` (DESIGN.md sections 4 and 8).
"""

from __future__ import annotations

from pathlib import Path

from pybox.runtime.cgroups.base import Cgroup, CgroupError, CgroupFS
from pybox.runtime.cgroups.devices import DEFAULT_DEVICES, PRIVILEGED_DEVICES, DevicePolicy, DeviceRule
from pybox.runtime.cgroups.discover import CgroupMounts, Hierarchy, Mode, discover
from pybox.runtime.cgroups.v1 import V1Cgroup
from pybox.runtime.cgroups.v2 import V2Cgroup

__all__ = [
    "Cgroup",
    "CgroupError",
    "CgroupFS",
    "CgroupMounts",
    "DEFAULT_DEVICES",
    "DEFAULT_ROOT",
    "DevicePolicy",
    "DeviceRule",
    "Hierarchy",
    "Mode",
    "PRIVILEGED_DEVICES",
    "V1Cgroup",
    "V2Cgroup",
    "discover",
    "open_cgroup",
]

DEFAULT_ROOT = Path("/sys/fs/cgroup")


def open_cgroup(
    path: str,
    *,
    mountinfo: str | None = None,
    root: Path = DEFAULT_ROOT,
    fs: CgroupFS | None = None,
) -> Cgroup:
    """The driver for cgroup ``path`` (relative, e.g. ``pybox/<64 hex>``) on this host.

    ``mountinfo`` defaults to /proc/self/mountinfo. ``root`` says where the
    tree that mountinfo shows at /sys/fs/cgroup really is: tests pass a
    temporary directory (and a fake ``fs``) to run against a mimic of cgroupfs.
    Nothing is created until :meth:`Cgroup.create`.
    """
    mounts = discover(mountinfo).rebased(DEFAULT_ROOT, root)
    if mounts.mode == "v2":
        return V2Cgroup(path, mounts.hierarchies[0].mount_point, fs=fs)
    return V1Cgroup(path, mounts.hierarchies, fs=fs)
