"""Seccomp filters against the real kernel: a child process loads one, then tries syscalls.

Each child is a fresh ``python -I`` (no threads to worry about, and a filter
dies with its process). It reports, as JSON, the errno each probe got
("OK" when the call succeeded). Every probe that the default profile must deny
is made with arguments that fail harmlessly (EINVAL, EFAULT, EBADF) or only
touch the child itself when nothing filters it, so a filter that lets one
through shows up as a wrong errno, not as damage to the host.

``ptrace`` is probed on a pid that cannot exist: Docker's profile allows it on
Linux >= 4.8, and attaching to a real process (the host's PID 1) from a root
test would stop it.
"""

from __future__ import annotations

import errno
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from support.skip import require, require_root

from pybox.runtime import libseccomp
from pybox.runtime.seccomp import host_kernel

_CHILD = r"""
import ctypes, dataclasses, errno, json, os, socket, subprocess, sys, threading
from pathlib import Path

from pybox.errors import PyboxError
from pybox.runtime import seccomp
from pybox.runtime.capabilities import CAPABILITIES, DOCKER_DEFAULT
from pybox.runtime.libseccomp import LibSeccomp
from pybox.runtime.linux import CapSets, Linux

config = json.loads(sys.argv[1])
work = Path(config["work"])
lib = LibSeccomp()
libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long


def raw(name, *args):
    # syscall(2) by number: glibc wrappers may pick another syscall (mkdir -> mkdirat) or none.
    ctypes.set_errno(0)
    result = libc.syscall(ctypes.c_long(lib.syscall_resolve_name(name)), *(ctypes.c_long(a) for a in args))
    return "OK" if result != -1 else errno.errorcode[ctypes.get_errno()]


def call(fn):
    try:
        fn()
    except OSError as e:
        return errno.errorcode[e.errno]
    return "OK"


def files():
    path = work / "file"
    path.write_text("written")
    assert path.read_text() == "written"


def fork_wait():
    pid = os.fork()
    if pid == 0:
        os._exit(7)
    assert os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) == 7


def thread():
    # glibc's pthread_create tries clone3 first and falls back to clone on ENOSYS.
    done = []
    t = threading.Thread(target=done.append, args=(1,))
    t.start()
    t.join()
    assert done == [1]


def socket_inet():
    socket.socket(socket.AF_INET, socket.SOCK_STREAM).close()


NO_PID = 0x7FFFFFFF  # above PID_MAX_LIMIT: ESRCH whenever ptrace itself is allowed
PROBES = {
    # Docker's profile denies these (with the default capabilities).
    "unshare": lambda: raw("unshare", 0x04000000),  # CLONE_NEWUTS, in the child only
    "mount": lambda: raw("mount", 0, 0, 0, 0, 0),  # EFAULT when unfiltered
    "umount2": lambda: raw("umount2", 0, 0),
    "setns": lambda: raw("setns", -1, 0),
    "keyctl": lambda: raw("keyctl", 0, -3, 0),  # KEYCTL_GET_KEYRING_ID of the session keyring
    "add_key": lambda: raw("add_key", 0, 0, 0, 0, 0),
    "request_key": lambda: raw("request_key", 0, 0, 0, 0),
    "kexec_load": lambda: raw("kexec_load", 0, 0, 0, 0xDEAD0000),  # invalid flags
    "bpf": lambda: raw("bpf", -1, 0, 0),
    "reboot": lambda: raw("reboot", 0, 0, 0, 0),  # wrong magic
    "swapon": lambda: raw("swapon", 0, 0),
    "init_module": lambda: raw("init_module", 0, 0, 0),
    "open_by_handle_at": lambda: raw("open_by_handle_at", -1, 0, 0),
    "clone_namespace": lambda: raw("clone", 0x04000000 | 0x00010000, 0, 0, 0, 0),  # NEWUTS|THREAD: EINVAL
    "socket_alg": lambda: raw("socket", 38, socket.SOCK_SEQPACKET, 0),
    "socket_vsock": lambda: raw("socket", 40, socket.SOCK_STREAM, 0),
    "personality_other": lambda: raw("personality", 0x0040000),  # ADDR_NO_RANDOMIZE
    # Answered, not denied.
    "clone3": lambda: raw("clone3", 0, 0),  # EINVAL (size 0) when unfiltered
    "ptrace": lambda: raw("ptrace", 16, NO_PID, 0, 0),  # PTRACE_ATTACH
    "process_vm_readv": lambda: raw("process_vm_readv", NO_PID, 0, 0, 0, 0, 0),  # nothing to copy: 0
    # Allowed: what a shell and its programs do.
    "getpid": lambda: raw("getpid"),
    "personality_query": lambda: raw("personality", 0xFFFFFFFF),
    "files": lambda: call(files),
    "mkdir": lambda: call(lambda: os.mkdir(work / "dir")),
    "fork_wait": lambda: call(fork_wait),
    "thread": lambda: call(thread),
    "exec_true": lambda: "OK" if subprocess.run(["/bin/true"]).returncode == 0 else "FAILED",
    "socket_inet": lambda: call(socket_inet),
}


def status(key):
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return line.split()[1]


if config["profile"] == "default":
    profile = seccomp.default_profile()
else:
    profile = seccomp.read_docker_profile(Path(config["profile"]))
if config.get("default_errno") is not None:
    profile = dataclasses.replace(profile, default_errno_ret=config["default_errno"])
if config.get("drop_sys_admin"):
    linux = Linux()
    sets = linux.capget()
    linux.capset(dataclasses.replace(sets, effective=sets.effective & ~(1 << CAPABILITIES["CAP_SYS_ADMIN"])))
flt = seccomp.build(profile, caps=DOCKER_DEFAULT, native_arch=seccomp.host_arch(), kernel=seccomp.host_kernel())
try:
    seccomp.load(flt, no_new_privs=config["no_new_privs"], lib=lib)
except PyboxError as e:
    print(json.dumps({"load_error": str(e)}))
    sys.exit(0)
report = {"NoNewPrivs": status("NoNewPrivs"), "Seccomp": status("Seccomp")}
report["probes"] = {name: probe() for name, probe in PROBES.items()}
print(json.dumps(report))
"""

