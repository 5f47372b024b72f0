"""An HTTP server on a loopback address whose stop() joins every thread it started.

http.server's ThreadingHTTPServer does not track daemon threads, and with
non-daemon threads server_close() waits forever on a client that keeps an
idle keep-alive connection open. This one keeps one thread per connection,
shuts the connections down on stop and asserts that all threads are gone.
Shared by support.faultproxy and support.tokenserver, whose lifecycle
(start, stop, `with`) is LoopbackService's.
"""

from __future__ import annotations

import logging
import socket
import sys
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any, Self

__all__ = ["LoopbackServer", "LoopbackService"]

_log = logging.getLogger(__name__)

_JOIN_TIMEOUT = 10.0


class LoopbackServer(HTTPServer):
    """`handler` serves each connection in its own thread; port 0 picks a free one."""

    def __init__(self, handler: type[BaseHTTPRequestHandler], *, host: str = "127.0.0.1",
                 name: str = "loopback") -> None:
        super().__init__((host, 0), handler)
        self.name = name
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self._sockets: dict[threading.Thread, socket.socket] = {}
        self._serve_thread: threading.Thread | None = None

    @property
    def host(self) -> str:
        """`127.0.0.1:PORT`"""
        address, port = self.server_address[:2]
        return f"{address}:{port}"

    def start(self) -> None:
        self._serve_thread = threading.Thread(
            target=self.serve_forever, kwargs={"poll_interval": 0.05},
            name=f"{self.name}-serve", daemon=True,
        )
        self._serve_thread.start()

    def running(self) -> bool:
        return self._serve_thread is not None and self._serve_thread.is_alive()

    def process_request(self, request: Any, client_address: Any) -> None:
        thread = threading.Thread(
            target=self._serve_connection, args=(request, client_address),
            name=f"{self.name}-conn", daemon=True,
        )
        with self._lock:
            # Forget finished threads so a long test does not pile them up.
            self._threads = [t for t in self._threads if t.is_alive()]
            self._threads.append(thread)
            self._sockets[thread] = request
        thread.start()

    def _serve_connection(self, request: socket.socket, client_address: Any) -> None:
        # As socketserver does: one connection's error is logged, not raised.
        try:
            self.finish_request(request, client_address)
        except Exception:  # noqa: BLE001
            self.handle_error(request, client_address)
        finally:
            self.shutdown_request(request)
            with self._lock:
                self._sockets.pop(threading.current_thread(), None)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that goes away mid-answer is what the fault tests do on
        # purpose; anything else is a bug in the helper and is logged whole.
        error = sys.exc_info()[1]
        if isinstance(error, (ConnectionError, TimeoutError)):
            _log.debug("%s: connection from %s: %r", self.name, client_address, error)
        else:
            _log.exception("%s: error serving %s", self.name, client_address)

    def stop(self) -> None:
        """Stop accepting, cut open connections, join all threads and assert it. Idempotent."""
        serve_thread, self._serve_thread = self._serve_thread, None
        if serve_thread is not None:
            self.shutdown()  # would wait forever on a server never started
            serve_thread.join(_JOIN_TIMEOUT)
        # The listening socket exists from construction on, started or not.
        self.server_close()
        with self._lock:
            threads = list(self._threads)
            sockets = list(self._sockets.values())
        for sock in sockets:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass  # already closed by its handler
        for thread in threads:
            thread.join(_JOIN_TIMEOUT)
        alive = [t.name for t in (serve_thread, *threads) if t is not None and t.is_alive()]
        assert not alive, f"{self.name}: threads still running after stop: {alive}"


class LoopbackService:
    """Start, stop and `with` for a test helper that serves through the LoopbackServer in `self._server`."""

    _server: LoopbackServer

    @property
    def host(self) -> str:
        """`127.0.0.1:PORT`"""
        return self._server.host

    def start(self) -> None:
        self._server.start()

    def stop(self) -> None:
        """Stop serving and join every thread (asserted). Idempotent."""
        self._server.stop()

    def running(self) -> bool:
        return self._server.running()

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
