"""Docker's rules for what a container runs, with which user, limits and files."""

from __future__ import annotations

import pytest

from pybox.errors import UsageError
from pybox.runtime.runconfig import (
    DEFAULT_PATH,
    RunOptions,
    hosts_file,
    parse_bytes,
    parse_mount,
    parse_volume,
    plan_limits,
    plan_process,
    resolv_conf,
)
from pybox.runtime.users import resolve_user

PASSWD = "root:x:0:0:root:/root:/bin/sh\nalice:x:1000:1000::/home/alice:/bin/sh\n"
GROUP = "root:x:0:\nalice:x:1000:\nstaff:x:50:alice,bob\ndocker:x:999:alice\n"


def _read(path: str) -> bytes | None:
    return {"/etc/passwd": PASSWD.encode(), "/etc/group": GROUP.encode()}.get(path)


@pytest.mark.parametrize(
    ("text", "expected"),
    [("512m", 512 << 20), ("1g", 1 << 30), ("1.5G", 3 << 29), ("4096", 4096), ("64mb", 64 << 20), ("2k", 2048)],
)
def test_parse_bytes(text: str, expected: int) -> None:
    assert parse_bytes(text, "--memory") == expected


def test_parse_bytes_rejects_garbage() -> None:
    with pytest.raises(UsageError, match="invalid value 'lots' for --memory"):
        parse_bytes("lots", "--memory")


def test_memory_swap_defaults_to_twice_memory_as_docker() -> None:
    assert plan_limits(RunOptions(memory="64m")).memory_swap == 128 << 20
    assert plan_limits(RunOptions(memory="64m", memory_swap="-1")).memory_swap == -1
    with pytest.raises(UsageError, match="at least --memory"):
        plan_limits(RunOptions(memory="64m", memory_swap="32m"))
    with pytest.raises(UsageError, match="needs --memory"):
        plan_limits(RunOptions(memory_swap="32m"))


@pytest.mark.parametrize(
    ("config", "options", "args"),
    [
        ({"Cmd": ["/bin/sh"]}, RunOptions(), ("/bin/sh",)),
        ({"Entrypoint": ["/ep"], "Cmd": ["a"]}, RunOptions(), ("/ep", "a")),
        ({"Entrypoint": ["/ep"], "Cmd": ["a"]}, RunOptions(command=("b",)), ("/ep", "b")),
        ({"Entrypoint": ["/ep"], "Cmd": ["a"]}, RunOptions(entrypoint="/other"), ("/other",)),
        ({"Entrypoint": ["/ep"], "Cmd": ["a"]}, RunOptions(entrypoint="", command=("ls",)), ("ls",)),
    ],
)
def test_entrypoint_and_cmd_rules(config, options, args) -> None:
    assert plan_process(config, options, _read, "abc").process.args == args


def test_environment_defaults_and_overrides(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FROM_HOST", "h")
    monkeypatch.delenv("MISSING", raising=False)
    plan = plan_process({"Env": ["A=1", "B=2"], "Cmd": ["x"]},
                        RunOptions(env=("B=3", "FROM_HOST", "MISSING", "A")), _read, "host1")
    env = dict(e.split("=", 1) for e in plan.process.env)
    assert env == {"B": "3", "FROM_HOST": "h", "PATH": DEFAULT_PATH, "HOSTNAME": "host1", "HOME": "/root"}


@pytest.mark.parametrize(
    ("spec", "group_add", "expected"),
    [
        ("", (), (0, 0, (0,), "/root")),
        ("alice", (), (1000, 1000, (1000, 50, 999), "/home/alice")),
        ("1000", (), (1000, 1000, (1000, 50, 999), "/home/alice")),
        ("alice:staff", (), (1000, 50, (50, 999), "/home/alice")),
        ("4242:7", ("docker", "1234"), (4242, 7, (7, 999, 1234), "/")),
    ],
)
def test_users(spec, group_add, expected) -> None:
    user = resolve_user(spec, group_add, lambda p: (_read(p) or b"").decode())
    assert (user.uid, user.gid, user.additional_gids, user.home) == expected


@pytest.mark.parametrize(
    ("spec", "message"),
    [("bob", "unable to find user bob"), ("alice:nogroup", "unable to find group nogroup"), (":1", "empty")],
)
def test_bad_users(spec, message) -> None:
    with pytest.raises(UsageError, match=message):
        resolve_user(spec, (), lambda p: (_read(p) or b"").decode())


def test_volumes_and_mounts(tmp_path) -> None:
    v = parse_volume("/srv/a/:/data:ro")
    assert (v.source, v.target, v.readonly) == ("/srv/a", "/data", True)
    named = parse_volume("cache:/var/cache:ro,nocopy")
    assert (named.name, named.target, named.readonly, named.nocopy) == ("cache", "/var/cache", True, True)
    anonymous = parse_volume("/scratch")
    assert (anonymous.name, anonymous.target) == (None, "/scratch")
    for bad in ("/a:rel", "/a:/b:rx", ":/x", "a:b:c:d", "/a:/b:ro,rw"):
        with pytest.raises(UsageError):
            parse_volume(bad)
    m = parse_mount(f"type=bind,source={tmp_path},target=/t,readonly")
    assert (m.source, m.target, m.readonly) == (str(tmp_path), "/t", True)
    with pytest.raises(UsageError, match="does not exist"):
        parse_mount("type=bind,src=/no/such/dir,dst=/t")
    volume = parse_mount("type=volume,src=v,dst=/t,volume-nocopy")
    assert (volume.name, volume.target, volume.nocopy) == ("v", "/t", True)
    tmpfs = parse_mount("type=tmpfs,dst=/t,tmpfs-size=1m,tmpfs-mode=1777")
    assert (tmpfs.target, tmpfs.options) == ("/t", "size=1048576,mode=1777")
    with pytest.raises(UsageError, match="type must be bind, volume or tmpfs"):
        parse_mount("type=nfs,dst=/t")


def test_resolv_conf_drops_loopback_resolvers() -> None:
    host = "search example.org\nnameserver 127.0.0.53\nnameserver 10.0.0.2\noptions edns0\n"
    assert resolv_conf(host, "none") == "search example.org\nnameserver 10.0.0.2\noptions edns0\n"
    only_loopback = resolv_conf("nameserver 127.0.0.53\n", "none")
    assert only_loopback == "nameserver 8.8.8.8\nnameserver 8.8.4.4\n"
    assert resolv_conf(host, "host") == host


def test_hosts_file_names_the_container() -> None:
    text = hosts_file("box1", "none")
    assert "127.0.0.1\tlocalhost" in text and text.rstrip().endswith("box1")
