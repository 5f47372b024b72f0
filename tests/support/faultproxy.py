"""A reverse proxy on loopback that breaks a registry's answers on request.

Real registries answer 429 and 5xx, drop connections mid-blob, send short or
wrong bytes and ignore `Range`; docker-registry does none of that by itself.
FaultProxy sits in front of it, forwards everything (streaming, so 100 MB
blobs pass without being held in memory) and applies the faults a test
programs with `add_fault(Fault(...))` while it runs:

    with FaultProxy(registry.url) as proxy:
        proxy.add_fault(Fault(kind="reset", match="/blobs/", after_bytes=4096, times=1))
        pybox("pull", f"{proxy.host}/test/busybox:gzip")
        assert proxy.ranges("/blobs/") == ["bytes=4096-"]

Body faults (reset, truncate, corrupt, stall, throttle) apply only to 2xx
answers, so a 401 before authentication does not use them up.
"""

from __future__ import annotations

import fcntl
import ipaddress
import logging
import re
import socket
import struct
import termios
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from http.client import HTTPConnection, HTTPResponse
from http.server import BaseHTTPRequestHandler
from typing import Any, BinaryIO, Literal, NamedTuple, get_args
from urllib.parse import urlsplit

from support.loopback import LoopbackServer, LoopbackService

__all__ = ["Fault", "FaultKind", "FaultProxy", "ProxyRequest"]

_log = logging.getLogger(__name__)

FaultKind = Literal["status", "reset", "truncate", "corrupt", "ignore_range", "stall", "throttle"]
_BODY_KINDS = ("reset", "truncate", "corrupt", "stall", "throttle")

_CHUNK = 1 << 20
_SOCKET_TIMEOUT = 60.0
# How long a reset waits for the bytes before it to reach the client: with
# SO_LINGER 0 the kernel drops whatever is still queued.
_DRAIN_TIMEOUT = 5.0
_DRAIN_POLL = 0.005
# A stalled answer waits for release() or stop(), but never longer than this.
_STALL_LIMIT = 600.0
# Throttled bodies go out in this many pieces per second.
_THROTTLE_STEPS = 20
_MAX_LINE = 65536
# RFC 9110 section 7.6.1; Transfer-Encoding is re-added when the body is chunked.
_HOP_BY_HOP = frozenset({
    "connection", "keep-alive", "proxy-authenticate", "proxy-authorization",
    "te", "trailer", "transfer-encoding", "upgrade",
    # The proxy already answered `100 Continue` itself (BaseHTTPRequestHandler).
    "expect",
})


@dataclass(frozen=True, kw_only=True)
class Fault:
    """One programmed failure.

    `match` is a substring or a regular expression searched in the request
    target (path and query); "" matches every request. `method` None matches
    every method. `times` None applies the fault to every matching request.
    `after_bytes` is the body offset where reset, truncate and stall happen
    and the offset of the byte that corrupt flips. `status` and `headers`
    are the answer of kind "status"; `rate` (bytes/s) is for "throttle".
    """

    kind: FaultKind
    match: str = ""
    times: int | None = None
    method: str | None = "GET"
    status: int = 500
    headers: Mapping[str, str] = field(default_factory=dict)
    after_bytes: int = 0
    rate: int = 0

    def __post_init__(self) -> None:
        if self.kind not in get_args(FaultKind):
            raise ValueError(f"unknown fault kind {self.kind!r}")
        if self.times is not None and self.times < 1:
            raise ValueError("times must be None or at least 1")
        if self.after_bytes < 0:
            raise ValueError("after_bytes must not be negative")
        if self.kind == "throttle" and self.rate <= 0:
            raise ValueError("a throttle needs rate > 0 (bytes/s)")

    def matches(self, method: str, target: str) -> bool:
        if self.method is not None and self.method.upper() != method.upper():
            return False
        return _path_matches(self.match, target)


class ProxyRequest(NamedTuple):
    """A request as the client sent it and the status the proxy answered."""

    method: str
    path: str
    headers: dict[str, str]
    status: int


def _path_matches(pattern: str, target: str) -> bool:
    if not pattern or pattern in target:
        return True
    try:
        return re.search(pattern, target) is not None
    except re.error:
        return False


