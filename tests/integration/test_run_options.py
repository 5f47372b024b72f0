"""`pybox run`'s second half: volumes, tmpfs, read-only root, ulimits, sysctls, security options."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest


def test_named_volume_outlives_its_container_and_is_shared(box, busybox_store, pybox) -> None:
    root, _ = busybox_store
    box("-u", "0", "-v", "shared:/data", "--", "sh", "-c", "echo one > /data/f")
    assert box("-u", "0", "-v", "shared:/other:ro", "--", "cat", "/other/f").stdout == "one\n"
    refused = box("-u", "0", "-v", "shared:/other:ro", "--", "sh", "-c", "echo x > /other/g", check=False)
    assert refused.returncode != 0 and "Read-only file system" in refused.stderr
    (doc,) = json.loads(pybox("volume", "inspect", "shared", root=root).stdout)
    assert doc["Name"] == "shared" and doc["Driver"] == "local" and Path(doc["Mountpoint"], "f").is_file()
    assert "shared" in pybox("volume", "ls", "-q", root=root).stdout.split()
    assert pybox("volume", "rm", "shared", root=root).stdout.strip() == "shared"
    assert not (root / "volumes" / "shared").exists()


def test_a_new_volume_gets_the_images_content(box, busybox_store, pybox) -> None:
    root, _ = busybox_store
    out = box("-u", "0", "-v", "etcvol:/etc", "--", "cat", "/etc/passwd").stdout
    assert out.startswith("root:")
    copied = (root / "volumes" / "etcvol" / "_data" / "passwd").read_text()
    assert copied == out
    # Not copied again into a volume that has content.
    box("-u", "0", "-v", "etcvol:/etc", "--", "sh", "-c", "rm /etc/passwd")
    assert not (root / "volumes" / "etcvol" / "_data" / "passwd").exists()
    pybox("volume", "rm", "etcvol", root=root)


def test_image_volumes_get_anonymous_volumes_removed_with_rm(box, busybox_store, pybox) -> None:
    root, _ = busybox_store
    # The busybox image declares VOLUME /data.
    assert box("-u", "0", "--", "sh", "-c", "grep -c ' /data ' /proc/self/mountinfo").stdout.strip() == "1"
    assert pybox("volume", "ls", "-q", root=root).stdout.split() == []


def test_tmpfs_size_is_enforced_and_read_only_root(box) -> None:
    out = box("-u", "0", "--read-only", "--tmpfs", "/tmp:size=1m", "--", "sh", "-c",
              "touch /x 2>&1; dd if=/dev/zero of=/tmp/f bs=1k count=4096 2>&1; ls -l /tmp/f", check=False).stdout
    assert "Read-only file system" in out and "No space left on device" in out
    assert " 1048576 " in out
    size = box("--mount", "type=tmpfs,target=/scratch,tmpfs-size=2m", "--", "sh", "-c", "df -k /scratch | tail -1")
    assert size.stdout.split()[1] == "2048"


def test_ulimit_and_sysctl_are_seen_inside(box) -> None:
    out = box("--ulimit", "nofile=512:1024", "--sysctl", "net.ipv4.ip_unprivileged_port_start=80",
              "--", "sh", "-c", "ulimit -n; ulimit -Hn; cat /proc/sys/net/ipv4/ip_unprivileged_port_start").stdout
    assert out.split() == ["512", "1024", "80"]


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (("--sysctl", "kernel.hostname=x"), "not namespaced"),
        (("--ulimit", "nofile=10:5"), "soft limit is above"),
        (("--ulimit", "bogus=1"), "invalid --ulimit"),
        (("--tmpfs", "relative"), "must be absolute"),
        (("--security-opt", "apparmor=x"), "invalid --security-opt"),
        (("--mount", "type=nfs,target=/x"), "type must be bind, volume or tmpfs"),
        (("--device", "/etc/passwd"), "not a device node"),
    ],
)
def test_bad_options_are_one_line(box, options, message) -> None:
    proc = box(*options, "--", "true", check=False)
    assert proc.returncode == 125 and proc.stderr.count("\n") == 1 and message in proc.stderr, proc.stderr


def test_no_new_privileges(box) -> None:
    assert box("--", "grep", "NoNewPrivs", "/proc/self/status").stdout.split() == ["NoNewPrivs:", "0"]
    nnp = box("--security-opt", "no-new-privileges", "--", "grep", "NoNewPrivs", "/proc/self/status")
    assert nnp.stdout.split() == ["NoNewPrivs:", "1"]


def test_systempaths_unconfined_unmasks(box) -> None:
    masked = box("-u", "0", "--", "sh", "-c", "grep -c ' /proc/keys ' /proc/self/mountinfo", check=False)
    assert masked.stdout.strip() == "1"
    unmasked = box("-u", "0", "--security-opt", "systempaths=unconfined", "--", "sh", "-c",
                   "grep -c ' /proc/keys ' /proc/self/mountinfo", check=False)
    assert unmasked.stdout.strip() == "0"


def test_labels_and_stop_signal_are_recorded(busybox_store, pybox) -> None:
    root, ref = busybox_store
    pybox("run", "--name", "labelled", "-l", "team=core", "--stop-signal", "SIGUSR1", ref, "true", root=root)
    (cid,) = os.listdir(root / "containers")
    doc = json.loads((root / "containers" / cid / "config.json").read_text())
    assert doc["Labels"]["team"] == "core" and doc["StopSignal"] == "SIGUSR1"
    import shutil

    shutil.rmtree(root / "containers" / cid)
    pybox("volume", "prune", root=root)  # the anonymous volume of the image's VOLUME


def test_seccomp_default_custom_and_unconfined(box, busybox_store, tmp_path: Path) -> None:
    root, _ = busybox_store
    script = "grep '^Seccomp:' /proc/self/status; unshare -u true 2>&1; mkdir /tmp-dir && echo mkdir-ok"
    # The first run generates the BPF program and keeps it; the second loads the kept one.
    for _ in range(2):
        default = box("-u", "0", "--", "sh", "-c", script)
        assert "Seccomp:\t2" in default.stdout and "Operation not permitted" in default.stdout
        assert "mkdir-ok" in default.stdout
        assert [p.suffix for p in (root / "cache" / "seccomp").iterdir()] == [".bpf"]
    profile = tmp_path / "deny-mkdir.json"
    profile.write_text(json.dumps({
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO"}],
    }))
    custom = box("-u", "0", "--security-opt", f"seccomp={profile}", "--", "sh", "-c",
                 "mkdir /x 2>&1; echo still-running", check=False)
    assert "Operation not permitted" in custom.stdout and "still-running" in custom.stdout
    for options in (("--security-opt", "seccomp=unconfined"), ("--privileged",)):
        out = box("-u", "0", *options, "--", "grep", "^Seccomp:", "/proc/self/status").stdout
        assert out.split() == ["Seccomp:", "0"]


def test_bad_seccomp_profile_is_one_line(box, tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text('{"defaultAction": "SCMP_ACT_SOMETIMES"}')
    proc = box("--security-opt", f"seccomp={bad}", "--", "true", check=False)
    assert proc.returncode == 125 and proc.stderr.count("\n") == 1 and str(bad) in proc.stderr


def _df(pybox, root: Path) -> dict[str, list[str]]:
    return {line.split()[0]: line.split() for line in pybox("system", "df", root=root).stdout.splitlines()[1:]}


def test_system_df_counts_containers_and_volumes(busybox_store, pybox) -> None:
    root, ref = busybox_store
    before = _df(pybox, root)
    volumes_before = set(pybox("volume", "ls", "-q", root=root).stdout.split())
    pybox("run", "--name", "df-c", "-u", "0", "-v", "df-vol:/v", ref, "sh", "-c",
          "head -c 100000 /dev/zero > /v/f; head -c 5000 /dev/zero > /written", root=root)
    after = _df(pybox, root)
    assert after["Images"][1:3] == ["1", "1"]
    assert int(after["Containers"][1]) == int(before["Containers"][1]) + 1
    # df-vol, and the anonymous volume for the image's VOLUME /data (kept without --rm).
    assert int(after["Local"][2]) == int(before["Local"][2]) + 2
    assert int(after["Local"][3]) == int(before["Local"][3]) + 2
    import shutil

    (cid,) = [c for c in os.listdir(root / "containers")
              if json.loads((root / "containers" / c / "config.json").read_text())["Name"] == "df-c"]
    shutil.rmtree(root / "containers" / cid)
    pybox("volume", "prune", root=root)
    pybox("volume", "rm", "df-vol", root=root)
    assert set(pybox("volume", "ls", "-q", root=root).stdout.split()) <= volumes_before
