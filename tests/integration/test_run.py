"""`pybox run` on the real kernel: what a process inside the container sees.

The image is the session's umoci-made busybox (User nobody, WorkingDir /work,
Cmd /bin/sh). After every test nothing may remain: no mount under the store,
no cgroup under pybox/, no container directory of a --rm run.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from support.containers import container_cgroups
from support.mounts import mounts_under
from support.skip import require_root

def _sh(box, script: str, *options: str, check: bool = True):
    return box(*options, "--", "sh", "-c", script, check=check)


def _caps(text: str) -> dict[str, str]:
    return {k: v.strip() for k, v in (line.split(":", 1) for line in text.splitlines() if line.startswith("Cap"))}


def test_pid_1_and_no_host_processes(box) -> None:
    out = _sh(box, "echo $$; ls /proc | grep -c '^[0-9]*$'", "-u", "0").stdout.split()
    assert out[0] == "1"
    assert int(out[1]) <= 3  # sh, the ls pipeline


def test_hostname_defaults_to_the_short_id_and_h_sets_it(box) -> None:
    name = _sh(box, "hostname; cat /etc/hostname").stdout.split()
    assert len(name[0]) == 12 and all(c in "0123456789abcdef" for c in name[0]) and name[1] == name[0]
    assert _sh(box, "hostname; grep -c myhost /etc/hosts", "-h", "myhost").stdout.split() == ["myhost", "1"]


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        (("-u", "0"), {"CapInh": "0" * 16, "CapPrm": "00000000a80425fb", "CapEff": "00000000a80425fb",
                       "CapBnd": "00000000a80425fb", "CapAmb": "0" * 16}),
        (("-u", "1000"), {"CapInh": "0" * 16, "CapPrm": "0" * 16, "CapEff": "0" * 16,
                          "CapBnd": "00000000a80425fb", "CapAmb": "0" * 16}),
        (("-u", "0", "--cap-drop", "ALL"), {"CapPrm": "0" * 16, "CapEff": "0" * 16, "CapBnd": "0" * 16}),
        (("-u", "0", "--cap-drop", "all", "--cap-add", "net_bind_service"),
         {"CapEff": f"{1 << 10:016x}", "CapBnd": f"{1 << 10:016x}"}),
        (("-u", "0", "--cap-add", "CAP_NET_ADMIN", "--cap-drop", "mknod"),
         {"CapEff": f"{(0xa80425fb | 1 << 12) & ~(1 << 27):016x}"}),
    ],
)
def test_capabilities(box, options, expected) -> None:
    caps = _caps(_sh(box, "grep Cap /proc/self/status", *options).stdout)
    assert {k: caps[k] for k in expected} == expected


def test_mount_is_refused_and_proc_is_guarded(box) -> None:
    out = _sh(box, "mount -t tmpfs none /dev/shm 2>/dev/null; echo mount=$?; "
                   "echo x 2>/dev/null > /proc/sys/kernel/domainname; echo procsys=$?; "
                   "wc -c < /proc/keys; ls /sys/firmware | wc -l; "
                   "grep -c ' /proc/sys ' /proc/self/mountinfo", "-u", "0").stdout.split()
    assert out[0] == "mount=1" and out[1] == "procsys=1"
    assert out[2:] == ["0", "0", "1"]


def test_device_policy_denies_nodes_outside_dockers_list(box) -> None:
    # /dev/kmsg (c 1:11) is readable by root on the host, so only the policy can stop it.
    # One read returns one record; the buffer must hold the longest (8 KiB, CONSOLE_EXT_LOG_MAX).
    fd = os.open("/dev/kmsg", os.O_RDONLY | os.O_NONBLOCK)
    try:
        assert os.read(fd, 16384)
    finally:
        os.close(fd)
    # CAP_SYSLOG is added so that only the device cgroup can be what refuses.
    out = _sh(box, "mknod /dev/kmsg2 c 1 11 && echo made; dd if=/dev/kmsg2 of=/dev/null bs=16384 count=1 2>&1; "
                   "echo null > /dev/null && echo null-ok", "-u", "0", "--cap-add", "SYSLOG").stdout
    assert "made" in out and "Operation not permitted" in out and "null-ok" in out
    # --device adds the node and its rule: then the same read works.
    allowed = _sh(box, "dd if=/dev/kmsg bs=16384 count=1 2>/dev/null | wc -c", "-u", "0", "--cap-add", "SYSLOG",
                  "--device", "/dev/kmsg").stdout
    assert int(allowed) > 0


def test_network_none_has_only_lo_up_and_host_sees_the_hosts(box) -> None:
    assert _sh(box, "ls /sys/class/net; cat /sys/class/net/lo/flags").stdout.split() == ["lo", "0x9"]
    host = sorted(os.listdir("/sys/class/net"))
    assert _sh(box, "ls /sys/class/net", "--network", "host").stdout.split() == host


def test_bridge_network_is_not_yet(box) -> None:
    proc = box("--network", "bridge", "--", "true", check=False)
    assert proc.returncode == 125 and "not available yet" in proc.stderr


def test_memory_limit_ooms_with_137_and_records_it(box, busybox_store) -> None:
    root, _ = busybox_store
    proc = box("--memory", "32m", "--name", "oomer", "--", "sh", "-c",
               "x=$(head -c 200000000 /dev/zero | tr '\\0' a); echo survived", rm=False, check=False)
    assert proc.returncode == 137 and "survived" not in proc.stdout
    (cid,) = [c for c in os.listdir(root / "containers")
              if json.loads((root / "containers" / c / "config.json").read_text())["Name"] == "oomer"]
    state = json.loads((root / "containers" / cid / "state.json").read_text())
    assert state["oom_killed"] is True and state["exit_code"] == 137 and state["status"] == "exited"
    import shutil

    shutil.rmtree(root / "containers" / cid)


def test_pids_limit_stops_a_fork_loop(box) -> None:
    out = _sh(box, "for i in $(seq 1 100); do sleep 3 & done; echo all-started", "--pids-limit", "20", check=False)
    assert "can't fork" in out.stderr and "all-started" not in out.stdout
    # The host is fine: it still starts processes.
    assert subprocess.run(["true"], timeout=10).returncode == 0


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        ((), "65534 65534 65534"),
        (("-u", "0"), "0 0 0"),
        (("-u", "1000"), "1000 0 0"),
        (("-u", "1000:1000"), "1000 1000 1000"),
        (("-u", "nobody:root", "--group-add", "1234"), "65534 0 0 1234"),
    ],
)
def test_users_and_groups(box, options, expected) -> None:
    # The kernel's view, not busybox id's (which reads /etc/group for named users).
    script = "set -- $(grep -E '^(Uid|Gid|Groups):' /proc/self/status); echo $2 $7 ${12} ${13} ${14}"
    assert _sh(box, script, *options).stdout.split() == expected.split()


def test_bad_user_is_one_line(box) -> None:
    proc = box("-u", "ghost", "--", "id", check=False)
    assert proc.returncode == 125
    assert proc.stderr == "pybox: error: unable to find user ghost: no matching entries in passwd file\n"


def test_environment(box, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    env_file = tmp_path / "env"
    env_file.write_text("# comment\nFROM_FILE=yes\nFOO=from-file\n")
    monkeypatch.setenv("HOST_ONLY", "host-value")
    monkeypatch.delenv("NOT_ON_HOST", raising=False)
    out = box("--env-file", str(env_file), "-e", "FOO=bar", "-e", "HOST_ONLY", "-e", "NOT_ON_HOST",
              "-e", "PYBOX_TEST", "--", "env").stdout.splitlines()
    env = dict(line.split("=", 1) for line in out)
    assert env["FOO"] == "bar" and env["FROM_FILE"] == "yes" and env["HOST_ONLY"] == "host-value"
    assert "NOT_ON_HOST" not in env and "PYBOX_TEST" not in env  # -e K without a host value unsets it
    assert env["HOME"] == "/nonexistent" and len(env["HOSTNAME"]) == 12 and "PATH" in env


def test_workdir_from_image_and_created_when_missing(box) -> None:
    assert box("--", "pwd").stdout.strip() == "/work"
    assert box("-w", "/made/up/dir", "--", "pwd").stdout.strip() == "/made/up/dir"


@pytest.mark.parametrize(
    ("options", "args", "expected"),
    [
        ((), ("echo", "a", "b"), "a b"),
        (("--entrypoint", "echo"), ("x",), "x"),
        (("--entrypoint", "echo"), (), ""),
        (("--entrypoint", ""), ("echo", "reset"), "reset"),
    ],
)
def test_entrypoint_and_cmd(box, options, args, expected) -> None:
    assert box(*options, "--", *args).stdout.strip() == expected


def test_image_cmd_runs_without_arguments(box) -> None:
    proc = box("-i", input="echo from-stdin; exit 4\n", check=False)
    assert proc.returncode == 4 and proc.stdout.strip() == "from-stdin"


def test_no_command_at_all(box) -> None:
    proc = box("--entrypoint", "", check=False)
    assert proc.returncode == 125 and "no command specified" in proc.stderr


def test_bind_mounts(box, tmp_path: Path) -> None:
    rw = tmp_path / "rw"
    rw.mkdir()
    (rw / "in").write_text("from host\n")
    created = tmp_path / "created" / "later"
    ro = tmp_path / "ro"
    ro.mkdir()
    out = _sh(box, "cat /rw/in; echo written > /rw/out; echo x > /ro/f 2>/dev/null || echo ro-refused; "
                   "ls -d /made && echo made-ok; echo y > /m/f 2>/dev/null || echo mount-ro",
              "-u", "0", "-v", f"{rw}:/rw", "-v", f"{ro}:/ro:ro", "-v", f"{created}:/made",
              "--mount", f"type=bind,source={ro},target=/m,readonly").stdout.splitlines()
    assert out == ["from host", "ro-refused", "/made", "made-ok", "mount-ro"]
    assert (rw / "out").read_text() == "written\n" and created.is_dir() and not (ro / "f").exists()


def test_read_only_bind_covers_mounts_below_its_source(box, tmp_path: Path) -> None:
    """`-v DIR:/x:ro` where DIR has a mount inside: that mount is read-only in the container too."""
    source = tmp_path / "src"
    (source / "sub").mkdir(parents=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "pybox-test", str(source / "sub")], check=True)
    try:
        out = _sh(box, "echo a > /x/f 2>/dev/null || echo top-refused; echo b > /x/sub/f 2>/dev/null || "
                       "echo sub-refused", "-u", "0", "-v", f"{source}:/x:ro").stdout.splitlines()
        assert out == ["top-refused", "sub-refused"]
        assert not (source / "sub" / "f").exists()
    finally:
        subprocess.run(["umount", str(source / "sub")], check=True)
    assert mounts_under(tmp_path) == []


@pytest.mark.parametrize(
    ("args", "code"),
    [(("true",), 0), (("sh", "-c", "exit 3"), 3), (("no-such-command",), 127), (("/etc/passwd",), 126)],
)
def test_exit_codes(box, args, code) -> None:
    assert box("--", *args, check=False).returncode == code


def test_sigterm_to_pybox_reaches_the_container(busybox_store) -> None:
    root, ref = busybox_store
    proc = subprocess.Popen(
        [sys.executable, "-I", "-m", "pybox", "--root", str(root), "run", "--rm", ref, "sh", "-c",
         "trap 'echo got-term; exit 143' TERM; echo ready; while :; do sleep 0.1; done"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "ready"
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 143 and "got-term" in out
    assert container_cgroups() == [] and mounts_under(root) == []


def test_sigpipe_is_reset_so_yes_head_ends(box) -> None:
    assert _sh(box, "yes | head -1").stdout == "y\n"


def test_names_are_unique(box, busybox_store) -> None:
    root, _ = busybox_store
    box("--name", "twin", "--", "true", rm=False)
    proc = box("--name", "twin", "--", "true", check=False)
    assert proc.returncode == 125 and "already in use" in proc.stderr
    import shutil

    for cid in os.listdir(root / "containers"):
        if json.loads((root / "containers" / cid / "config.json").read_text())["Name"] == "twin":
            shutil.rmtree(root / "containers" / cid)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (("-v", "b@d:/x"), "invalid volume name"),
        (("-v", "/a:/b:rx"), "options are ro, rw and nocopy"),
        (("--memory", "lots"), "invalid value 'lots' for --memory"),
        (("--cap-add", "CAP_FLY"), "unknown capability"),
        (("--pull", "sometimes"), "invalid --pull"),
    ],
)
def test_bad_input_leaves_nothing(box, options, message) -> None:
    proc = box(*options, "--", "true", check=False)
    assert proc.returncode == 125 and proc.stderr.count("\n") == 1 and message in proc.stderr, proc.stderr


def test_pull_never_and_missing(registry, pybox, store_root: Path) -> None:
    ref = registry.images["gzip"].ref
    proc = pybox("run", "--rm", "--pull", "never", ref, "true", check=False)
    assert proc.returncode == 125 and "--pull never" in proc.stderr
    assert pybox("run", "--rm", ref, "echo", "pulled").stdout.strip() == "pulled"
    assert mounts_under(store_root) == [] and container_cgroups() == []


def test_cpu_and_memory_limits_are_what_the_container_sees(box) -> None:
    # Inside its cgroup namespace the container's cgroup is the root of each hierarchy.
    script = ("cat /sys/fs/cgroup/cpu/cpu.cfs_quota_us /sys/fs/cgroup/cpu/cpu.cfs_period_us "
              "/sys/fs/cgroup/cpu/cpu.shares /sys/fs/cgroup/cpuset/cpuset.cpus "
              "/sys/fs/cgroup/memory/memory.limit_in_bytes /sys/fs/cgroup/memory/memory.memsw.limit_in_bytes "
              "/sys/fs/cgroup/pids/pids.max")
    out = _sh(box, script, "--cpus", "0.5", "--cpu-shares", "512", "--cpuset-cpus", "0", "--memory", "64m",
              "--pids-limit", "50").stdout.split()
    assert out == ["50000", "100000", "512", "0", str(64 << 20), str(128 << 20), "50"]
    swap = _sh(box, "cat /sys/fs/cgroup/memory/memory.memsw.limit_in_bytes",
               "--memory", "64m", "--memory-swap", "96m").stdout.strip()
    assert swap == str(96 << 20)


def test_an_image_used_by_a_container_keeps_its_layers(box, busybox_store, registry, pybox, tmp_path: Path) -> None:
    root, ref = busybox_store
    box("--name", "keeper", "--", "true", rm=False)
    proc = pybox("rmi", ref, root=root, check=False)
    assert proc.returncode == 125 and "used by container keeper" in proc.stderr
    layers = set(os.listdir(root / "layers"))
    pybox("image", "prune", "-a", root=root)
    assert set(os.listdir(root / "layers")) == layers
    import shutil

    for cid in os.listdir(root / "containers"):
        if json.loads((root / "containers" / cid / "config.json").read_text())["Name"] == "keeper":
            shutil.rmtree(root / "containers" / cid)


def test_privileged_has_every_capability_no_masks_and_all_devices(box) -> None:
    from pybox.runtime.capabilities import available, to_mask

    out = _sh(box, "grep CapEff /proc/self/status; wc -c < /proc/keys; mknod /dev/kmsg2 c 1 11; "
                   "dd if=/dev/kmsg2 of=/dev/null bs=16384 count=1 2>&1 | grep -c 'not permitted'",
              "-u", "0", "--privileged", check=False).stdout.split()
    assert out[1] == f"{to_mask(available()):016x}"
    assert int(out[2]) > 0  # /proc/keys is not masked
    assert out[3] == "0"  # the device cgroup allows everything


def test_scratch_rootfs_with_a_bound_binary(tmp_path: Path, store_root: Path) -> None:
    """No layers at all (FROM scratch): the rootfs is an empty lower dir plus the upper dir."""
    require_root()
    from pybox.runtime.cgroups import open_cgroup
    from pybox.runtime.cgroups.devices import DEFAULT_DEVICES
    from pybox.runtime.capabilities import DOCKER_DEFAULT, security_for
    from pybox.runtime.process import run_container
    from pybox.runtime.spec import BindMount, ContainerSpec, ProcessSpec
    from pybox.store import Store
    from pybox.store.mounts import rootfs_mount

    store = Store.open(store_root)
    base = tmp_path / "c"
    for d in ("upper", "work", "merged"):
        (base / d).mkdir(parents=True)
    spec = ContainerSpec(
        id="0" * 64, name="scratch", hostname="scratch",
        rootfs=rootfs_mount(store.layers, [], base / "merged", upper=base / "upper", work=base / "work"),
        process=ProcessSpec(args=("/busybox", "sh", "-c", "/busybox ls / > /upper-was-here; exit 7")),
        security=security_for(uid=0, caps=DOCKER_DEFAULT, privileged=False, no_new_privileges=False),
        mounts=(BindMount(source="/usr/bin/busybox", target="/busybox", readonly=True),),
    )
    cgroup = open_cgroup("pybox/" + "0" * 64)
    cgroup.create(spec.limits, devices=DEFAULT_DEVICES)
    try:
        pid = os.fork()
        if pid == 0:  # run_container wants a single-threaded caller: the test process may have threads
            code = 125
            try:
                code = run_container(spec, base / "merged", join_cgroup=cgroup.add_process).code
            finally:
                os._exit(code)
        _, status = os.waitpid(pid, 0)
    finally:
        cgroup.kill_all(signal.SIGKILL)
        cgroup.destroy()
    assert os.waitstatus_to_exitcode(status) == 7
    listing = (base / "upper" / "upper-was-here").read_text().split()
    assert {"busybox", "dev", "proc", "sys"} <= set(listing)
    assert mounts_under(tmp_path) == []


def test_run_imports_no_network_library(busybox_store) -> None:
    """pyroute2 (and requests, when the image is present) stay off `pybox run`'s path."""
    root, ref = busybox_store
    proc = subprocess.run([sys.executable, "-I", "-X", "importtime", "-m", "pybox", "--root", str(root), "run",
                           "--rm", ref, "true"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0
    imported = {line.split("|")[-1].strip() for line in proc.stderr.splitlines() if "|" in line}
    assert not {m for m in imported if m.split(".")[0] in ("pyroute2", "requests", "urllib3")}


def test_pull_always_fetches_again(registry, pybox, store_root: Path) -> None:
    ref = registry.images["gzip"].ref
    pybox("pull", "-q", ref)
    assert pybox("run", "--rm", "--pull", "always", ref, "echo", "fresh").stdout.strip() == "fresh"


def test_init_reaps_orphans_and_forwards_sigterm(box, busybox_store) -> None:
    out = _sh(box, "(sleep 0.1 &); (sleep 0.1 &); sleep 0.6; ps -o pid,stat,comm", "--init").stdout
    lines = out.splitlines()
    assert lines[1].split()[2] == "docker-init" and not [line for line in lines if " Z " in f" {line} "]
    root, ref = busybox_store
    # A bare `sleep` as PID 1 would ignore SIGTERM; tini passes it on.
    proc = subprocess.Popen([sys.executable, "-I", "-m", "pybox", "--root", str(root), "run", "--rm", "--init",
                             ref, "sh", "-c", "echo ready; exec sleep 100"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
    time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    proc.communicate(timeout=30)
    assert proc.returncode == 143
    assert container_cgroups() == [] and mounts_under(root) == []


def test_init_without_tini_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    from pybox.errors import UsageError
    from pybox.runtime import runconfig

    monkeypatch.setattr(runconfig, "TINI", "/nonexistent/tini-static")
    with pytest.raises(UsageError, match="install Debian's tini package"):
        runconfig.init_mounts(runconfig.RunOptions(init=True))


def test_inspect_a_container_record(box, busybox_store, pybox) -> None:
    root, _ = busybox_store
    box("--name", "inspected", "-l", "k=v", "--", "sh", "-c", "exit 5", rm=False, check=False)
    (doc,) = json.loads(pybox("inspect", "inspected", root=root).stdout)
    assert doc["Name"] == "inspected" and doc["State"]["ExitCode"] == 5 and doc["State"]["Status"] == "exited"
    assert doc["Config"]["Labels"]["k"] == "v" and doc["State"]["OOMKilled"] is False
    (by_type,) = json.loads(pybox("inspect", "--type", "container", doc["Id"][:12], root=root).stdout)
    assert by_type["Id"] == doc["Id"]
    import shutil

    shutil.rmtree(root / "containers" / doc["Id"])
