"""drop_privileges makes runc's calls in runc's order (DESIGN.md section 4), asserted on a recording fake."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import pytest

from pybox.runtime import security as security_module
from pybox.runtime.capabilities import CAPABILITIES, DOCKER_DEFAULT, security_for
from pybox.runtime.linux import CapSets, Linux
from pybox.runtime.security import drop_privileges
from pybox.runtime.spec import Security, UserSpec

Call = tuple[Any, ...]


class RecordingLinux:
    """Has exactly Linux's methods, with their signatures; each call appends (name, *args) to ``calls``."""

    def __init__(self) -> None:
        self.calls: list[Call] = []

    def __getattr__(self, name: str) -> Callable[..., None]:
        signature = inspect.signature(getattr(Linux, name))  # AttributeError for what Linux lacks

        def record(*args: Any, **kwargs: Any) -> None:
            bound = signature.bind(self, *args, **kwargs)
            bound.apply_defaults()
            self.calls.append((name, *list(bound.arguments.values())[1:]))

        return record

    def load_seccomp(self) -> None:
        """Passed as drop_privileges' seccomp callable, so its place in the order is recorded too."""
        self.calls.append(("load_seccomp",))


LAST_CAP = 42  # two beyond the table: a kernel newer than pybox


@pytest.fixture(autouse=True)
def _newer_kernel(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(security_module, "last_cap", lambda: LAST_CAP)


def _bounding_drops(keep: frozenset[str]) -> list[Call]:
    kept = {CAPABILITIES[name] for name in keep}
    return [("capbset_drop", cap) for cap in range(LAST_CAP + 1) if cap not in kept]


USER = UserSpec(uid=1000, gid=1001, additional_gids=(27, 100))


def test_order_without_no_new_privs() -> None:
    linux = RecordingLinux()
    sec = security_for(uid=USER.uid, caps=DOCKER_DEFAULT, privileged=False, no_new_privileges=False)
    drop_privileges(linux, sec, USER, linux.load_seccomp)  # type: ignore[arg-type]
    assert linux.calls == [
        ("set_keepcaps", True),
        # The filter goes in while CAP_SYS_ADMIN is still held: without no_new_privs, seccomp(2) needs it.
        ("load_seccomp",),
        *_bounding_drops(DOCKER_DEFAULT),
        ("setgroups", (27, 100)),
        ("setresgid", 1001, 1001, 1001),
        ("setresuid", 1000, 1000, 1000),
        ("set_keepcaps", False),
        ("capset", CapSets(effective=0, permitted=0, inheritable=0)),
        ("cap_ambient_clear_all",),
    ]


def test_order_with_no_new_privs() -> None:
    linux = RecordingLinux()
    sec = security_for(uid=0, caps=DOCKER_DEFAULT, privileged=False, no_new_privileges=True)
    drop_privileges(linux, sec, UserSpec(), linux.load_seccomp)  # type: ignore[arg-type]
    assert linux.calls == [
        ("set_keepcaps", True),
        *_bounding_drops(DOCKER_DEFAULT),
        ("setgroups", ()),
        ("setresgid", 0, 0, 0),
        ("setresuid", 0, 0, 0),
        ("set_keepcaps", False),
        ("capset", CapSets(effective=0xA80425FB, permitted=0xA80425FB, inheritable=0)),
        ("cap_ambient_clear_all",),
        # Last, so the filter need not allow any of the calls above.
        ("set_no_new_privs",),
        ("load_seccomp",),
    ]


def test_bounding_set_drops_everything_else_by_number() -> None:
    linux = RecordingLinux()
    keep = frozenset({"CAP_CHOWN", "CAP_NET_BIND_SERVICE"})
    sec = security_for(uid=0, caps=keep, privileged=False, no_new_privileges=False)
    drop_privileges(linux, sec, UserSpec())  # type: ignore[arg-type]
    dropped = [call[1] for call in linux.calls if call[0] == "capbset_drop"]
    assert dropped == [cap for cap in range(LAST_CAP + 1) if cap not in (0, 10)]
    assert {41, 42} <= set(dropped), "capabilities newer than the table are dropped too"


def test_no_seccomp_callable_means_no_seccomp_step() -> None:
    linux = RecordingLinux()
    sec = security_for(uid=0, caps=DOCKER_DEFAULT, privileged=False, no_new_privileges=True)
    drop_privileges(linux, sec, UserSpec())  # type: ignore[arg-type]
    assert linux.calls[-1] == ("set_no_new_privs",)
    assert ("load_seccomp",) not in linux.calls


def test_ambient_raised_after_capset_in_number_order() -> None:
    linux = RecordingLinux()
    ambient = frozenset({"CAP_NET_RAW", "CAP_NET_BIND_SERVICE"})
    sec = Security(bounding=DOCKER_DEFAULT, effective=ambient, permitted=ambient, inheritable=ambient,
                   ambient=ambient)
    drop_privileges(linux, sec, USER)  # type: ignore[arg-type]
    names = [call[0] for call in linux.calls]
    assert names[names.index("capset"):] == ["capset", "cap_ambient_clear_all", "cap_ambient_raise",
                                             "cap_ambient_raise"]
    assert linux.calls[-2:] == [("cap_ambient_raise", 10), ("cap_ambient_raise", 13)]
    assert linux.calls[names.index("capset")] == ("capset", CapSets(effective=0x2400, permitted=0x2400,
                                                                      inheritable=0x2400))


def test_fake_refuses_what_linux_does_not_have() -> None:
    with pytest.raises(AttributeError):
        RecordingLinux().setuid(0)
    with pytest.raises(TypeError):
        RecordingLinux().setresuid(0)  # Linux.setresuid takes three ids