@dataclass
class _Armed:
    """A fault and how many more requests it may apply to (None: all)."""

    fault: Fault
    remaining: int | None


class FaultProxy(LoopbackService):
    """An HTTP/1.1 reverse proxy on 127.0.0.1 in front of `upstream` (http://127.x:PORT)."""

    def __init__(self, upstream: str) -> None:
        parts = urlsplit(upstream)
        if parts.scheme != "http" or not parts.hostname or not parts.port:
            raise ValueError(f"upstream must be http://HOST:PORT, not {upstream!r}")
        if not ipaddress.ip_address(parts.hostname).is_loopback:
            raise ValueError(f"upstream {upstream!r} is not a loopback address")
        self.upstream_host = parts.netloc
        handler = type("_BoundHandler", (_ProxyHandler,), {"proxy": self})
        self._server = LoopbackServer(handler, name="faultproxy")
        self._lock = threading.Lock()
        self._armed: list[_Armed] = []
        self._requests: list[ProxyRequest] = []
        self._stall = threading.Condition()
        self._release_generation = 0
        self._stalled = 0
        self._stopping = False

    @property
    def url(self) -> str:
        return f"http://{self.host}"

    # --- lifecycle -----------------------------------------------------------

    def stop(self) -> None:
        """Release stalls, close connections, join every thread (asserted). Idempotent."""
        with self._stall:
            self._stopping = True
            self._stall.notify_all()
        super().stop()

    # --- faults ----------------------------------------------------------------

    def add_fault(self, fault: Fault) -> None:
        """Arm `fault`.

        A request gets at most one fault of each phase: status or
        ignore_range before upstream is asked, one body fault after; within
        a phase the first armed fault that matches applies.
        """
        with self._lock:
            self._armed.append(_Armed(fault, fault.times))

    def clear_faults(self) -> None:
        with self._lock:
            self._armed.clear()

    def release(self) -> None:
        """Let every answer stalled so far go on."""
        with self._stall:
            self._release_generation += 1
            self._stall.notify_all()

    def wait_stalled(self, timeout: float = 10.0) -> bool:
        """Wait until some answer is stalled; False if none is within `timeout`."""
        with self._stall:
            return self._stall.wait_for(lambda: self._stalled > 0, timeout)

    def _take(self, kinds: tuple[str, ...], method: str, target: str) -> Fault | None:
        """The first armed fault of `kinds` matching the request, used up by one."""
        with self._lock:
            for armed in self._armed:
                if armed.fault.kind not in kinds or armed.remaining == 0:
                    continue
                if not armed.fault.matches(method, target):
                    continue
                if armed.remaining is not None:
                    armed.remaining -= 1
                return armed.fault
        return None

    def _stall_here(self) -> bool:
        """Block until release() (True) or stop() (False)."""
        with self._stall:
            generation = self._release_generation
            self._stalled += 1
            self._stall.notify_all()
            try:
                self._stall.wait_for(
                    lambda: self._stopping or self._release_generation != generation,
                    _STALL_LIMIT,
                )
                return not self._stopping
            finally:
                self._stalled -= 1

    # --- what the proxy saw ------------------------------------------------------

    def _record(self, request: ProxyRequest) -> None:
        with self._lock:
            self._requests.append(request)

    @property
    def requests(self) -> list[ProxyRequest]:
        """Every request so far, in the order they were answered."""
        with self._lock:
            return list(self._requests)

    def count(self, match: str = "", method: str | None = None) -> int:
        return len(self._matching(match, method))

    def ranges(self, match: str = "") -> list[str]:
        """The Range headers of the matching requests that had one, in order."""
        return [r for r in (_header(q.headers, "Range") for q in self._matching(match)) if r]

    def authorizations(self, match: str = "") -> list[str]:
        """The Authorization headers of the matching requests that had one, in order."""
        return [a for a in (_header(q.headers, "Authorization") for q in self._matching(match)) if a]

    def _matching(self, match: str, method: str | None = None) -> list[ProxyRequest]:
        return [
            r for r in self.requests
            if _path_matches(match, r.path) and (method is None or r.method == method.upper())
        ]


