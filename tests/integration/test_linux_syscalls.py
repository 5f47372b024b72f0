"""runtime/linux.py and drop_privileges against the real kernel, each in a forked child.

Every namespace, mount and credential change happens in a child that then
exits, so it dies with the child; the host's mount table and hostname are
checked to be unchanged afterwards. The child reports back through a pipe as
JSON and always ends in ``os._exit`` (DESIGN.md section 4).
"""

from __future__ import annotations

import errno
import json
import os
import signal
import socket
import stat
import sys
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from support.mounts import mounts_under
from support.skip import require_root

from pybox.runtime.capabilities import CAPABILITIES, DOCKER_DEFAULT, security_for
from pybox.runtime.linux import (
    CLONE_NEWNET,
    CLONE_NEWNS,
    CLONE_NEWUTS,
    MNT_DETACH,
    MS_NODEV,
    MS_NOSUID,
    MS_PRIVATE,
    MS_REC,
    CapSets,
    Linux,
)
from pybox.runtime.security import drop_privileges, reset_signals
from pybox.runtime.spec import Security, UserSpec


def _in_child(body: Callable[[], Any]) -> Any:
    """Run ``body`` in a forked child and return what it returned (JSON-able)."""
    # A forked child of a threaded process may inherit locks held by threads
    # that do not exist in it (DESIGN.md section 4): fork only single-threaded.
    assert len(os.listdir("/proc/self/task")) == 1, "pytest process has threads; refusing to fork"
    read_fd, write_fd = os.pipe()
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(read_fd)
            try:
                payload = {"result": body()}
            except BaseException:  # noqa: BLE001 - everything goes back to the parent
                payload = {"error": traceback.format_exc()}
            data = json.dumps(payload).encode()
            while data:
                data = data[os.write(write_fd, data):]
        finally:
            os._exit(0)
    os.close(write_fd)
    # Read to EOF before waiting, so a large report cannot block the child on a full pipe.
    with os.fdopen(read_fd, "rb") as pipe:
        raw = pipe.read()
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    payload = json.loads(raw)
    if "error" in payload:
        pytest.fail(f"child failed:\n{payload['error']}")
    return payload["result"]


def _mount_table() -> dict[str, str]:
    """Mount id -> its /proc/self/mountinfo line."""
    return {line.split(" ", 1)[0]: line for line in Path("/proc/self/mountinfo").read_text().splitlines()}


@pytest.fixture
def host_mounts_untouched(tmp_path: Path) -> Iterator[None]:
    """The host's mount table is the same after the test.

    Other sessions on this machine may mount and unmount their own things
    meanwhile, so the check is: every mount that was there and still is has
    the same line (a leaked ``rprivate`` would change "/"'s propagation), and
    nothing new appeared under this test's directory.
    """
    before = _mount_table()
    yield
    after = _mount_table()
    assert [line for mid, line in after.items() if mid in before and before[mid] != line] == []
    assert mounts_under(tmp_path) == []


def _status(*keys: str) -> dict[str, str]:
    fields = dict(line.split(":\t", 1) for line in Path("/proc/self/status").read_text().splitlines())
    return {key: fields[key].strip() for key in keys}


CAP_KEYS = ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb")
DEFAULT_HEX = "00000000a80425fb"
NONE_HEX = "0000000000000000"


@pytest.fixture(autouse=True)
def _root() -> None:
    require_root()


def test_errno_becomes_oserror_with_the_path(tmp_path: Path) -> None:
    with pytest.raises(OSError) as info:
        Linux().umount2(tmp_path)  # a directory, not a mount point: EINVAL, umount2(2)
    assert info.value.errno == errno.EINVAL
    assert info.value.filename == str(tmp_path)
    assert str(info.value) == f"[Errno 22] umount: Invalid argument: '{tmp_path}'"


