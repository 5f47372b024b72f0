"""The container's filesystem, built by PID 1 inside its own mount namespace.

Everything here runs after ``unshare(CLONE_NEWNS)``: the overlay and every
other mount exist only in the container's namespace, so a killed pybox
leaves nothing mounted on the host (DESIGN section 4). The order follows
runc's ``libcontainer/rootfs_linux.go``: rootfs, then /proc, /dev, /sys and
bind mounts under it, masks, then ``pivot_root``.
"""

from __future__ import annotations

import os
import shutil
import stat
from dataclasses import dataclass
from pathlib import Path

from pybox.runtime.linux import (
    MNT_DETACH,
    MS_BIND,
    MS_NODEV,
    MS_NOEXEC,
    MS_NOSUID,
    MS_PRIVATE,
    MS_RDONLY,
    MS_REC,
    MS_REMOUNT,
    MS_STRICTATIME,
    Linux,
)
from pybox.runtime.cgroups.discover import discover
from pybox.runtime.mounts import perform
from pybox.runtime.spec import BindMount, ContainerSpec
from pybox.store.layerfs import lookup
from pybox.store.mounts import Mount

__all__ = ["MASKED_PATHS", "MOUNT_POINTS", "READONLY_PATHS", "DEVICES", "prepare_rootfs", "pivot"]

_CGROUP_ROOT = Path("/sys/fs/cgroup")

# moby oci/defaults.go: paths a container must not read or write.
MASKED_PATHS = (
    "/proc/asound",
    "/proc/acpi",
    "/proc/interrupts",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
)
# What every container mounts over; created in its upper dir when the image lacks them.
MOUNT_POINTS = ("/proc", "/dev", "/sys", "/etc/hostname", "/etc/hosts", "/etc/resolv.conf")
READONLY_PATHS = ("/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger")


@dataclass(frozen=True)
class _Device:
    name: str
    major: int
    minor: int


# The nodes every container gets (runc's AllowedDevices / moby's default devices).
DEVICES = (
    _Device("null", 1, 3),
    _Device("zero", 1, 5),
    _Device("full", 1, 7),
    _Device("random", 1, 8),
    _Device("urandom", 1, 9),
    _Device("tty", 5, 0),
)

_DEV_LINKS = (
    ("fd", "/proc/self/fd"),
    ("stdin", "/proc/self/fd/0"),
    ("stdout", "/proc/self/fd/1"),
    ("stderr", "/proc/self/fd/2"),
    ("ptmx", "pts/ptmx"),
)


def _inside(root: str, path: str) -> str:
    """``path`` of the container as a path under the rootfs mount, without leaving it.

    Symlinks in the image (``/var/run -> /run``) are resolved inside the
    rootfs, never against the host's directories.
    """
    return os.path.join(root, lookup([Path(root)], path).path.lstrip("/"))


def _ensure(path: str, *, directory: bool) -> None:
    if os.path.lexists(path):
        return
    if directory:
        os.makedirs(path, mode=0o755, exist_ok=True)
    else:
        os.makedirs(os.path.dirname(path), mode=0o755, exist_ok=True)
        with open(path, "a"):
            pass