def _header(headers: Mapping[str, str], name: str) -> str | None:
    for key, value in headers.items():
        if key.lower() == name.lower():
            return value
    return None


class _ProxyHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = _SOCKET_TIMEOUT
    proxy: FaultProxy

    def log_message(self, format: str, *args: Any) -> None:
        _log.debug("faultproxy: " + format, *args)

    def _forward(self) -> None:
        headers = dict(self.headers.items())
        fault = self.proxy._take(("status",), self.command, self.path)
        if fault is not None:
            self._answer_fault_status(fault, headers)
            return
        drop_range = (
            _header(headers, "Range") is not None
            and self.proxy._take(("ignore_range",), self.command, self.path) is not None
        )
        upstream = HTTPConnection(self.proxy.upstream_host, timeout=_SOCKET_TIMEOUT)
        try:
            try:
                upstream.connect()
            except OSError:
                self._discard_request_body()
                self.proxy._record(ProxyRequest(self.command, self.path, headers, 502))
                self._answer_empty(502, {})
                return
            response = self._send_upstream(upstream, drop_range)
            body_fault = (
                self.proxy._take(_BODY_KINDS, self.command, self.path)
                if 200 <= response.status < 300 else None
            )
            self._relay(response, headers, body_fault)
        finally:
            upstream.close()

    do_GET = do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = _forward

    # --- request -----------------------------------------------------------------

    def _chunked_request(self) -> bool:
        return "chunked" in self.headers.get("Transfer-Encoding", "").lower()

    def _request_body(self) -> Iterator[bytes]:
        if self._chunked_request():
            yield from self._chunked_request_body()
            return
        yield from self._read_exactly(int(self.headers.get("Content-Length") or 0))

    def _read_exactly(self, size: int) -> Iterator[bytes]:
        remaining = size
        while remaining > 0:
            data = self.rfile.read(min(remaining, _CHUNK))
            if not data:
                raise ConnectionError("client closed the connection mid-body")
            remaining -= len(data)
            yield data

    def _chunked_request_body(self) -> Iterator[bytes]:
        # RFC 9112 section 7.1; every pass consumes input or raises.
        while True:
            line = self.rfile.readline(_MAX_LINE)
            if not line:
                raise ConnectionError("client closed the connection mid-body")
            size = int(line.split(b";", 1)[0].strip(), 16)
            if size == 0:
                break
            yield from self._read_exactly(size)
            self.rfile.readline(_MAX_LINE)  # the CRLF after the chunk
        while self.rfile.readline(_MAX_LINE) not in (b"\r\n", b"\n", b""):
            pass  # trailer fields, which a registry has no use for

    def _discard_request_body(self) -> None:
        for _ in self._request_body():
            pass

    def _send_upstream(self, upstream: HTTPConnection, drop_range: bool) -> HTTPResponse:
        upstream.putrequest(self.command, self.path, skip_host=True, skip_accept_encoding=True)
        dropped = {"host", *(("range", "if-range") if drop_range else ())}
        for name, value in self.headers.items():
            if name.lower() not in _HOP_BY_HOP | dropped:
                upstream.putheader(name, value)
        upstream.putheader("Host", self.proxy.upstream_host)
        chunked = self._chunked_request()
        if chunked:
            upstream.putheader("Transfer-Encoding", "chunked")
        upstream.endheaders()
        for data in self._request_body():
            upstream.send(_chunk(data) if chunked else data)
        if chunked:
            upstream.send(b"0\r\n\r\n")
        return upstream.getresponse()

    # --- answers -------------------------------------------------------------------

    def _answer_empty(self, status: int, headers: Mapping[str, str]) -> None:
        self.send_response_only(status)
        for name, value in headers.items():
            self.send_header(name, value)
        if _header(headers, "Content-Length") is None:
            self.send_header("Content-Length", "0")
        self.end_headers()

    def _answer_fault_status(self, fault: Fault, headers: dict[str, str]) -> None:
        # Read the upload first so the connection can serve the next request.
        self._discard_request_body()
        self.proxy._record(ProxyRequest(self.command, self.path, headers, fault.status))
        self._answer_empty(fault.status, fault.headers)

    def _rewrite_location(self, value: str) -> str:
        # Upload sessions and redirects must come back through the proxy.
        prefix = f"http://{self.proxy.upstream_host}"
        if value.startswith(prefix):
            return self.proxy.url + value[len(prefix):]
        return value

    def _relay(self, response: HTTPResponse, headers: dict[str, str], fault: Fault | None) -> None:
        self.send_response_only(response.status, response.reason)
        for name, value in response.getheaders():
            lower = name.lower()
            if lower in _HOP_BY_HOP:
                continue
            self.send_header(name, self._rewrite_location(value) if lower == "location" else value)
        has_body = (self.command != "HEAD" and response.status not in (204, 304)
                    and response.status >= 200)
        # Without a length from upstream, chunking keeps the connection usable.
        chunked = has_body and response.getheader("Content-Length") is None
        if chunked:
            self.send_header("Transfer-Encoding", "chunked")
        # Recorded before the client can see the answer, so a test that got
        # it also finds it in `requests`.
        self.proxy._record(ProxyRequest(self.command, self.path, headers, response.status))
        self.end_headers()
        if has_body:
            self._relay_body(response, _BodyWriter(self.wfile, chunked), fault)

    def _relay_body(self, response: HTTPResponse, out: _BodyWriter, fault: Fault | None) -> None:
        sent = 0
        started = time.monotonic()
        while data := response.read1(_CHUNK):
            if fault is not None and fault.kind == "corrupt":
                data = _flip(data, fault.after_bytes - sent)
            if (fault is not None and fault.kind in ("reset", "truncate", "stall")
                    and sent <= fault.after_bytes < sent + len(data)):
                cut = fault.after_bytes - sent
                out.write(data[:cut])
                sent, data = sent + cut, data[cut:]
                if not self._interrupt(fault.kind):
                    return
            if fault is not None and fault.kind == "throttle":
                _throttled(out, data, fault.rate, started, sent)
            else:
                out.write(data)
            sent += len(data)
        out.finish()

    def _interrupt(self, kind: str) -> bool:
        """Do a reset, truncate or stall; True if the body goes on after it."""
        if kind == "stall" and self.proxy._stall_here():
            return True
        self.close_connection = True
        if kind == "reset":
            self._reset_connection()
        return False

    def _reset_connection(self) -> None:
        sock = self.connection
        _wait_sent(sock)
        # SO_LINGER with a zero timeout makes close() send RST instead of
        # FIN, so the client's next read fails with ECONNRESET.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        # rfile holds a reference to the socket; only the last close resets.
        self.rfile.close()
        sock.close()


