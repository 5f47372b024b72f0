"""Every privileged Linux call pybox makes, through ctypes, in one place.

Python 3.11 has no ``os.unshare``/``os.setns``/``os.mount``; glibc exports
them. Each wrapper declares its argtypes, passes ``bytes`` paths and turns
``errno`` into ``OSError``. Callers receive a :class:`Linux` object so tests
can pass a recording fake and assert the order of calls.
"""

from __future__ import annotations

import ctypes
import os

__all__ = ["Linux", "MS_RDONLY", "MS_BIND", "MS_REC", "MS_REMOUNT", "MS_PRIVATE", "MNT_DETACH"]

MS_RDONLY = 0x1
MS_NOSUID = 0x2
MS_NODEV = 0x4
MS_NOEXEC = 0x8
MS_REMOUNT = 0x20
MS_BIND = 0x1000
MS_REC = 0x4000
MS_PRIVATE = 0x40000
MNT_DETACH = 0x2


def _fs(value: str | os.PathLike[str] | None) -> bytes | None:
    return None if value is None else os.fsencode(value)


class Linux:
    """Real syscalls. Methods raise ``OSError`` with the errno and the path involved."""

    def __init__(self) -> None:
        libc = ctypes.CDLL(None, use_errno=True)
        self._mount = libc.mount
        self._mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p]
        self._mount.restype = ctypes.c_int
        self._umount2 = libc.umount2
        self._umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]
        self._umount2.restype = ctypes.c_int

    @staticmethod
    def _check(result: int, what: str, path: str | os.PathLike[str] | None) -> None:
        if result != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"{what}: {os.strerror(err)}", None if path is None else os.fspath(path))

    def mount(self, source: str | None, target: str | os.PathLike[str], fstype: str | None, flags: int = 0,
              data: str | None = None) -> None:
        self._check(self._mount(_fs(source), _fs(target), _fs(fstype), flags, _fs(data)), "mount", target)

    def umount2(self, target: str | os.PathLike[str], flags: int = 0) -> None:
        self._check(self._umount2(_fs(target), flags), "umount", target)