def _mount_proc_dev_sys(linux: Linux, root: str, spec: ContainerSpec) -> None:
    proc = _inside(root, "/proc")
    _ensure(proc, directory=True)
    linux.mount("proc", proc, "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)

    dev = _inside(root, "/dev")
    _ensure(dev, directory=True)
    linux.mount("tmpfs", dev, "tmpfs", MS_NOSUID | MS_STRICTATIME, "mode=755,size=65536k")
    for d in DEVICES:
        node = os.path.join(dev, d.name)
        linux.mknod(node, stat.S_IFCHR | 0o666, os.makedev(d.major, d.minor))
        os.chmod(node, 0o666)  # mknod is subject to the umask
    for name, target in _DEV_LINKS:
        os.symlink(target, os.path.join(dev, name))
    pts = os.path.join(dev, "pts")
    os.mkdir(pts, 0o755)
    linux.mount("devpts", pts, "devpts", MS_NOSUID | MS_NOEXEC, "newinstance,ptmxmode=0666,mode=0620,gid=5")
    shm = os.path.join(dev, "shm")
    os.mkdir(shm, 0o1777)
    linux.mount("shm", shm, "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, f"mode=1777,size={spec.shm_size}")
    mqueue = os.path.join(dev, "mqueue")
    os.mkdir(mqueue, 0o755)
    linux.mount("mqueue", mqueue, "mqueue", MS_NOSUID | MS_NODEV | MS_NOEXEC)

    sys_dir = _inside(root, "/sys")
    _ensure(sys_dir, directory=True)
    linux.mount("sysfs", sys_dir, "sysfs", MS_NOSUID | MS_NODEV | MS_NOEXEC | MS_RDONLY)
    _mount_cgroupfs(linux, os.path.join(sys_dir, "fs", "cgroup"))


def _mount_cgroupfs(linux: Linux, target: str) -> None:
    """The container's own cgroups, read-only, as Docker shows them (its cgroup namespace is the root)."""
    if not os.path.isdir(target):
        return
    flags = MS_NOSUID | MS_NODEV | MS_NOEXEC | MS_RDONLY
    hierarchies = [h for h in discover().hierarchies if _CGROUP_ROOT in (h.mount_point, h.mount_point.parent)]
    if any(h.mount_point == _CGROUP_ROOT for h in hierarchies):
        # A pure v2 host: the one hierarchy is /sys/fs/cgroup itself.
        linux.mount("cgroup", target, "cgroup2", flags)
        return
    linux.mount("tmpfs", target, "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, "mode=755")
    for h in hierarchies:
        point = os.path.join(target, h.mount_point.name)
        os.mkdir(point, 0o555)
        if h.unified:
            linux.mount("cgroup", point, "cgroup2", flags)
        else:
            linux.mount("cgroup", point, "cgroup", flags, ",".join(sorted(h.controllers)))
    linux.mount(None, target, None, MS_REMOUNT | flags)


def _copy_up(source: str, volume: str) -> None:
    """The image's content at a volume's mount point, copied into the fresh volume with owners,
    modes and times (Docker copies it the same way on first use)."""
    if not os.path.isdir(source):
        return
    shutil.copytree(source, volume, symlinks=True, dirs_exist_ok=True, copy_function=_copy_file)
    for directory, dirnames, filenames in os.walk(source):
        relative = os.path.relpath(directory, source)
        for name in [".", *dirnames, *filenames]:
            src = os.path.normpath(os.path.join(directory, name))
            dst = os.path.normpath(os.path.join(volume, relative, name))
            st = os.lstat(src)
            os.chown(dst, st.st_uid, st.st_gid, follow_symlinks=False)
            if not stat.S_ISLNK(st.st_mode):
                os.chmod(dst, stat.S_IMODE(st.st_mode))


def _copy_file(src: str, dst: str) -> str:
    return shutil.copy2(src, dst, follow_symlinks=False)


def _bind(linux: Linux, root: str, mount: BindMount) -> None:
    target = _inside(root, mount.target)
    _ensure(target, directory=os.path.isdir(mount.source))
    options = ("rbind", "ro") if mount.readonly else ("rbind",)
    perform(linux, Mount(type="bind", source=mount.source, target=target, options=options))


def _mask(linux: Linux, root: str) -> None:
    for path in MASKED_PATHS:
        target = _inside(root, path)
        if not os.path.lexists(target):
            continue
        if os.path.isdir(target):
            linux.mount("tmpfs", target, "tmpfs", MS_RDONLY, None)
        else:
            linux.mount("/dev/null", target, None, MS_BIND)
    for path in READONLY_PATHS:
        target = _inside(root, path)
        if not os.path.lexists(target):
            continue
        linux.mount(target, target, None, MS_BIND | MS_REC)
        linux.mount(None, target, None, MS_BIND | MS_REMOUNT | MS_RDONLY | MS_REC)


def prepare_rootfs(linux: Linux, spec: ContainerSpec, merged: Path, *, console: str | None = None) -> None:
    """Mount everything the container sees under ``merged`` (still outside pivot_root).

    ``console`` is the host path of the container's terminal, shown at
    /dev/console as runc does.
    """
    # Nothing mounted from here on may propagate back to the host.
    linux.mount(None, "/", None, MS_REC | MS_PRIVATE)
    perform(linux, spec.rootfs)
    root = str(merged)
    _mount_proc_dev_sys(linux, root, spec)
    if console is not None:
        target = os.path.join(root, "dev", "console")
        _ensure(target, directory=False)
        linux.mount(console, target, None, MS_BIND)
    binds = [BindMount(source=f, target=p) for p, f in spec.etc_files.items()] + list(spec.mounts)
    # Fresh volumes get the image's own content, before anything is mounted over it.
    for mount in binds:
        if mount.copy_up:
            _copy_up(_inside(root, mount.target), mount.source)
    # Parents before children (as runc sorts mounts): /etc/hostname lands on a volume at /etc.
    for mount in sorted(binds, key=lambda m: len(Path(m.target).parts)):
        _bind(linux, root, mount)
    workdir = _inside(root, spec.process.cwd)
    if not os.path.lexists(workdir):
        os.makedirs(workdir, mode=0o755)
    for tmpfs in spec.tmpfs:
        target = _inside(root, tmpfs.target)
        _ensure(target, directory=True)
        linux.mount("tmpfs", target, "tmpfs", tmpfs.flags, tmpfs.options or None)
    for node in spec.devices:
        path = _inside(root, node.path)
        _ensure(os.path.dirname(path), directory=True)
        kind = stat.S_IFCHR if node.type == "c" else stat.S_IFBLK
        linux.mknod(path, kind | node.mode, os.makedev(node.major, node.minor))
        os.chmod(path, node.mode)
    # sysctls go in while /proc/sys is still writable; masking makes it read-only.
    for key, value in spec.sysctls:
        with open(os.path.join(_inside(root, "/proc/sys"), key.replace(".", "/")), "w") as f:
            f.write(value)
    if spec.security.mask_paths and not spec.security.privileged:
        _mask(linux, root)


def pivot(linux: Linux, merged: Path, *, readonly: bool = False) -> None:
    """Make ``merged`` the root: ``pivot_root(".", ".")`` stacks the old root under the new one,
    and a lazy unmount of "." drops it, with no put_old directory needed (runc's pivotRoot).
    ``readonly`` (--read-only) remounts the new root read-only; the mounts on it stay as they are."""
    os.chdir(merged)
    linux.pivot_root(".", ".")
    linux.umount2(".", MNT_DETACH)
    os.chdir("/")
    if readonly:
        linux.mount(None, "/", None, MS_REMOUNT | MS_BIND | MS_RDONLY)
