"""Which device nodes a container may create (mknod) and open.

A policy is data; the drivers apply it. cgroup v1 has the ``devices``
controller: ``devices.deny`` "a" denies everything, then each rule of the
allow list is written to ``devices.allow`` (kernel docs
admin-guide/cgroup-v1/devices.rst). cgroup v2 has no such file: device
control there is an eBPF program attached to the cgroup
(BPF_CGROUP_DEVICE, runc libcontainer/cgroups/devices/ebpf_linux.go), which
pybox does not implement; see ``Cgroup.device_rules_enforced``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from pybox.runtime.cgroups.base import CgroupError

__all__ = ["DeviceType", "DeviceRule", "DevicePolicy", "DEFAULT_DEVICES", "PRIVILEGED_DEVICES"]

DeviceType = Literal["c", "b", "a"]


@dataclass(frozen=True, kw_only=True)
class DeviceRule:
    """One allow rule: a device type, major and minor (None is the wildcard ``*``) and access.

    ``access`` combines r (read), w (write) and m (mknod).
    """

    type: DeviceType
    major: int | None = None
    minor: int | None = None
    access: str = "rwm"

    def __post_init__(self) -> None:
        if self.type not in ("c", "b", "a"):
            raise CgroupError(f"device rule: type must be c, b or a, not {self.type!r}")
        if not self.access or set(self.access) - set("rwm") or len(set(self.access)) != len(self.access):
            raise CgroupError(f"device rule: access must combine r, w and m, not {self.access!r}")
        for number in (self.major, self.minor):
            if number is not None and number < 0:
                raise CgroupError(f"device rule: major and minor must not be negative, not {number}")

    def v1_line(self) -> str:
        """The rule as cgroup v1 ``devices.allow`` reads it: ``c 1:3 rwm``, ``c 136:* rwm``."""
        return f"{self.type} {_number(self.major)}:{_number(self.minor)} {self.access}"


@dataclass(frozen=True, kw_only=True)
class DevicePolicy:
    """Deny every device except ``rules``, or allow every device (``--privileged``)."""

    allow_all: bool = False
    rules: tuple[DeviceRule, ...] = ()


def _number(value: int | None) -> str:
    return "*" if value is None else str(value)


def _c(major: int | None, minor: int | None, access: str = "rwm") -> DeviceRule:
    return DeviceRule(type="c", major=major, minor=minor, access=access)


# Docker's list is the union of two sources, applied after "deny all":
# - runc libcontainer/specconv AllowedDevices, which runc appends to every
#   container's rules: mknod of any char or block device (the device nodes
#   themselves still cannot be opened), null, random, full, tty, zero,
#   urandom, the pts devices (136:*), ptmx (5:2) and tun (10:200; dropped in
#   runc 1.2.0 by opencontainers/runc#3468, restored in 1.2.4 by #4555
#   because users relied on it);
# - moby oci/defaults.go DefaultLinuxSpec: the same devices plus console (5:1).
#   Its "deny c 10:229" (fuse) changes nothing after "deny all".
# Everything else, e.g. /dev/kmsg (c 1:11) and the host's disks, is denied.
DEFAULT_DEVICES = DevicePolicy(rules=(
    _c(None, None, "m"),
    DeviceRule(type="b", major=None, minor=None, access="m"),
    _c(1, 3),  # /dev/null
    _c(1, 5),  # /dev/zero
    _c(1, 7),  # /dev/full
    _c(1, 8),  # /dev/random
    _c(1, 9),  # /dev/urandom
    _c(5, 0),  # /dev/tty
    _c(5, 1),  # /dev/console
    _c(5, 2),  # /dev/ptmx
    _c(136, None),  # /dev/pts/*
    _c(10, 200),  # /dev/net/tun
))

PRIVILEGED_DEVICES = DevicePolicy(allow_all=True)
