"""Where the cgroup hierarchies are mounted, read from /proc/self/mountinfo.

Hosts come in three layouts (kernel docs admin-guide/cgroup-v2.rst, "Mounting"):

- v1: one ``cgroup`` mount per hierarchy, its super options naming the
  controllers it carries (``rw,cpu,cpuacct``) or a named hierarchy
  (``rw,name=systemd``);
- hybrid: the same v1 mounts plus a ``cgroup2`` mount (systemd puts it at
  /sys/fs/cgroup/unified) whose controllers are all taken by v1;
- v2: a single ``cgroup2`` mount and no v1 controller.

Hybrid is driven like v1 (runc does the same: its fs driver also creates the
container's directory in the unified hierarchy, key ``""``). Mount points,
not fixed paths, are used because layouts differ: cpu and cpuacct are
separate mounts on some hosts and one ``cpu,cpuacct`` mount on others.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal

from pybox.runtime.cgroups.base import CgroupError

__all__ = ["Mode", "Hierarchy", "CgroupMounts", "V1_CONTROLLERS", "discover"]

Mode = Literal["v1", "v2"]

# The v1 controllers the kernel knows (kernel docs admin-guide/cgroup-v1/);
# anything else in a cgroup mount's super options is a flag such as
# "clone_children", "noprefix" or "release_agent=...".
V1_CONTROLLERS = frozenset({
    "blkio", "cpu", "cpuacct", "cpuset", "devices", "freezer", "hugetlb", "memory",
    "misc", "net_cls", "net_prio", "perf_event", "pids", "rdma",
})
_OCTAL_ESCAPE = re.compile(r"\\([0-7]{3})")


@dataclass(frozen=True, kw_only=True)
class Hierarchy:
    """One mounted cgroup hierarchy.

    ``controllers`` holds the v1 controllers of the mount plus ``name=X`` for
    a named hierarchy; it is empty for the unified (cgroup2) hierarchy, whose
    controllers are listed in its ``cgroup.controllers`` file instead.
    """

    mount_point: Path
    controllers: frozenset[str]
    unified: bool = False


@dataclass(frozen=True, kw_only=True)
class CgroupMounts:
    """The host's cgroup layout: the driver to use and the hierarchies it works in.

    In v1 mode ``hierarchies`` lists every v1 hierarchy (controllers and
    named ones) and then, on a hybrid host, the unified one; in v2 mode it
    holds just the unified hierarchy.
    """

    mode: Mode
    hierarchies: tuple[Hierarchy, ...]

    def rebased(self, old: Path, new: Path) -> CgroupMounts:
        """The same layout with mount points under ``old`` moved under ``new``.

        Lets a test describe a host with real mountinfo text while the
        hierarchies live in a temporary directory.
        """
        if old == new:
            return self
        moved = []
        for h in self.hierarchies:
            if h.mount_point.is_relative_to(old):
                h = replace(h, mount_point=new / h.mount_point.relative_to(old))
            moved.append(h)
        return replace(self, hierarchies=tuple(moved))


def discover(mountinfo: str | None = None) -> CgroupMounts:
    """Parse ``mountinfo`` (default: this process's /proc/self/mountinfo) into a layout.

    Raises CgroupError when no cgroup hierarchy is mounted at all.
    """
    if mountinfo is None:
        mountinfo = Path("/proc/self/mountinfo").read_text()
    v1: list[Hierarchy] = []
    unified: Hierarchy | None = None
    for line in mountinfo.splitlines():
        hierarchy = _parse_line(line)
        if hierarchy is None:
            continue
        if hierarchy.unified:
            unified = unified or hierarchy  # a hierarchy bind-mounted again is the same one
        elif all(h.controllers != hierarchy.controllers for h in v1):
            v1.append(hierarchy)
    if any(h.controllers & V1_CONTROLLERS for h in v1):
        return CgroupMounts(mode="v1", hierarchies=(*v1, *(() if unified is None else (unified,))))
    if unified is not None:
        return CgroupMounts(mode="v2", hierarchies=(unified,))
    raise CgroupError("no cgroup hierarchy is mounted (looked for cgroup and cgroup2 in mountinfo)")


def _parse_line(line: str) -> Hierarchy | None:
    """The cgroup hierarchy a mountinfo line describes, or None for other mounts.

    Format (proc(5)): ``id parent maj:min root mount-point options
    [optional fields...] - fstype source super-options``; the optional
    fields end at the lone "-".
    """
    fields = line.split()
    if "-" not in fields:
        return None
    sep = fields.index("-")
    if len(fields) < sep + 4 or sep < 5:
        return None
    fstype, super_options = fields[sep + 1], fields[sep + 3].split(",")
    mount_point = Path(_unescape(fields[4]))
    if fstype == "cgroup2":
        return Hierarchy(mount_point=mount_point, controllers=frozenset(), unified=True)
    if fstype != "cgroup":
        return None
    controllers = frozenset(o for o in super_options if o in V1_CONTROLLERS or o.startswith("name="))
    return Hierarchy(mount_point=mount_point, controllers=controllers) if controllers else None


def _unescape(field: str) -> str:
    """Undo the kernel's octal escapes of space, tab, newline and backslash in paths."""
    return _OCTAL_ESCAPE.sub(lambda m: chr(int(m.group(1), 8)), field)