class _BodyWriter:
    """Writes a body as is, or in chunked transfer coding."""

    def __init__(self, out: BinaryIO, chunked: bool) -> None:
        self._out = out
        self._chunked = chunked

    def write(self, data: bytes) -> None:
        if data:  # an empty chunk would end a chunked body
            self._out.write(_chunk(data) if self._chunked else data)

    def finish(self) -> None:
        if self._chunked:
            self._out.write(b"0\r\n\r\n")


def _chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


def _flip(data: bytes, offset: int) -> bytes:
    if not 0 <= offset < len(data):
        return data
    return data[:offset] + bytes([data[offset] ^ 0xFF]) + data[offset + 1:]


def _throttled(out: _BodyWriter, data: bytes, rate: int, started: float, sent: int) -> None:
    """Write `data` so the body so far (`sent` before it) keeps to `rate` bytes/s."""
    step = max(1, rate // _THROTTLE_STEPS)
    for start in range(0, len(data), step):
        piece = data[start:start + step]
        out.write(piece)
        delay = started + (sent + start + len(piece)) / rate - time.monotonic()
        if delay > 0:
            time.sleep(delay)


def _wait_sent(sock: socket.socket) -> None:
    """Wait until the kernel has no unacknowledged bytes queued (bounded)."""
    deadline = time.monotonic() + _DRAIN_TIMEOUT
    while time.monotonic() < deadline:
        queued = struct.unpack("i", fcntl.ioctl(sock.fileno(), termios.TIOCOUTQ, b"\0" * 4))[0]
        if queued == 0:
            return
        time.sleep(_DRAIN_POLL)
