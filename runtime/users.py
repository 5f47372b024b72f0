"""``-u user|uid[:group|gid]`` resolved the way Docker resolves it, through the image's own
``/etc/passwd`` and ``/etc/group`` (moby ``pkg/user``/runc ``libcontainer/user``):

- a name must exist in passwd; a number need not (then gid 0 and HOME ``/``);
- the group part, by name or number, replaces the passwd gid;
- supplementary groups are the primary group, the groups in /etc/group that list
  the user by name, and ``--group-add`` entries (names through /etc/group, or numbers).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from pybox.errors import UsageError

__all__ = ["ResolvedUser", "resolve_user", "parse_passwd", "parse_group", "PasswdEntry", "GroupEntry"]


@dataclass(frozen=True, kw_only=True)
class PasswdEntry:
    name: str
    uid: int
    gid: int
    home: str


@dataclass(frozen=True, kw_only=True)
class GroupEntry:
    name: str
    gid: int
    members: tuple[str, ...]


@dataclass(frozen=True, kw_only=True)
class ResolvedUser:
    uid: int
    gid: int
    additional_gids: tuple[int, ...]
    home: str
    name: str | None


def _fields(text: str, count: int) -> list[list[str]]:
    rows = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        parts = line.split(":")
        if len(parts) >= count:
            rows.append(parts)
    return rows


def parse_passwd(text: str) -> list[PasswdEntry]:
    out = []
    for p in _fields(text, 7):
        if p[2].isdigit() and p[3].isdigit():
            out.append(PasswdEntry(name=p[0], uid=int(p[2]), gid=int(p[3]), home=p[5] or "/"))
    return out


def parse_group(text: str) -> list[GroupEntry]:
    out = []
    for p in _fields(text, 4):
        if p[2].isdigit():
            members = tuple(m.strip() for m in p[3].split(",") if m.strip())
            out.append(GroupEntry(name=p[0], gid=int(p[2]), members=members))
    return out


def _id(text: str) -> int | None:
    if text.isdigit():
        value = int(text)
        if value >= 2**31:
            raise UsageError(f"invalid user: id {text} is out of range")
        return value
    return None


def resolve_user(spec: str, group_add: tuple[str, ...], read: Callable[[str], str | None]) -> ResolvedUser:
    """``spec`` as -u gives it ("" = root); ``read(path)`` returns an image file's text or None."""
    user_part, _, group_part = (spec or "0").partition(":")
    if not user_part:
        raise UsageError(f"invalid user {spec!r}: the user part is empty")
    passwd = parse_passwd(read("/etc/passwd") or "")
    groups = parse_group(read("/etc/group") or "")

    uid = _id(user_part)
    entry = next((e for e in passwd if (e.uid == uid if uid is not None else e.name == user_part)), None)
    if entry is None and uid is None:
        raise UsageError(f"unable to find user {user_part}: no matching entries in passwd file")
    gid = entry.gid if entry else 0
    if group_part:
        gid_value = _id(group_part)
        if gid_value is None:
            match = next((g for g in groups if g.name == group_part), None)
            if match is None:
                raise UsageError(f"unable to find group {group_part}: no matching entries in group file")
            gid_value = match.gid
        gid = gid_value

    # Docker (runc's GetExecUser) always lists the primary group among the
    # supplementary ones, then the user's memberships, then --group-add.
    extra: list[int] = [gid]
    if entry is not None:
        extra += [g.gid for g in groups if entry.name in g.members]
    for item in group_add:
        value = _id(item)
        if value is None:
            match = next((g for g in groups if g.name == item), None)
            if match is None:
                raise UsageError(f"unable to find group {item} (--group-add): no matching entries in group file")
            value = match.gid
        extra.append(value)
    additional = tuple(dict.fromkeys(extra))
    return ResolvedUser(
        uid=entry.uid if entry else uid or 0,
        gid=gid,
        additional_gids=additional,
        home=entry.home if entry else "/",
        name=entry.name if entry else None,
    )
