"""The cgroup v1 driver against the real kernel: limits, device policy, pids, OOM, cleanup.

Runs on v1 and hybrid hosts (this development machine is hybrid); the v2
driver is tested against a fake tree in tests/unit/test_cgroups_v2_fake.py.
Processes join a cgroup between fork and exec through ``preexec_fn``, as the
runtime's child joins before it unshares: what they can do is what a
container's process can do.
"""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from support.skip import require, require_root

from pybox.runtime.cgroups import (
    DEFAULT_DEVICES,
    Cgroup,
    CgroupError,
    CgroupMounts,
    DevicePolicy,
    discover,
    open_cgroup,
)
from pybox.runtime.spec import Limits

pytestmark = pytest.mark.root

MiB = 1024 * 1024
TIMEOUT = 60
MakeCgroup = Callable[..., Cgroup]

# Opens each path given and prints "<path> ok" or "<path> <exception name>".
OPEN_PROBE = """
import sys
for path in sys.argv[1:]:
    try:
        open(path, "rb").close()
        print(path, "ok")
    except OSError as e:
        print(path, type(e).__name__)
"""

# Forks up to 20 children that wait to be killed, then reports how many it got.
FORK_LOOP = """
import errno, os, signal
started = 0
for _ in range(20):
    try:
        pid = os.fork()
    except OSError as e:
        print("forked", started, "then", errno.errorcode[e.errno], flush=True)
        break
    if pid == 0:
        os.closerange(0, 3)  # let the test's pipe reach EOF while the child waits
        signal.pause()
        os._exit(0)
    started += 1
else:
    print("forked", started, flush=True)
"""


@pytest.fixture
def mounts() -> CgroupMounts:
    require_root()
    layout = discover()
    require(layout.mode == "v1", "needs a cgroup v1 or hybrid host")
    return layout


def _test_dirs(mounts: CgroupMounts) -> set[Path]:
    return {d for h in mounts.hierarchies for d in h.mount_point.glob("pybox-test*")}


@pytest.fixture
def make_cgroup(mounts: CgroupMounts) -> Iterator[MakeCgroup]:
    """Create cgroups under pybox-test-<random>/; afterwards destroy them and check nothing is left.

    Other sessions' pybox-test* directories that existed before the test are not this test's.
    """
    before = _test_dirs(mounts)
    base = f"pybox-test-{secrets.token_hex(6)}"
    made: list[Cgroup] = []

    def make(limits: Limits | None = None, devices: DevicePolicy = DEFAULT_DEVICES) -> Cgroup:
        cgroup = open_cgroup(f"{base}/c{len(made)}")
        made.append(cgroup)
        cgroup.create(limits or Limits(), devices=devices)
        return cgroup

    yield make
    for cgroup in made:
        cgroup.destroy()
    open_cgroup(base).destroy()
    assert _test_dirs(mounts) - before == set()


def _dir(mounts: CgroupMounts, controller: str, cgroup: Cgroup) -> Path:
    hierarchy = next(h for h in mounts.hierarchies if controller in h.controllers)
    return hierarchy.mount_point / cgroup.path


def _read(mounts: CgroupMounts, controller: str, cgroup: Cgroup, name: str) -> str:
    return (_dir(mounts, controller, cgroup) / name).read_text().strip()


def _run_inside(cgroup: Cgroup, *argv: str) -> subprocess.CompletedProcess[str]:
    """Run argv with its process in ``cgroup`` from before exec, as the runtime's child is."""
    return subprocess.run(
        argv, preexec_fn=lambda: cgroup.add_process(os.getpid()),
        capture_output=True, text=True, timeout=TIMEOUT, check=False,
    )


