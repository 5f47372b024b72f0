"""The cgroup v2 driver against a fake cgroupfs, and mode discovery from mountinfo texts.

This development machine is cgroup v1 hybrid (its cgroup2 mount at
/sys/fs/cgroup/unified has no controllers), so the v2 driver cannot be run
against the kernel here. It is tested against a temporary directory that
mimics cgroupfs: :class:`FakeCgroup2` creates the interface files on mkdir
from the parent's ``cgroup.subtree_control`` (top-down constraint), refuses
controllers in a cgroup with processes and processes in a cgroup with
controllers enabled for children (no internal processes), answers ENOENT
for files of controllers not enabled, and EBUSY on rmdir of a populated
cgroup. The v1 driver runs against the real kernel in
tests/integration/test_cgroups_v1.py.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from pybox.runtime.cgroups import (
    DEFAULT_DEVICES,
    CgroupError,
    CgroupFS,
    V1Cgroup,
    V2Cgroup,
    discover,
    open_cgroup,
)
from pybox.runtime.cgroups.base import validate_limits
from pybox.runtime.cgroups.v2 import cpu_weight, translate
from pybox.runtime.spec import Limits

MiB = 1024 * 1024
CONTAINER = "pybox/" + "ab" * 32
# The kernel lists controllers in its own (ssid) order.
KERNEL_ORDER = ("cpuset", "cpu", "io", "memory", "hugetlb", "pids", "rdma", "misc")
CONTROLLER_FILES = {
    "cpuset": {"cpuset.cpus": "", "cpuset.mems": "", "cpuset.mems.effective": "0"},
    "cpu": {"cpu.max": "max 100000", "cpu.weight": "100", "cpu.stat": ""},
    "io": {"io.max": "", "io.weight": "default 100"},
    "memory": {"memory.max": "max", "memory.swap.max": "max",
               "memory.events": "low 0\nhigh 0\nmax 0\noom 0\noom_kill 0\n"},
    "pids": {"pids.max": "max", "pids.current": "0"},
}

# This machine: cgroup v1 controllers on separate mounts, an empty cgroup2 at unified.
HYBRID = """\
22 1 253:0 / / rw,relatime - ext4 /dev/vda rw
23 22 0:5 / /sys rw,nosuid,nodev,noexec,relatime - sysfs sysfs rw
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
33 31 0:30 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct
34 31 0:31 / /sys/fs/cgroup/cpuset rw,relatime - cgroup cgroup rw,cpuset
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
36 31 0:33 / /sys/fs/cgroup/devices rw,relatime - cgroup cgroup rw,devices
37 31 0:34 / /sys/fs/cgroup/freezer rw,relatime - cgroup cgroup rw,freezer
38 31 0:35 / /sys/fs/cgroup/blkio rw,relatime - cgroup cgroup rw,blkio
39 31 0:36 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
"""

# Fedora / Debian 11+ / Ubuntu 21.10+: only the unified hierarchy.
PURE_V2 = """\
24 1 253:1 / / rw,relatime shared:1 - ext4 /dev/vda1 rw
25 24 0:22 / /sys rw,nosuid,nodev,noexec,relatime shared:2 - sysfs sysfs rw
35 25 0:30 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:9 - cgroup2 cgroup2 rw,nsdelegate,memory_recursiveprot
"""

# CentOS 7 style: co-mounted controllers, flags among the super options, no cgroup2.
PURE_V1 = """\
25 18 0:21 / /sys/fs/cgroup ro,nosuid,nodev,noexec shared:9 - tmpfs tmpfs ro,mode=755
26 25 0:22 / /sys/fs/cgroup/systemd rw,nosuid,nodev,noexec,relatime shared:10 - cgroup cgroup rw,xattr,release_agent=/usr/lib/systemd/systemd-cgroups-agent,name=systemd
29 25 0:25 / /sys/fs/cgroup/cpu,cpuacct rw,nosuid,nodev,noexec,relatime shared:13 - cgroup cgroup rw,cpu,cpuacct
30 25 0:26 / /sys/fs/cgroup/net_cls,net_prio rw,nosuid,nodev,noexec,relatime shared:14 - cgroup cgroup rw,net_cls,net_prio
31 25 0:27 / /sys/fs/cgroup/memory rw,nosuid,nodev,noexec,relatime shared:15 - cgroup cgroup rw,memory
32 25 0:28 / /sys/fs/cgroup/cpuset rw,nosuid,nodev,noexec,relatime shared:16 - cgroup cgroup rw,cpuset,clone_children
33 25 0:29 / /sys/fs/cgroup/pids rw,nosuid,nodev,noexec,relatime shared:17 - cgroup cgroup rw,pids
34 25 0:30 / /sys/fs/cgroup/devices rw,nosuid,nodev,noexec,relatime shared:18 - cgroup cgroup rw,devices
"""


class FakeCgroup2(CgroupFS):
    """A directory tree that answers like cgroup2 for the operations the driver uses.

    A cgroup's ``cgroup.controllers`` and controller files follow its
    parent's ``cgroup.subtree_control``, also when the parent changes later.
    ``writes`` records every write as (path relative to the root, value).
    """

    def __init__(self, root: Path, controllers: tuple[str, ...] = ("cpuset", "cpu", "io", "memory", "pids")) -> None:
        self.root = root
        self.writes: list[tuple[str, str]] = []
        root.mkdir()
        self._files(root, {
            "cgroup.controllers": " ".join(controllers),
            "cgroup.subtree_control": "",
            "cgroup.procs": "1\n",  # the root may hold processes
            "cpuset.cpus.effective": "0-3",
        })

    def mkdir(self, path: Path) -> None:
        if path.is_dir():
            return
        os.mkdir(path)
        self._files(path, {"cgroup.subtree_control": "", "cgroup.procs": "", "cgroup.kill": ""})
        self._show_controllers(path)

    def write(self, path: Path, value: str) -> None:
        self.writes.append((str(path.relative_to(self.root)), value))
        if not path.is_file():
            raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), str(path))
        directory = path.parent
        if path.name == "cgroup.subtree_control":
            self._enable(directory, value.split())
        elif path.name == "cgroup.procs":
            if directory != self.root and self._read_words(directory / "cgroup.subtree_control"):
                raise OSError(errno.EBUSY, os.strerror(errno.EBUSY), str(path))
            path.write_text(path.read_text() + value + "\n")
        elif path.name == "cgroup.kill":
            for procs in directory.rglob("cgroup.procs"):
                procs.write_text("")
        else:
            path.write_text(value)

    def rmdir(self, path: Path) -> None:
        if any(p.is_dir() for p in path.iterdir()) or (path / "cgroup.procs").read_text().strip():
            raise OSError(errno.EBUSY, os.strerror(errno.EBUSY), str(path))
        for file in path.iterdir():
            file.unlink()
        os.rmdir(path)

    def _enable(self, directory: Path, tokens: list[str]) -> None:
        available = self._read_words(directory / "cgroup.controllers")
        enabled = set(self._read_words(directory / "cgroup.subtree_control"))
        for token in tokens:
            if token[1:] not in available:
                raise OSError(errno.ENOENT, os.strerror(errno.ENOENT), token)
            enabled.add(token[1:]) if token[0] == "+" else enabled.discard(token[1:])
        if directory != self.root and self._read_words(directory / "cgroup.procs"):
            raise OSError(errno.EBUSY, os.strerror(errno.EBUSY), str(directory))
        (directory / "cgroup.subtree_control").write_text(" ".join(c for c in KERNEL_ORDER if c in enabled))
        for child in directory.iterdir():
            if child.is_dir():
                self._show_controllers(child)

    def _show_controllers(self, directory: Path) -> None:
        """Give ``directory`` the interface files of the controllers its parent enables (kept ones stay)."""
        enabled = self._read_words(directory.parent / "cgroup.subtree_control")
        files = {"cgroup.controllers": " ".join(enabled)}
        for controller in enabled:
            files.update({k: v for k, v in CONTROLLER_FILES[controller].items() if not (directory / k).exists()})
        if "cpuset" in enabled:
            files["cpuset.cpus.effective"] = (directory.parent / "cpuset.cpus.effective").read_text()
        self._files(directory, files)

    @staticmethod
    def _read_words(path: Path) -> list[str]:
        return path.read_text().split()

    @staticmethod
    def _files(directory: Path, files: dict[str, str]) -> None:
        for name, text in files.items():
            (directory / name).write_text(text)


@pytest.fixture
def fake(tmp_path: Path) -> FakeCgroup2:
    return FakeCgroup2(tmp_path / "cgroup")


@pytest.fixture
def cgroup(fake: FakeCgroup2) -> V2Cgroup:
    return V2Cgroup(CONTAINER, fake.root, fs=fake)


def _unused_pid() -> int:
    """A pid no process can have (pids are below pid_max), so a stray kill cannot hit anyone."""
    return int(Path("/proc/sys/kernel/pid_max").read_text())


def test_create_writes_limits_and_enables_controllers_in_every_ancestor(fake: FakeCgroup2, cgroup: V2Cgroup) -> None:
    limits = Limits(memory=32 * MiB, cpus=0.5, cpu_shares=512, cpuset_cpus="0-1,3", pids=20)
    cgroup.create(limits, devices=DEFAULT_DEVICES)

    leaf = fake.root / CONTAINER
    assert {name: (leaf / name).read_text() for name in (
        "memory.max", "memory.swap.max", "cpu.max", "cpu.weight", "pids.max", "cpuset.cpus",
    )} == {
        "memory.max": str(32 * MiB),
        "memory.swap.max": str(32 * MiB),  # only --memory: as much swap as memory
        "cpu.max": "50000 100000",
        "cpu.weight": "20",
        "pids.max": "20",
        "cpuset.cpus": "0-1,3",
    }
    for ancestor in ("cgroup.subtree_control", "pybox/cgroup.subtree_control"):
        assert (ancestor, "+memory +pids +cpu +cpuset") in fake.writes
        assert (fake.root / ancestor).read_text() == "cpuset cpu memory pids"
    assert (leaf / "cgroup.subtree_control").read_text() == ""
    assert not [w for w in fake.writes if w[0].endswith("cgroup.procs")]
    assert cgroup.exists()
    assert not cgroup.device_rules_enforced


def test_create_again_rewrites_values_without_reenabling(fake: FakeCgroup2, cgroup: V2Cgroup) -> None:
    cgroup.create(Limits(pids=20), devices=DEFAULT_DEVICES)
    fake.writes.clear()
    cgroup.create(Limits(pids=30), devices=DEFAULT_DEVICES)
    assert fake.writes == [(f"{CONTAINER}/pids.max", "30")]


def test_processes_go_into_the_leaf_only(fake: FakeCgroup2, cgroup: V2Cgroup) -> None:
    cgroup.create(Limits(), devices=DEFAULT_DEVICES)
    pid = _unused_pid()
    cgroup.add_process(pid)
    assert cgroup.pids() == [pid]
    assert (fake.root / "pybox" / "cgroup.procs").read_text() == ""


def test_pids_include_cgroups_below(fake: FakeCgroup2, cgroup: V2Cgroup) -> None:
    cgroup.create(Limits(), devices=DEFAULT_DEVICES)
    pid = _unused_pid()
    fake.mkdir(fake.root / CONTAINER / "inner")
    fake.write(fake.root / CONTAINER / "inner" / "cgroup.procs", str(pid))
    assert cgroup.pids() == [pid]


def test_destroy_kills_through_cgroup_kill_and_removes_the_leaf(fake: FakeCgroup2, cgroup: V2Cgroup) -> None:
    cgroup.create(Limits(memory=32 * MiB), devices=DEFAULT_DEVICES)
    cgroup.add_process(_unused_pid())
    fake.mkdir(fake.root / CONTAINER / "inner")  # made by the container; removed first

    cgroup.destroy(timeout=2)

    assert (f"{CONTAINER}/cgroup.kill", "1") in fake.writes
    assert not (fake.root / CONTAINER).exists()
    assert not cgroup.exists()
    assert (fake.root / "pybox").is_dir()  # the shared parent stays
    cgroup.destroy()  # already gone: nothing to do


def test_destroy_gives_up_after_the_timeout(fake: FakeCgroup2, cgroup: V2Cgroup) -> None:
    cgroup.create(Limits(), devices=DEFAULT_DEVICES)
    cgroup.add_process(_unused_pid())
    (fake.root / CONTAINER / "cgroup.kill").unlink()  # a kernel before 5.14; the pid cannot be signalled
    with pytest.raises(CgroupError, match="still busy"):
        cgroup.destroy(timeout=0.1)


def test_oom_killed_reads_memory_events(fake: FakeCgroup2, cgroup: V2Cgroup) -> None:
    cgroup.create(Limits(memory=32 * MiB), devices=DEFAULT_DEVICES)
    assert not cgroup.oom_killed()
    (fake.root / CONTAINER / "memory.events").write_text("low 0\nhigh 0\nmax 3\noom 1\noom_kill 1\n")
    assert cgroup.oom_killed()


def test_bad_cpuset_fails_and_leaves_no_leaf(fake: FakeCgroup2, cgroup: V2Cgroup) -> None:
    with pytest.raises(CgroupError, match=r"--cpuset-cpus 2,7: CPUs 7 are not available \(available: 0-3\)"):
        cgroup.create(Limits(cpuset_cpus="2,7"), devices=DEFAULT_DEVICES)
    assert not cgroup.exists()


def test_invalid_limits_fail_before_anything_is_made(fake: FakeCgroup2, cgroup: V2Cgroup) -> None:
    with pytest.raises(CgroupError, match="--cpuset-cpus"):
        cgroup.create(Limits(cpuset_cpus="0-"), devices=DEFAULT_DEVICES)
    assert not (fake.root / "pybox").exists()
    assert fake.writes == []


def test_missing_controller_is_named(tmp_path: Path) -> None:
    fake = FakeCgroup2(tmp_path / "cgroup", controllers=("cpu", "memory"))
    cgroup = V2Cgroup(CONTAINER, fake.root, fs=fake)
    with pytest.raises(CgroupError, match="--pids-limit needs the pids cgroup controller"):
        cgroup.create(Limits(pids=10), devices=DEFAULT_DEVICES)
    assert not (fake.root / "pybox").exists()

    cgroup.create(Limits(memory=32 * MiB), devices=DEFAULT_DEVICES)  # the controllers there are enabled
    assert (fake.root / "cgroup.subtree_control").read_text() == "cpu memory"


def test_inner_node_with_processes_is_refused(fake: FakeCgroup2, cgroup: V2Cgroup) -> None:
    fake.mkdir(fake.root / "pybox")
    fake.write(fake.root / "pybox" / "cgroup.procs", str(_unused_pid()))
    with pytest.raises(CgroupError, match="holds processes"):
        cgroup.create(Limits(), devices=DEFAULT_DEVICES)


@pytest.mark.parametrize(("memory_swap", "swap_max"), [
    (None, str(32 * MiB)),  # Docker: swap as large as memory
    (32 * MiB, "0"),  # memory+swap == memory: no swap
    (100 * MiB, str(68 * MiB)),
    (-1, "max"),
])
def test_swap_max_is_memory_swap_minus_memory(memory_swap: int | None, swap_max: str) -> None:
    settings = {s.file: s.value for s in translate(Limits(memory=32 * MiB, memory_swap=memory_swap))}
    assert settings["memory.swap.max"] == swap_max


@pytest.mark.parametrize(("shares", "weight"), [(2, 1), (512, 20), (1024, 39), (262144, 10000)])
def test_cpu_weight_follows_runc(shares: int, weight: int) -> None:
    assert cpu_weight(shares) == weight


@pytest.mark.parametrize(("limits", "flag"), [
    (Limits(memory=4 * MiB), "--memory"),
    (Limits(memory_swap=64 * MiB), "--memory-swap"),
    (Limits(memory=64 * MiB, memory_swap=32 * MiB), "--memory-swap"),
    (Limits(cpus=0.001), "--cpus"),
    (Limits(cpus=10_000.0), "--cpus"),
    (Limits(cpu_shares=1), "--cpu-shares"),
    (Limits(cpu_shares=300_000), "--cpu-shares"),
    (Limits(cpuset_cpus="3-1"), "--cpuset-cpus"),
    (Limits(cpuset_cpus="a"), "--cpuset-cpus"),
    (Limits(cpuset_cpus=""), "--cpuset-cpus"),
    (Limits(pids=-2), "--pids-limit"),
])
def test_invalid_limits_name_the_flag(limits: Limits, flag: str) -> None:
    with pytest.raises(CgroupError, match=f"^{flag}"):
        validate_limits(limits, host_cpus=4)


def test_zero_means_unset_as_in_docker() -> None:
    validate_limits(Limits(memory=0, memory_swap=0, cpus=0.0, cpu_shares=0, pids=0), host_cpus=1)
    validate_limits(Limits(memory_swap=-1), host_cpus=1)  # unlimited swap without --memory asks for nothing
    assert {s.file: s.value for s in translate(Limits(memory=0, cpus=0.0, cpu_shares=0, pids=0))} == {"pids.max": "max"}


def test_discover_this_machines_hybrid_layout() -> None:
    mounts = discover(HYBRID)
    assert mounts.mode == "v1"
    assert [(str(h.mount_point), sorted(h.controllers), h.unified) for h in mounts.hierarchies] == [
        ("/sys/fs/cgroup/cpu", ["cpu"], False),
        ("/sys/fs/cgroup/cpuacct", ["cpuacct"], False),
        ("/sys/fs/cgroup/cpuset", ["cpuset"], False),
        ("/sys/fs/cgroup/memory", ["memory"], False),
        ("/sys/fs/cgroup/devices", ["devices"], False),
        ("/sys/fs/cgroup/freezer", ["freezer"], False),
        ("/sys/fs/cgroup/blkio", ["blkio"], False),
        ("/sys/fs/cgroup/pids", ["pids"], False),
        ("/sys/fs/cgroup/systemd", ["name=systemd"], False),
        ("/sys/fs/cgroup/unified", [], True),
    ]


def test_discover_pure_v2() -> None:
    mounts = discover(PURE_V2)
    assert mounts.mode == "v2"
    assert [(str(h.mount_point), h.unified) for h in mounts.hierarchies] == [("/sys/fs/cgroup", True)]


def test_discover_pure_v1_with_comounted_controllers() -> None:
    mounts = discover(PURE_V1)
    assert mounts.mode == "v1"
    assert {str(h.mount_point): sorted(h.controllers) for h in mounts.hierarchies} == {
        "/sys/fs/cgroup/systemd": ["name=systemd"],
        "/sys/fs/cgroup/cpu,cpuacct": ["cpu", "cpuacct"],
        "/sys/fs/cgroup/net_cls,net_prio": ["net_cls", "net_prio"],
        "/sys/fs/cgroup/memory": ["memory"],
        "/sys/fs/cgroup/cpuset": ["cpuset"],
        "/sys/fs/cgroup/pids": ["pids"],
        "/sys/fs/cgroup/devices": ["devices"],
    }


def test_discover_unescapes_mount_points_and_ignores_bind_mounted_duplicates() -> None:
    text = (
        "40 31 0:37 / /cg\\040root/memory rw - cgroup cgroup rw,memory\n"
        "41 31 0:37 / /elsewhere/memory rw - cgroup cgroup rw,memory\n"
    )
    assert [str(h.mount_point) for h in discover(text).hierarchies] == ["/cg root/memory"]


def test_discover_without_cgroups_fails() -> None:
    with pytest.raises(CgroupError, match="no cgroup hierarchy"):
        discover("22 1 253:0 / / rw,relatime - ext4 /dev/vda rw\n")


def test_open_cgroup_builds_the_v2_driver_on_a_rebased_root(fake: FakeCgroup2) -> None:
    cgroup = open_cgroup(CONTAINER, mountinfo=PURE_V2, root=fake.root, fs=fake)
    assert isinstance(cgroup, V2Cgroup)
    cgroup.create(Limits(pids=5), devices=DEFAULT_DEVICES)
    assert (fake.root / CONTAINER / "pids.max").read_text() == "5"


def test_open_cgroup_builds_the_v1_driver_for_hybrid(tmp_path: Path) -> None:
    cgroup = open_cgroup(CONTAINER, mountinfo=HYBRID, root=tmp_path)
    assert isinstance(cgroup, V1Cgroup)
    assert cgroup.device_rules_enforced
    assert not cgroup.exists()


@pytest.mark.parametrize("path", ["", "/pybox/x", "pybox/../x", "pybox//x", "pybox/./x"])
def test_cgroup_paths_must_be_relative_and_plain(tmp_path: Path, path: str) -> None:
    with pytest.raises(CgroupError, match="relative"):
        V2Cgroup(path, tmp_path)
