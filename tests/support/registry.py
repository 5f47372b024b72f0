"""A real OCI registry (Debian's docker-registry, distribution 2.8) on loopback."""

from __future__ import annotations

import json
import secrets
import socket
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from support.images import SeededImage
from support.tools import tool_env

__all__ = ["Registry", "registry_config"]

_READY_TIMEOUT = 10.0
_POLL_INTERVAL = 0.05
_STOP_TIMEOUT = 10.0
# urllib honours *_proxy variables by default; a loopback probe must not.
_DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def registry_config(
    *, port: int, storage: Path, auth: dict[str, Any] | None = None, tls: tuple[Path, Path] | None = None
) -> dict[str, Any]:
    """The registry's configuration; `auth` goes verbatim under `auth:`.

    For example `{"htpasswd": {"realm": "r", "path": "/x/htpasswd"}}` or a
    `token` section. Distribution reads YAML and YAML is a superset of JSON,
    so the caller writes this with json.dumps and needs no YAML library.
    """
    config: dict[str, Any] = {
        "version": "0.1",
        "log": {"level": "warn", "formatter": "text"},
        "storage": {
            "filesystem": {"rootdirectory": str(storage)},
            "delete": {"enabled": True},
            # No background goroutine walking the storage during tests.
            "maintenance": {"uploadpurging": {"enabled": False}},
        },
        "http": {
            "addr": f"127.0.0.1:{port}",
            # Without a secret the registry logs a warning and makes one up.
            "secret": secrets.token_hex(16),
        },
    }
    if auth is not None:
        config["auth"] = auth
    if tls is not None:
        config["http"]["tls"] = {"certificate": str(tls[0]), "key": str(tls[1])}
    return config


def _free_port() -> int:
    # The port is free when we close the socket; the registry binds it a few
    # milliseconds later. Good enough on a test machine, and start() reports
    # the registry's log if it loses that race.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Registry:
    """One docker-registry process with its storage under `workdir`.

    `images` is filled by whoever seeds the registry (see support.images).
    """

    def __init__(self, workdir: Path, *, auth: dict[str, Any] | None = None,
                 tls: tuple[Path, Path] | None = None) -> None:
        """`tls` is (certificate, key): the registry then speaks HTTPS only."""
        self.workdir = workdir
        self.port = _free_port()
        self.host = f"127.0.0.1:{self.port}"
        self.url = f"{'https' if tls else 'http'}://{self.host}"
        self._tls = tls
        self.config_path = workdir / "config.yml"
        self.log_path = workdir / "registry.log"
        self.images: dict[str, SeededImage] = {}
        self._auth = auth
        self._proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        storage = self.workdir / "storage"
        storage.mkdir(parents=True, exist_ok=True)
        config = registry_config(port=self.port, storage=storage, auth=self._auth, tls=self._tls)
        self.config_path.write_text(json.dumps(config, indent=2))
        with self.log_path.open("ab") as log:
            self._proc = subprocess.Popen(
                ["docker-registry", "serve", str(self.config_path)],
                stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                env=tool_env(),
            )
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise

    def _wait_ready(self) -> None:
        assert self._proc is not None
        deadline = time.monotonic() + _READY_TIMEOUT
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise RuntimeError(
                    f"docker-registry exited {self._proc.returncode}:\n{self.log()}"
                )
            if self._answers():
                return
            time.sleep(_POLL_INTERVAL)
        raise TimeoutError(
            f"docker-registry not ready on {self.url} after {_READY_TIMEOUT} s:\n{self.log()}"
        )

    def _answers(self) -> bool:
        try:
            # Readiness only: the certificate is the test's business.
            context = ssl._create_unverified_context() if self._tls else None
            with _DIRECT.open(f"{self.url}/v2/", timeout=1) if context is None else urllib.request.urlopen(
                f"{self.url}/v2/", timeout=1, context=context
            ):
                return True
        except urllib.error.HTTPError:
            # 401 from a registry with auth: it is up.
            return True
        except OSError:
            return False

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def stop(self) -> None:
        """Terminate the registry and assert the process is gone. Idempotent."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
        proc.terminate()
        try:
            proc.wait(timeout=_STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=_STOP_TIMEOUT)
        assert proc.returncode is not None
        assert not self._runs_as(proc.pid), f"docker-registry pid {proc.pid} still exists"

    def _runs_as(self, pid: int) -> bool:
        # Compare the command line, not just the pid: a reaped pid may be reused.
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except (FileNotFoundError, ProcessLookupError):
            return False
        return str(self.config_path).encode() in cmdline.split(b"\0")

    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def __enter__(self) -> Registry:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