def test_limits_are_written(mounts: CgroupMounts, make_cgroup: MakeCgroup) -> None:
    cgroup = make_cgroup(Limits(memory=32 * MiB, cpus=0.5, cpu_shares=512, cpuset_cpus="0", pids=20))

    assert _read(mounts, "memory", cgroup, "memory.limit_in_bytes") == str(32 * MiB)
    if (_dir(mounts, "memory", cgroup) / "memory.memsw.limit_in_bytes").exists():  # swap accounting on
        assert _read(mounts, "memory", cgroup, "memory.memsw.limit_in_bytes") == str(64 * MiB)
    assert _read(mounts, "cpu", cgroup, "cpu.cfs_period_us") == "100000"
    assert _read(mounts, "cpu", cgroup, "cpu.cfs_quota_us") == "50000"
    assert _read(mounts, "cpu", cgroup, "cpu.shares") == "512"
    assert _read(mounts, "cpuset", cgroup, "cpuset.cpus") == "0"
    assert _read(mounts, "cpuset", cgroup, "cpuset.mems") != ""  # copied down from the parent
    assert _read(mounts, "pids", cgroup, "pids.max") == "20"
    assert set(_read(mounts, "devices", cgroup, "devices.list").splitlines()) == {
        rule.v1_line() for rule in DEFAULT_DEVICES.rules
    }


def test_a_process_is_tracked_killed_and_removed(mounts: CgroupMounts, make_cgroup: MakeCgroup) -> None:
    cgroup = make_cgroup()
    sleeper = subprocess.Popen(["sleep", "30"])
    try:
        cgroup.add_process(sleeper.pid)
        assert cgroup.pids() == [sleeper.pid]
        joined = Path(f"/proc/{sleeper.pid}/cgroup").read_text().splitlines()
        assert len(joined) == len(mounts.hierarchies)
        assert all(line.endswith(f":/{cgroup.path}") for line in joined)

        cgroup.kill_all(signal.SIGKILL)
        assert sleeper.wait(timeout=TIMEOUT) == -signal.SIGKILL
    finally:
        sleeper.kill()
        sleeper.wait()

    cgroup.destroy()
    assert not cgroup.exists()
    assert [h.mount_point for h in mounts.hierarchies if (h.mount_point / cgroup.path).exists()] == []


def test_default_devices_deny_kmsg_and_allow_null(make_cgroup: MakeCgroup) -> None:
    outside = subprocess.run([sys.executable, "-I", "-c", OPEN_PROBE, "/dev/kmsg"],
                             capture_output=True, text=True, timeout=TIMEOUT, check=True)
    assert outside.stdout.split() == ["/dev/kmsg", "ok"]  # root outside may read it (c 1:11)

    cgroup = make_cgroup()
    inside = _run_inside(cgroup, sys.executable, "-I", "-c", OPEN_PROBE, "/dev/kmsg", "/dev/null")
    assert inside.returncode == 0, inside.stderr
    assert inside.stdout.splitlines() == ["/dev/kmsg PermissionError", "/dev/null ok"]


def test_pids_limit_stops_a_fork_loop(make_cgroup: MakeCgroup) -> None:
    cgroup = make_cgroup(Limits(pids=5))
    result = _run_inside(cgroup, sys.executable, "-I", "-c", FORK_LOOP)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["forked", "4", "then", "EAGAIN"]  # 5 with the parent
    assert len(cgroup.pids()) == 4  # the children still wait, orphaned

    cgroup.destroy()  # kills them
    assert not cgroup.exists()


def test_oom_kill_is_detected(make_cgroup: MakeCgroup) -> None:
    cgroup = make_cgroup(Limits(memory=16 * MiB))
    assert not cgroup.oom_killed()
    # bytes * n writes every page, unlike bytearray(n), whose zero pages are never touched.
    result = _run_inside(cgroup, sys.executable, "-I", "-c", "b = b'x' * (100 * 1024 * 1024)")
    assert result.returncode == -signal.SIGKILL, result.stderr
    assert cgroup.oom_killed()


def test_an_unavailable_cpuset_is_refused_and_leaves_nothing(make_cgroup: MakeCgroup) -> None:
    with pytest.raises(CgroupError, match=r"--cpuset-cpus 4095: CPUs 4095 are not available"):
        make_cgroup(Limits(cpuset_cpus="4095"))


def test_invalid_limits_create_nothing(mounts: CgroupMounts) -> None:
    cgroup = open_cgroup(f"pybox-test-{secrets.token_hex(6)}/c")
    with pytest.raises(CgroupError, match="--memory"):
        cgroup.create(Limits(memory=1 * MiB), devices=DEFAULT_DEVICES)
    assert not cgroup.exists()
    assert not any((h.mount_point / cgroup.path.split("/")[0]).exists() for h in mounts.hierarchies)