def test_uts_namespace_keeps_the_host_hostname() -> None:
    host_before = socket.gethostname()

    def body() -> dict[str, str]:
        linux = Linux()
        host_ns = os.open("/proc/self/ns/uts", os.O_RDONLY | os.O_CLOEXEC)
        linux.unshare(CLONE_NEWUTS)
        linux.sethostname("pybox-uts-test")
        linux.setdomainname("pybox.test")
        inside = {"hostname": socket.gethostname(), "domain": Path("/proc/sys/kernel/domainname").read_text()}
        linux.setns(host_ns, CLONE_NEWUTS)
        return {**inside, "back": socket.gethostname()}

    seen = _in_child(body)
    assert seen == {"hostname": "pybox-uts-test", "domain": "pybox.test\n", "back": host_before}
    assert socket.gethostname() == host_before


@pytest.mark.usefixtures("host_mounts_untouched")
def test_mount_namespace_hides_the_childs_mounts(tmp_path: Path) -> None:
    target = tmp_path / "mnt"
    target.mkdir()

    def body() -> dict[str, Any]:
        linux = Linux()
        linux.unshare(CLONE_NEWNS)
        # Without this, a shared "/" would propagate the tmpfs back to the host.
        linux.mount(None, "/", None, MS_REC | MS_PRIVATE)
        linux.mount("tmpfs", target, "tmpfs", MS_NOSUID | MS_NODEV, "size=1m,mode=755")
        linux.mknod(target / "null", stat.S_IFCHR | 0o666, os.makedev(1, 3))
        linux.symlink("null", target / "link")
        return {"mounts": mounts_under(target), "null_is_chr": stat.S_ISCHR(os.stat(target / "link").st_mode)}

    seen = _in_child(body)
    assert seen == {"mounts": [str(target.resolve())], "null_is_chr": True}
    assert mounts_under(target) == []
    assert list(target.iterdir()) == [], "the tmpfs content stayed in the child's namespace"


@pytest.mark.usefixtures("host_mounts_untouched")
def test_pivot_root_into_a_tmpfs(tmp_path: Path) -> None:
    new_root = tmp_path / "root"
    new_root.mkdir()

    def body() -> dict[str, Any]:
        linux = Linux()
        linux.unshare(CLONE_NEWNS)
        linux.mount(None, "/", None, MS_REC | MS_PRIVATE)
        linux.mount("tmpfs", new_root, "tmpfs", 0, "size=1m")
        (new_root / "only-in-new-root").mkdir()
        linux.chdir(new_root)
        # pivot_root(2) NOTES: the old root ends up on top of "." and is detached
        # at once, so no put_old directory is needed.
        linux.pivot_root(".", ".")
        linux.umount2(".", MNT_DETACH)
        return {"root": sorted(os.listdir("/")), "cwd": os.getcwd()}

    assert _in_child(body) == {"root": ["only-in-new-root"], "cwd": "/"}
    assert list(new_root.iterdir()) == []


def _drop_and_report(security: Security, user: UserSpec) -> dict[str, Any]:
    def body() -> dict[str, Any]:
        linux = Linux()
        drop_privileges(linux, security, user)
        sets = linux.capget()
        return {**_status(*CAP_KEYS, "Uid", "Gid", "Groups", "NoNewPrivs"),
                "capget": [sets.effective, sets.permitted, sets.inheritable]}

    return _in_child(body)


def test_root_keeps_dockers_default_set() -> None:
    seen = _drop_and_report(security_for(uid=0, caps=DOCKER_DEFAULT, privileged=False, no_new_privileges=False),
                            UserSpec())
    assert {k: seen[k] for k in CAP_KEYS} == {"CapInh": NONE_HEX, "CapPrm": DEFAULT_HEX, "CapEff": DEFAULT_HEX,
                                              "CapBnd": DEFAULT_HEX, "CapAmb": NONE_HEX}
    assert seen["capget"] == [0xA80425FB, 0xA80425FB, 0]
    assert seen["Uid"].split() == ["0"] * 4


def test_non_root_user_has_only_the_bounding_set() -> None:
    seen = _drop_and_report(security_for(uid=1000, caps=DOCKER_DEFAULT, privileged=False, no_new_privileges=True),
                            UserSpec(uid=1000, gid=1001, additional_gids=(27, 1002)))
    assert {k: seen[k] for k in CAP_KEYS} == {"CapInh": NONE_HEX, "CapPrm": NONE_HEX, "CapEff": NONE_HEX,
                                              "CapBnd": DEFAULT_HEX, "CapAmb": NONE_HEX}
    assert seen["Uid"].split() == ["1000"] * 4
    assert seen["Gid"].split() == ["1001"] * 4
    assert seen["Groups"].split() == ["27", "1002"]
    assert seen["NoNewPrivs"] == "1"


