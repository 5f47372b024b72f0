"""`pybox run -it` driven through a real pseudo-terminal, as a user at a terminal would."""

from __future__ import annotations

import fcntl
import os
import pty
import select
import signal
import struct
import subprocess
import sys
import termios
import time

from support.skip import require_root


def _set_size(fd: int, rows: int, cols: int) -> None:
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))


class _Session:
    def __init__(self, argv: list[str]) -> None:
        self.primary, self.secondary = pty.openpty()
        _set_size(self.secondary, 30, 100)
        self.before = termios.tcgetattr(self.secondary)
        self.proc = subprocess.Popen(argv, stdin=self.secondary, stdout=self.secondary, stderr=self.secondary,
                                     close_fds=True)
        self.seen = b""

    def expect(self, text: bytes, timeout: float = 20.0) -> bytes:
        deadline = time.monotonic() + timeout
        while text not in self.seen:
            left = deadline - time.monotonic()
            assert left > 0, f"never saw {text!r}; got {self.seen[-500:]!r}"
            if select.select([self.primary], [], [], min(left, 0.5))[0]:
                try:
                    self.seen += os.read(self.primary, 4096)
                except OSError:
                    break
        found = self.seen
        self.seen = self.seen[self.seen.index(text) + len(text):] if text in self.seen else b""
        return found

    def send(self, data: bytes) -> None:
        os.write(self.primary, data)


def test_interactive_terminal_session(registry, pybox, store_root) -> None:
    require_root()
    ref = registry.images["gzip"].ref
    pybox("pull", "-q", ref)
    session = _Session([sys.executable, "-I", "-m", "pybox", "--root", str(store_root), "run", "--rm", "-it",
                        "-u", "0", ref, "sh"])
    try:
        # Markers made by arithmetic: the terminal echoes what is typed, not what it computes.
        session.send(b"stty size; tty; echo $((1+1))mark\r")
        out = session.expect(b"2mark")
        assert b"30 100" in out and b"/dev/" in out
        # A resize reaches the container's terminal.
        _set_size(session.secondary, 40, 120)
        session.proc.send_signal(signal.SIGWINCH)
        time.sleep(0.3)
        session.send(b"stty size; echo $((2+2))mark\r")
        assert b"40 120" in session.expect(b"4mark")
        # Ctrl-C interrupts the foreground command inside, once, and the shell goes on.
        session.send(b"sleep 30; echo $((3+3))after\r")
        time.sleep(0.5)
        session.send(b"\x03")
        session.send(b"echo $((4+4))alive; exit 3\r")
        out = session.expect(b"8alive")
        assert b"6after" not in out
        assert session.proc.wait(timeout=20) == 3
        # pybox put the terminal back as it found it.
        assert termios.tcgetattr(session.secondary) == session.before
    finally:
        if session.proc.poll() is None:
            # TERM first: pybox forwards it and cleans up; KILL would leave its cgroup behind.
            session.proc.terminate()
            try:
                session.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                session.proc.kill()
                session.proc.wait()
        os.close(session.primary)
        os.close(session.secondary)


def test_without_t_there_is_no_terminal(registry, pybox, store_root) -> None:
    require_root()
    ref = registry.images["gzip"].ref
    proc = pybox("run", "--rm", ref, "sh", "-c", "tty; ls /dev/console 2>&1", check=False)
    assert "not a tty" in proc.stdout and "No such file" in proc.stdout
