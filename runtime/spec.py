"""What to run: a container as data, independent of images, registries and Containerfiles.

The CLI (``pybox run``) and the builder (``RUN``) both fill in a
:class:`ContainerSpec`; the runtime only reads it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from pybox.store.mounts import Mount

__all__ = [
    "Limits",
    "TmpfsMount",
    "Rlimit",
    "DeviceNode",
    "UserSpec",
    "ProcessSpec",
    "BindMount",
    "Security",
    "ContainerSpec",
    "NetworkMode",
    "DEFAULT_SHM_SIZE",
]

NetworkMode = Literal["none", "host"]
DEFAULT_SHM_SIZE = 64 * 1024 * 1024


@dataclass(frozen=True, kw_only=True)
class Limits:
    """Resource limits, in Docker's units; None means unlimited/unset."""

    memory: int | None = None  # bytes (--memory)
    memory_swap: int | None = None  # bytes of memory+swap (--memory-swap); -1 unlimited
    cpus: float | None = None  # --cpus: CFS quota = cpus * period
    cpu_shares: int | None = None  # --cpu-shares (v1 shares; v2 weight derived)
    cpuset_cpus: str | None = None  # --cpuset-cpus "0-1,3"
    pids: int | None = None  # --pids-limit


@dataclass(frozen=True, kw_only=True)
class UserSpec:
    uid: int = 0
    gid: int = 0
    additional_gids: tuple[int, ...] = ()


@dataclass(frozen=True, kw_only=True)
class ProcessSpec:
    args: tuple[str, ...]
    env: tuple[str, ...] = ()  # "K=V", PATH included
    cwd: str = "/"
    user: UserSpec = UserSpec()
    terminal: bool = False
    stdin_open: bool = False  # -i


@dataclass(frozen=True, kw_only=True)
class BindMount:
    source: str  # host path
    target: str  # path in the container
    readonly: bool = False
    propagation: str = "rprivate"
    # A volume mounted for the first time gets the image's content at its target.
    copy_up: bool = False


@dataclass(frozen=True, kw_only=True)
class TmpfsMount:
    target: str
    options: str = ""  # mount data, e.g. "size=65536k,mode=1777"
    flags: int = 0  # MS_* flags (nosuid, nodev, noexec, rdonly)


@dataclass(frozen=True, kw_only=True)
class Rlimit:
    resource: int  # resource.RLIMIT_*
    soft: int
    hard: int


@dataclass(frozen=True, kw_only=True)
class DeviceNode:
    """A host device made again inside the container's /dev (--device)."""

    path: str  # in the container
    type: str  # "c" or "b"
    major: int
    minor: int
    mode: int  # permission bits
    access: str  # cgroup access: some of "rwm"


@dataclass(frozen=True, kw_only=True)
class Security:
    """Capabilities as sets of names ("CAP_CHOWN"); masked/readonly paths apply unless privileged."""

    bounding: frozenset[str]
    effective: frozenset[str]
    permitted: frozenset[str]
    inheritable: frozenset[str] = frozenset()
    ambient: frozenset[str] = frozenset()
    privileged: bool = False
    no_new_privileges: bool = False
    # Docker's masked and read-only /proc and /sys paths (off with --privileged
    # or --security-opt systempaths=unconfined).
    mask_paths: bool = True
    # A built seccomp filter (pybox.runtime.seccomp.Filter), or None for none.
    seccomp: object = None
    # Where the filter came from: "default", "unconfined" or a profile file (for the record).
    seccomp_profile: str = "unconfined"


@dataclass(frozen=True, kw_only=True)
class ContainerSpec:
    id: str  # 64 hex
    name: str
    rootfs: Mount  # from pybox.store.mounts.rootfs_mount, with the container's upper/work dirs
    process: ProcessSpec
    security: Security
    hostname: str
    limits: Limits = Limits()
    mounts: tuple[BindMount, ...] = ()
    network: NetworkMode = "none"
    shm_size: int = DEFAULT_SHM_SIZE
    readonly_rootfs: bool = False
    tmpfs: tuple[TmpfsMount, ...] = ()
    rlimits: tuple[Rlimit, ...] = ()
    sysctls: tuple[tuple[str, str], ...] = ()
    devices: tuple[DeviceNode, ...] = ()
    # Files bind-mounted over /etc/hostname, /etc/hosts, /etc/resolv.conf (host paths).
    etc_files: dict[str, str] = field(default_factory=dict, hash=False, compare=False)