def test_ambient_capability_survives_for_a_non_root_user() -> None:
    bind = frozenset({"CAP_NET_BIND_SERVICE"})
    security = Security(bounding=DOCKER_DEFAULT, effective=bind, permitted=bind, inheritable=bind, ambient=bind)
    seen = _drop_and_report(security, UserSpec(uid=1000, gid=1000))
    bit = f"{1 << CAPABILITIES['CAP_NET_BIND_SERVICE']:016x}"
    assert {k: seen[k] for k in CAP_KEYS} == {"CapInh": bit, "CapPrm": bit, "CapEff": bit, "CapBnd": DEFAULT_HEX,
                                              "CapAmb": bit}


def test_seccomp_hook_runs_where_runc_loads_the_filter() -> None:
    def status_when_loaded(no_new_privileges: bool) -> dict[str, str]:
        def body() -> dict[str, str]:
            seen: dict[str, str] = {}
            security = security_for(uid=1000, caps=DOCKER_DEFAULT, privileged=False,
                                    no_new_privileges=no_new_privileges)
            drop_privileges(Linux(), security, UserSpec(uid=1000, gid=1000),
                            lambda: seen.update(_status("CapEff", "NoNewPrivs", "Uid")))
            return seen

        return _in_child(body)

    # Without no_new_privs, still root with every capability, CAP_SYS_ADMIN included.
    early = status_when_loaded(False)
    assert int(early["CapEff"], 16) >> CAPABILITIES["CAP_SYS_ADMIN"] & 1
    assert (early["NoNewPrivs"], early["Uid"].split()[0]) == ("0", "0")
    # With it, last: already uid 1000, no capabilities, no_new_privs set.
    late = status_when_loaded(True)
    assert late == {"CapEff": NONE_HEX, "NoNewPrivs": "1", "Uid": "1000\t1000\t1000\t1000"}


def test_reset_signals_clears_pythons_ignored_signals_and_the_mask() -> None:
    def body() -> dict[str, Any]:
        signal.pthread_sigmask(signal.SIG_BLOCK, [signal.SIGUSR1])
        before = _status("SigIgn", "SigBlk")
        reset_signals(Linux())
        # SigCgt is left out: exec resets caught signals by itself, and glibc
        # keeps its own handler for an internal real-time signal once the
        # process (here pytest) has had threads.
        return {"before": before, "after": _status("SigIgn", "SigBlk"),
                "sigpipe_default": signal.getsignal(signal.SIGPIPE) == signal.SIG_DFL}

    seen = _in_child(body)
    sigpipe_bit = 1 << (signal.SIGPIPE - 1)
    assert int(seen["before"]["SigIgn"], 16) & sigpipe_bit, "Python ignores SIGPIPE"
    assert int(seen["before"]["SigBlk"], 16) != 0
    assert seen["after"] == {"SigIgn": NONE_HEX, "SigBlk": NONE_HEX}
    assert seen["sigpipe_default"]


def test_set_link_up_in_a_new_network_namespace() -> None:
    def connect_loopback() -> str:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            try:
                sock.connect(("127.0.0.1", 9))
            except OSError as e:
                return errno.errorcode[e.errno or 0]
            return "ok"

    def body() -> list[str]:
        linux = Linux()
        linux.unshare(CLONE_NEWNET)
        down = connect_loopback()  # a new netns has lo, down
        linux.set_link_up("lo")
        return [down, connect_loopback()]

    assert _in_child(body) == ["ENETUNREACH", "ok"]


def test_capset_round_trips_through_capget() -> None:
    def body() -> list[int]:
        linux = Linux()
        linux.capset(CapSets(effective=0xA80425FB, permitted=0xA80425FB, inheritable=1 << 32 | 1))
        sets = linux.capget()
        return [sets.effective, sets.permitted, sets.inheritable]

    # Inheritable bit 32 (CAP_MAC_OVERRIDE) checks the second __user_cap_data_struct.
    assert _in_child(body) == [0xA80425FB, 0xA80425FB, 1 << 32 | 1]
