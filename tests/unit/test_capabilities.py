"""Capability names, Docker's defaults and --cap-add/--cap-drop/--privileged, as moby resolves them."""

from __future__ import annotations

from pathlib import Path

import pytest

from pybox.errors import UsageError
from pybox.runtime import capabilities
from pybox.runtime.capabilities import (
    CAPABILITIES,
    DOCKER_DEFAULT,
    available,
    from_mask,
    last_cap,
    parse_cap_name,
    resolve,
    security_for,
    to_mask,
)
from pybox.runtime.linux import Linux


def test_table_is_the_kernel_header() -> None:
    # Numbers are dense from CAP_CHOWN=0 to CAP_CHECKPOINT_RESTORE=40 (<linux/capability.h>).
    assert sorted(CAPABILITIES.values()) == list(range(41))
    assert CAPABILITIES["CAP_SYS_ADMIN"] == 21
    assert CAPABILITIES["CAP_CHECKPOINT_RESTORE"] == 40


def test_docker_default_mask() -> None:
    # `docker run --rm alpine grep CapEff /proc/self/status` -> 00000000a80425fb.
    assert len(DOCKER_DEFAULT) == 14
    assert to_mask(DOCKER_DEFAULT) == 0xA80425FB
    assert from_mask(0xA80425FB) == DOCKER_DEFAULT


def test_from_mask_refuses_bits_it_cannot_name() -> None:
    with pytest.raises(ValueError, match="beyond CAP_CHECKPOINT_RESTORE"):
        from_mask(1 << 41)


def test_last_cap_reads_proc(tmp_path: Path) -> None:
    fake = tmp_path / "cap_last_cap"
    fake.write_text("45\n")
    assert last_cap(fake) == 45
    assert last_cap() >= CAPABILITIES["CAP_AUDIT_READ"]  # any kernel pybox supports


@pytest.mark.parametrize(("text", "name"), [
    ("net_admin", "CAP_NET_ADMIN"),
    ("CAP_NET_ADMIN", "CAP_NET_ADMIN"),
    ("Cap_Net_Admin", "CAP_NET_ADMIN"),
    ("NET_ADMIN", "CAP_NET_ADMIN"),
    ("all", "ALL"),
    ("ALL", "ALL"),
])
def test_parse_cap_name(text: str, name: str) -> None:
    assert parse_cap_name(text) == name


@pytest.mark.parametrize("text", ["FOO", "cap_", "CAP_ALL", ""])
def test_unknown_capability(text: str) -> None:
    with pytest.raises(UsageError) as info:
        parse_cap_name(text)
    assert str(info.value) == f"unknown capability '{text}'"


def test_available_is_the_current_effective_set(tmp_path: Path) -> None:
    status = tmp_path / "status"
    # A host without CAP_SYS_RESOURCE (bit 24), and a bit beyond the table that must be ignored.
    status.write_text("Name:\tpython\nCapInh:\t0000000000000000\nCapEff:\t000003fffeffffff\n")
    have = available(status)
    assert "CAP_SYS_RESOURCE" not in have
    assert have == frozenset(CAPABILITIES) - {"CAP_SYS_RESOURCE"}


@pytest.fixture
def host_without_sys_resource(monkeypatch: pytest.MonkeyPatch) -> frozenset[str]:
    """resolve() as on this development machine: pybox runs without CAP_SYS_RESOURCE."""
    have = frozenset(CAPABILITIES) - {"CAP_SYS_RESOURCE"}
    monkeypatch.setattr(capabilities, "available", lambda: have)
    return have


def _names(*short: str) -> frozenset[str]:
    return frozenset("CAP_" + s for s in short)


@pytest.mark.usefixtures("host_without_sys_resource")
@pytest.mark.parametrize(("add", "drop", "expected"), [
    ([], [], DOCKER_DEFAULT),
    (["net_admin"], [], DOCKER_DEFAULT | _names("NET_ADMIN")),
    ([], ["CHOWN", "cap_mknod"], DOCKER_DEFAULT - _names("CHOWN", "MKNOD")),
    ([], ["ALL"], frozenset()),
    (["NET_BIND_SERVICE"], ["ALL"], _names("NET_BIND_SERVICE")),
    # moby: drop first, then add; a name in both ends up present.
    (["CHOWN"], ["CHOWN"], DOCKER_DEFAULT),
    (["SYS_ADMIN"], ["SYS_ADMIN"], DOCKER_DEFAULT | _names("SYS_ADMIN")),
])
def test_resolve(add: list[str], drop: list[str], expected: frozenset[str]) -> None:
    assert resolve(add, drop, privileged=False) == expected


def test_add_all_drop_one(host_without_sys_resource: frozenset[str]) -> None:
    assert resolve(["ALL"], ["CHOWN"], privileged=False) == host_without_sys_resource - _names("CHOWN")


def test_privileged_gets_everything_available(host_without_sys_resource: frozenset[str]) -> None:
    assert resolve([], ["ALL"], privileged=True) == host_without_sys_resource


def test_privileged_still_rejects_typos(host_without_sys_resource: frozenset[str]) -> None:
    with pytest.raises(UsageError, match="unknown capability 'NET_ADMN'"):
        resolve(["NET_ADMN"], [], privileged=True)


def test_adding_an_unavailable_capability_is_refused(host_without_sys_resource: frozenset[str]) -> None:
    with pytest.raises(UsageError, match="'CAP_SYS_RESOURCE' is not supported by the kernel or not available"):
        resolve(["sys_resource"], [], privileged=False)


def test_available_on_this_host_matches_capget() -> None:
    assert to_mask(available()) == Linux().capget().effective & to_mask(CAPABILITIES)


def test_security_for_root() -> None:
    sec = security_for(uid=0, caps=DOCKER_DEFAULT, privileged=False, no_new_privileges=False)
    assert sec.bounding == sec.effective == sec.permitted == DOCKER_DEFAULT
    assert sec.inheritable == sec.ambient == frozenset()
    assert (sec.privileged, sec.no_new_privileges) == (False, False)


def test_security_for_non_root_user_only_bounds() -> None:
    sec = security_for(uid=1000, caps=DOCKER_DEFAULT, privileged=False, no_new_privileges=True)
    assert sec.bounding == DOCKER_DEFAULT
    assert sec.effective == sec.permitted == sec.inheritable == sec.ambient == frozenset()
    assert sec.no_new_privileges


def test_security_for_privileged_is_marked() -> None:
    sec = security_for(uid=0, caps=frozenset(CAPABILITIES), privileged=True, no_new_privileges=False)
    assert sec.privileged and sec.effective == frozenset(CAPABILITIES)
