"""Capability names and numbers, Docker's defaults, and ``--cap-add``/``--cap-drop``.

Pure translation (DESIGN.md section 8, rule 3): user input -> a set of names
-> :class:`~pybox.runtime.spec.Security`. Applying it is
:func:`pybox.runtime.security.drop_privileges`.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from pathlib import Path
from types import MappingProxyType

from pybox.errors import UsageError
from pybox.runtime.spec import Security

__all__ = [
    "ALL",
    "CAPABILITIES",
    "DOCKER_DEFAULT",
    "available",
    "from_mask",
    "last_cap",
    "parse_cap_name",
    "resolve",
    "security_for",
    "to_mask",
]

# <linux/capability.h>, capabilities(7).
CAPABILITIES: MappingProxyType[str, int] = MappingProxyType({
    "CAP_CHOWN": 0,
    "CAP_DAC_OVERRIDE": 1,
    "CAP_DAC_READ_SEARCH": 2,
    "CAP_FOWNER": 3,
    "CAP_FSETID": 4,
    "CAP_KILL": 5,
    "CAP_SETGID": 6,
    "CAP_SETUID": 7,
    "CAP_SETPCAP": 8,
    "CAP_LINUX_IMMUTABLE": 9,
    "CAP_NET_BIND_SERVICE": 10,
    "CAP_NET_BROADCAST": 11,
    "CAP_NET_ADMIN": 12,
    "CAP_NET_RAW": 13,
    "CAP_IPC_LOCK": 14,
    "CAP_IPC_OWNER": 15,
    "CAP_SYS_MODULE": 16,
    "CAP_SYS_RAWIO": 17,
    "CAP_SYS_CHROOT": 18,
    "CAP_SYS_PTRACE": 19,
    "CAP_SYS_PACCT": 20,
    "CAP_SYS_ADMIN": 21,
    "CAP_SYS_BOOT": 22,
    "CAP_SYS_NICE": 23,
    "CAP_SYS_RESOURCE": 24,
    "CAP_SYS_TIME": 25,
    "CAP_SYS_TTY_CONFIG": 26,
    "CAP_MKNOD": 27,
    "CAP_LEASE": 28,
    "CAP_AUDIT_WRITE": 29,
    "CAP_AUDIT_CONTROL": 30,
    "CAP_SETFCAP": 31,
    "CAP_MAC_OVERRIDE": 32,
    "CAP_MAC_ADMIN": 33,
    "CAP_SYSLOG": 34,
    "CAP_WAKE_ALARM": 35,
    "CAP_BLOCK_SUSPEND": 36,
    "CAP_AUDIT_READ": 37,
    "CAP_PERFMON": 38,
    "CAP_BPF": 39,
    "CAP_CHECKPOINT_RESTORE": 40,
})
_NAMES = {number: name for name, number in CAPABILITIES.items()}

ALL = "ALL"

# moby oci/caps/defaults.go DefaultCapabilities(): mask 0xa80425fb.
DOCKER_DEFAULT = frozenset({
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
})

_CAP_LAST_CAP = Path("/proc/sys/kernel/cap_last_cap")
_STATUS = Path("/proc/self/status")


@functools.cache
def last_cap(path: Path = _CAP_LAST_CAP) -> int:
    """The highest capability number the running kernel knows (proc(5) cap_last_cap).

    It may exceed the table above on a newer kernel; the bounding set is
    dropped by number up to here so that such capabilities are dropped too.
    Cached: the first call should happen before ``pivot_root``.
    """
    return int(path.read_text())


def available(status: Path = _STATUS) -> frozenset[str]:
    """The named capabilities pybox itself holds, hence can give a container.

    As moby ``oci/caps/utils_linux.go`` (containerd ``pkg/cap.Current``):
    "all" means the current effective set, not the kernel's list, because
    capset(2) cannot raise a permitted set beyond the caller's (some hosts run
    pybox without CAP_SYS_RESOURCE, DESIGN.md section 4).
    """
    for line in status.read_text().splitlines():
        if line.startswith("CapEff:"):
            mask = int(line.split()[1], 16)
            top = last_cap()
            return frozenset(name for name, n in CAPABILITIES.items() if n <= top and mask >> n & 1)
    raise ValueError(f"no CapEff line in {status}")


def parse_cap_name(text: str) -> str:
    """``net_admin``, ``CAP_NET_ADMIN``, ``Cap_Net_Admin`` -> ``CAP_NET_ADMIN``; ``all`` -> ``ALL``.

    As moby ``NormalizeLegacyCapabilities``: upper-case, add the ``CAP_`` prefix.
    """
    name = text.upper()
    if name == ALL:
        return ALL
    if not name.startswith("CAP_"):
        name = "CAP_" + name
    if name not in CAPABILITIES:
        raise UsageError(f"unknown capability {text!r}")
    return name


def resolve(add: Iterable[str], drop: Iterable[str], *, privileged: bool) -> frozenset[str]:
    """The container's capabilities from ``--cap-add``, ``--cap-drop`` and ``--privileged``.

    moby ``oci/caps/utils.go`` TweakCapabilities: privileged gets every
    available capability; ``--cap-add ALL`` gets every available one minus the
    drops; ``--cap-drop ALL`` gets exactly the adds; otherwise the default set
    minus the drops plus the adds (so a name in both is added). Names are
    checked even when privileged, so a typo is never silently ignored.
    """
    adds = frozenset(parse_cap_name(a) for a in add)
    drops = frozenset(parse_cap_name(d) for d in drop)
    have = available()
    missing = sorted(adds - {ALL} - have)
    if missing:
        # moby: "capability not supported by your kernel or not available in the current environment".
        raise UsageError(f"capability {missing[0]!r} is not supported by the kernel or not available to pybox")
    if privileged:
        return have
    if ALL in adds:
        return have - drops
    if ALL in drops:
        return adds
    return (DOCKER_DEFAULT - drops) | adds


def to_mask(names: Iterable[str]) -> int:
    """Canonical names (``CAP_CHOWN``) -> the kernel's bit mask."""
    mask = 0
    for name in names:
        mask |= 1 << CAPABILITIES[name]
    return mask


def from_mask(mask: int) -> frozenset[str]:
    """The kernel's bit mask -> canonical names; bits the table cannot name raise ``ValueError``."""
    names = frozenset(name for name, n in CAPABILITIES.items() if mask >> n & 1)
    if to_mask(names) != mask:
        raise ValueError(f"capability mask {mask:#x} has bits beyond CAP_CHECKPOINT_RESTORE")
    return names


def security_for(*, uid: int, caps: frozenset[str], privileged: bool, no_new_privileges: bool) -> Security:
    """The capability sets of a container's process, as Docker sets them.

    Root gets ``caps`` as bounding, effective and permitted. Any other user
    gets them only as bounding, so it holds nothing unless it executes a file
    with file capabilities, which is what execve(2) does to a non-root user
    (moby ``oci/oci.go`` SetCapabilities).
    Inheritable stays empty for everyone since CVE-2022-24769 (moby
    GHSA-2mm7-x5h6-5pvq): a non-empty inheritable set let such files gain
    capabilities the container was not meant to have.
    """
    if uid == 0:
        return Security(bounding=caps, effective=caps, permitted=caps, privileged=privileged,
                        no_new_privileges=no_new_privileges)
    return Security(bounding=caps, effective=frozenset(), permitted=frozenset(), privileged=privileged,
                    no_new_privileges=no_new_privileges)
