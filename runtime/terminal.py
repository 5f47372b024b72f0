"""``-t``: the container gets a pseudo-terminal; pybox relays it to the caller's terminal.

The caller's terminal is put in raw mode so every key, Ctrl-C included,
reaches the container's terminal as a byte, where the container's own line
discipline turns it into a signal (so Ctrl-C arrives once). The mode is
restored on every way out. The relay runs in pybox's single thread with
``poll``: no thread may exist when the next container is forked.
"""

from __future__ import annotations

import errno
import fcntl
import os
import select
import signal
import struct
import sys
import termios
import tty
from collections.abc import Callable, Iterator
from contextlib import contextmanager

__all__ = ["open_pty", "raw_terminal", "copy_window_size", "relay"]

_CHUNK = 65536


def open_pty() -> tuple[int, int, str]:
    """(master, slave, slave path); both ends close on exec (init dups the slave onto 0-2)."""
    master, slave = os.openpty()
    os.set_inheritable(master, False)
    os.set_inheritable(slave, False)
    return master, slave, os.ttyname(slave)


def copy_window_size(source: int, target: int) -> None:
    """The caller's rows and columns onto the container's terminal (TIOCGWINSZ/TIOCSWINSZ)."""
    try:
        size = fcntl.ioctl(source, termios.TIOCGWINSZ, struct.pack("HHHH", 0, 0, 0, 0))
    except OSError:
        return
    fcntl.ioctl(target, termios.TIOCSWINSZ, size)


@contextmanager
def raw_terminal(fd: int) -> Iterator[None]:
    """Raw mode on ``fd`` if it is a terminal, restored however the block ends."""
    if not os.isatty(fd):
        yield
        return
    saved = termios.tcgetattr(fd)
    try:
        tty.setraw(fd, termios.TCSANOW)
        yield
    finally:
        termios.tcsetattr(fd, termios.TCSAFLUSH, saved)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        try:
            view = view[os.write(fd, view) :]
        except BlockingIOError:
            select.select([], [fd], [], 1.0)


def relay(master: int, pid: int, *, stdin_open: bool, wait: Callable[[int, int], tuple[int, int]]) -> int:
    """Copy stdin to the terminal and the terminal to stdout until ``pid`` ends; its wait status.

    ``wait(pid, flags)`` is os.waitpid. A resize of the caller's terminal is
    passed on (the kernel then sends SIGWINCH to the container's foreground
    process group).
    """
    stdin, stdout = sys.stdin.fileno(), sys.stdout.fileno()
    resized = [True]

    def on_winch(signum: int, frame: object) -> None:
        resized[0] = True

    previous = signal.signal(signal.SIGWINCH, on_winch)
    poller = select.poll()
    poller.register(master, select.POLLIN)
    reading_stdin = stdin_open
    if reading_stdin:
        poller.register(stdin, select.POLLIN)
    try:
        while True:
            if resized[0]:
                resized[0] = False
                copy_window_size(stdin if os.isatty(stdin) else stdout, master)
            done, status = wait(pid, os.WNOHANG)
            for fd, event in poller.poll(100):
                if fd == master:
                    data = _read(master)
                    if data:
                        _write_all(stdout, data)
                    else:
                        poller.unregister(master)
                elif fd == stdin and reading_stdin:
                    data = _read(stdin)
                    if data:
                        _write_all(master, data)
                    else:
                        # EOF on stdin: end-of-file for the container's terminal too.
                        _write_all(master, bytes([termios.tcgetattr(master)[6][termios.VEOF][0]]))
                        poller.unregister(stdin)
                        reading_stdin = False
            if done:
                _drain(master, stdout)
                return status
    finally:
        signal.signal(signal.SIGWINCH, previous)


def _read(fd: int) -> bytes:
    try:
        return os.read(fd, _CHUNK)
    except OSError as e:
        # EIO on the master: every slave end is closed (the container is gone).
        if e.errno == errno.EIO:
            return b""
        raise


def _drain(master: int, stdout: int) -> None:
    """What the container wrote just before it ended."""
    while select.select([master], [], [], 0.05)[0]:
        data = _read(master)
        if not data:
            return
        _write_all(stdout, data)