DENIED = ("unshare", "mount", "umount2", "setns", "keyctl", "add_key", "request_key", "kexec_load", "bpf", "reboot",
          "swapon", "init_module", "open_by_handle_at", "clone_namespace", "socket_alg", "socket_vsock",
          "personality_other")
ALLOWED = ("getpid", "personality_query", "files", "mkdir", "fork_wait", "thread", "exec_true", "socket_inet")
# An errno none of the probes can get from the kernel: seeing it proves the filter answered.
MARK = errno.ENOANO


@pytest.fixture(autouse=True)
def _root_and_libseccomp() -> None:
    require_root()
    try:
        libseccomp.LibSeccomp()
    except OSError as e:
        require(False, f"needs {libseccomp.SONAME} (Debian package libseccomp2): {e}")


def _child(tmp_path: Path, **config: Any) -> dict[str, Any]:
    work = tmp_path / "work"
    work.mkdir()
    proc = subprocess.run([sys.executable, "-I", "-c", _CHILD, json.dumps({"work": str(work), **config})],
                          capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, f"child exited {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    report: dict[str, Any] = json.loads(proc.stdout)
    return report


def _pick(probes: dict[str, str], names: tuple[str, ...]) -> dict[str, str]:
    return {name: probes[name] for name in names}


def test_default_profile_denies_what_dockers_denies_with_eperm(tmp_path: Path) -> None:
    report = _child(tmp_path, profile="default", no_new_privs=True)
    assert _pick(report["probes"], DENIED) == dict.fromkeys(DENIED, "EPERM")


def test_the_denials_come_from_the_filter(tmp_path: Path) -> None:
    """The same profile with another default errno: each denial carries it, so none was the kernel's own EPERM."""
    report = _child(tmp_path, profile="default", no_new_privs=True, default_errno=MARK)
    assert _pick(report["probes"], DENIED) == dict.fromkeys(DENIED, errno.errorcode[MARK])


def test_default_profile_allows_a_workload(tmp_path: Path) -> None:
    report = _child(tmp_path, profile="default", no_new_privs=True)
    assert _pick(report["probes"], ALLOWED) == dict.fromkeys(ALLOWED, "OK")


def test_clone3_answers_enosys_so_glibc_falls_back_to_clone(tmp_path: Path) -> None:
    probes = _child(tmp_path, profile="default", no_new_privs=True, default_errno=MARK)["probes"]
    assert probes["clone3"] == "ENOSYS"
    assert (probes["thread"], probes["exec_true"]) == ("OK", "OK")


def test_ptrace_follows_the_kernel_version_rule(tmp_path: Path) -> None:
    probes = _child(tmp_path, profile="default", no_new_privs=True, default_errno=MARK)["probes"]
    # Allowed from Linux 4.8 on: the kernel answers "no such process", and copying nothing succeeds.
    if host_kernel() >= (4, 8):
        expected = {"ptrace": "ESRCH", "process_vm_readv": "OK"}
    else:
        expected = dict.fromkeys(("ptrace", "process_vm_readv"), errno.errorcode[MARK])
    assert _pick(probes, ("ptrace", "process_vm_readv")) == expected


def test_custom_docker_profile_denies_mkdir_only(tmp_path: Path) -> None:
    profile = tmp_path / "no-mkdir.json"
    # Both syscalls: glibc's mkdir() uses mkdirat on architectures without mkdir (arm64).
    profile.write_text(json.dumps({
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO"}],
    }))
    probes = _child(tmp_path, profile=str(profile), no_new_privs=True)["probes"]
    assert probes["mkdir"] == "EPERM"
    others = tuple(name for name in ALLOWED if name != "mkdir") + ("unshare", "keyctl")
    assert _pick(probes, others) == dict.fromkeys(others, "OK")


def test_without_no_new_privs_root_loads_and_the_flag_stays_off(tmp_path: Path) -> None:
    report = _child(tmp_path, profile="default", no_new_privs=False)
    assert (report["NoNewPrivs"], report["Seccomp"]) == ("0", "2")
    assert report["probes"]["mount"] == "EPERM"


def test_with_no_new_privs_the_flag_is_on(tmp_path: Path) -> None:
    report = _child(tmp_path, profile="default", no_new_privs=True)
    assert (report["NoNewPrivs"], report["Seccomp"]) == ("1", "2")


def test_without_no_new_privs_or_cap_sys_admin_loading_fails_clearly(tmp_path: Path) -> None:
    """Why drop_privileges loads the filter before capset when no_new_privs is off (seccomp(2) EACCES)."""
    report = _child(tmp_path, profile="default", no_new_privs=False, drop_sys_admin=True)
    assert "cannot load the filter" in report["load_error"]
    assert "Permission denied" in report["load_error"]
