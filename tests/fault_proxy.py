"""A TCP proxy on loopback that injects network faults, for tests.

Put it in front of the moto server (tests/s3_server.py) and point the S3 clients at
``proxy.url`` instead of the server's own URL::

    with moto_server() as endpoint, FaultProxy.for_url(endpoint) as proxy:
        set_aws_environment(monkeypatch, proxy.url)
        ...
        proxy.mode = "reset"            # from now on, until set back to "pass"
        window = proxy.faults("refuse", 5.0)   # for 5 s from now, then back to "pass"
        window.wait()
        assert proxy.stats.reset or proxy.stats.refused   # the fault did hit traffic

Modes (switch at any time, from any thread; the switch is done when the call returns):

``pass``    bytes are forwarded both ways, untouched (the default).
``reset``   every new connection is accepted and at once closed with an RST (SO_LINGER on,
            timeout 0): the client sees ``ConnectionResetError`` (or an empty read). Every
            connection open at the moment of switching is reset too.
``reset_on_data``  like ``reset``, but each new connection is reset only once the client has
            sent its first bytes (the request): on loopback a plain ``reset`` often reaches the
            client while it still is in connect(), so HTTP clients report a failed connect
            (aiohttp ``ClientConnectorError``); this mode gives the "reset by peer while
            sending the request" failure instead (``ServerDisconnectedError``/``ClientOSError``).
``refuse``  the listening socket is closed, so connects fail with ``ConnectionRefusedError``;
            the port stays reserved (bound, not listening) and switching back listens on it
            again. Open connections are reset as well, as when the server dies; otherwise
            pooled keep-alive connections would sail through the fault.

Counters (``proxy.stats``, a snapshot): ``accepted`` connections, connections ``reset`` by
the proxy (new ones in ``reset`` mode, open ones at a switch, ones over ``max_connections``),
and ``refused``: connection attempts that failed in this network namespace while the proxy
refused (Linux's ``Tcp: AttemptFails`` in /proc/net/snmp, so any other refused connect of
the machine at that moment counts too; ``None`` where that counter is not available).

Resources are bounded: at most ``max_connections`` proxied connections (two daemon threads
each), sockets with timeouts so that no thread blocks for long; ``close()`` (or leaving the
``with`` block) closes the listener and every connection and joins the threads.
"""

from __future__ import annotations

import errno
import socket
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlsplit

MODES = ("pass", "reset", "reset_on_data", "refuse")

_POLL_S = 0.25  # how long a forwarding thread waits before it looks at its flags again
_BUFFER = 64 * 1024
_RST_LINGER = struct.pack("ii", 1, 0)  # SO_LINGER on, timeout 0: close() sends an RST


def _snmp_attempt_fails() -> int | None:
    """Linux's count of failed TCP connects in this network namespace (refused ones included)."""
    try:
        with open("/proc/net/snmp") as snmp:
            tcp = [line.split() for line in snmp if line.startswith("Tcp:")]
        return int(tcp[1][tcp[0].index("AttemptFails")])
    except (OSError, ValueError, IndexError):
        return None


def _quietly(action: Callable[[], object]) -> None:
    try:
        action()
    except OSError:
        pass


@dataclass(frozen=True)
class ProxyStats:
    accepted: int
    reset: int
    refused: int | None
    open: int

    @property
    def faults(self) -> int:
        """Connections the faults hit, reset or refused."""
        return self.reset + (self.refused or 0)


class FaultWindow:
    """A fault applied by ``FaultProxy.faults``: ends by itself after its seconds."""

    def __init__(self, proxy: FaultProxy, mode: str, seconds: float, start_in: float):
        self.mode = mode
        self.seconds = seconds
        self.started = threading.Event()
        self.ended = threading.Event()
        self._proxy = proxy
        self._cancelled = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(start_in,), daemon=True, name=f"fault-window-{mode}")

    def _run(self, start_in: float) -> None:
        try:
            if self._cancelled.wait(start_in):
                return
            self._proxy._set_mode(self.mode, window=self)
            self.started.set()
            self._cancelled.wait(self.seconds)
            self._proxy._end_window(self)
        finally:
            self.started.set()
            self.ended.set()

    def wait(self, timeout: float | None = None) -> bool:
        """Wait until the proxy is back to ``pass``; True once it is."""
        return self.ended.wait(timeout)

    def cancel(self) -> None:
        """End the fault now (or never start it)."""
        self._cancelled.set()
        self._thread.join(timeout=5)


class _Connection:
    def __init__(self, proxy: FaultProxy, client: socket.socket, reset_on_data: bool = False):
        self.proxy = proxy
        self.reset_on_data = reset_on_data
        self.client = client
        self.upstream: socket.socket | None = None
        self.abort = False  # reset the client, forward nothing more
        self._lock = threading.Lock()
        self._running = 0
        self.done = threading.Event()
        self.threads: list[threading.Thread] = []

    def start(self) -> None:
        self._running = 1
        thread = threading.Thread(target=self._serve, daemon=True, name="fault-proxy-conn")
        self.threads.append(thread)
        thread.start()

    def _serve(self) -> None:
        try:
            if self.reset_on_data:
                self._reset_on_first_bytes()
                return
            host, port = self.proxy.target
            try:
                upstream = socket.create_connection((host, port), timeout=self.proxy.connect_timeout)
            except OSError:
                self.abort = True  # the target is down: the client sees a reset
                return
            upstream.settimeout(_POLL_S)
            self.client.settimeout(_POLL_S)
            with self._lock:
                self.upstream = upstream
                if self.abort:
                    return
                self._running += 1
            back = threading.Thread(
                target=self._forward_guarded, args=(upstream, self.client), daemon=True, name="fault-proxy-back"
            )
            self.threads.append(back)
            back.start()
            self._forward(self.client, upstream)
        finally:
            self._finished()

    def _reset_on_first_bytes(self) -> None:
        self.client.settimeout(_POLL_S)
        while not self.abort:
            try:
                self.client.recv(_BUFFER)  # the request (or its end): then the reset
            except TimeoutError:
                continue
            except OSError:
                pass
            break
        self.abort = True

    def _forward_guarded(self, source: socket.socket, destination: socket.socket) -> None:
        try:
            self._forward(source, destination)
        finally:
            self._finished()

    def _forward(self, source: socket.socket, destination: socket.socket) -> None:
        while not self.abort:
            try:
                data = source.recv(_BUFFER)
            except TimeoutError:
                continue
            except OSError:
                self.abort = True  # a reset on one side is passed on as a reset
                return
            if not data:
                if not self.abort:  # a clean end of stream: half-close the other side
                    _quietly(lambda: destination.shutdown(socket.SHUT_WR))
                return
            view = memoryview(data)
            while view and not self.abort:
                try:
                    view = view[destination.send(view) :]
                except TimeoutError:
                    continue
                except OSError:
                    self.abort = True
                    return

    def _finished(self) -> None:
        with self._lock:
            self._running -= 1
            last = self._running <= 0
        if last:
            self._close_sockets()

    def _close_sockets(self) -> None:
        if self.abort:
            _quietly(lambda: self.client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _RST_LINGER))
        _quietly(self.client.close)
        if self.upstream is not None:
            _quietly(self.upstream.close)
        self.proxy._forget(self)
        self.done.set()

    def reset(self, wait: float = 2.0) -> None:
        """Reset the client side (RST), close the upstream side; return once done."""
        with self._lock:
            self.abort = True
            upstream = self.upstream
        _quietly(lambda: self.client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _RST_LINGER))
        # Wake the forwarding threads at once; SHUT_RD sends nothing to the client (a FIN would
        # come before the RST), and the last thread out closes the sockets, with the RST.
        _quietly(lambda: self.client.shutdown(socket.SHUT_RD))
        if upstream is not None:
            _quietly(lambda: upstream.shutdown(socket.SHUT_RDWR))
        self.done.wait(wait)


class FaultProxy:
    """A TCP proxy on 127.0.0.1 in front of ``target_host:target_port`` (see the module)."""

    def __init__(
        self,
        target_host: str,
        target_port: int,
        *,
        port: int = 0,
        max_connections: int = 256,
        connect_timeout: float = 5.0,
    ):
        self.target = (target_host, int(target_port))
        self.max_connections = max_connections
        self.connect_timeout = connect_timeout
        self._lock = threading.RLock()
        self._mode = "pass"
        self._window: FaultWindow | None = None
        self._connections: set[_Connection] = set()
        self._accepted = 0
        self._reset = 0
        self._refused: int | None = 0  # None: not countable here
        self._refusing_since: int | None = None
        self._closed = True
        self._listener: socket.socket | None = None
        self._reserved: socket.socket | None = None  # the port, bound but not listening
        self._acceptor: threading.Thread | None = None
        self.port = port

    @classmethod
    def for_url(cls, url: str, **kwargs) -> FaultProxy:
        """A proxy in front of ``http://host:port`` (e.g. what ``moto_server()`` yields)."""
        parts = urlsplit(url)
        return cls(parts.hostname or "127.0.0.1", parts.port or 80, **kwargs)

    # -- life cycle -----------------------------------------------------------------------

    def start(self) -> FaultProxy:
        with self._lock:
            if not self._closed:
                return self
            self._listener = self._bind(self.port)
            self._listener.listen(128)
            self.port = self._listener.getsockname()[1]
            self._closed = False
        self._acceptor = threading.Thread(target=self._accept_loop, daemon=True, name="fault-proxy-accept")
        self._acceptor.start()
        return self

    def close(self, timeout: float = 5.0) -> None:
        """Close the listener and every connection; join the threads (within ``timeout``)."""
        deadline = time.monotonic() + timeout
        with self._lock:
            if self._closed:
                return
            self._closed = True
            window, self._window = self._window, None
            for sock in (self._listener, self._reserved):
                if sock is not None:
                    _quietly(sock.close)
            self._listener = self._reserved = None
            connections = list(self._connections)
        if window is not None:
            window._cancelled.set()
        for connection in connections:
            connection.reset(wait=0)
        threads = [self._acceptor] if self._acceptor else []
        threads += [thread for connection in connections for thread in connection.threads]
        for thread in threads:
            if thread is not threading.current_thread():
                thread.join(timeout=max(0.0, deadline - time.monotonic()))

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.close()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def address(self) -> tuple[str, int]:
        return ("127.0.0.1", self.port)

    # -- faults ---------------------------------------------------------------------------

    @property
    def mode(self) -> str:
        return self._mode

    @mode.setter
    def mode(self, mode: str) -> None:
        self.set_mode(mode)

    def set_mode(self, mode: str) -> None:
        """Switch to ``pass``, ``reset`` or ``refuse`` now (ends any timed fault)."""
        with self._lock:
            window, self._window = self._window, None
        if window is not None:
            window._cancelled.set()
        self._set_mode(mode)

    def faults(self, mode: str, seconds: float, *, start_in: float = 0.0) -> FaultWindow:
        """Apply ``mode`` for ``seconds`` (after ``start_in`` seconds), then go back to
        ``pass``, from a background thread. Returns at once (the fault is in force on return
        when ``start_in`` is 0); ``.wait()`` on the result waits for the end, ``.cancel()``
        ends it early."""
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, not {mode!r}")
        with self._lock:
            previous, self._window = self._window, None
        if previous is not None:
            previous._cancelled.set()
        window = FaultWindow(self, mode, seconds, start_in)
        with self._lock:
            self._window = window
        window._thread.start()
        if start_in <= 0:
            window.started.wait(5)
        return window

    @property
    def stats(self) -> ProxyStats:
        with self._lock:
            refused = self._refused
            if refused is not None and self._refusing_since is not None:
                now = _snmp_attempt_fails()
                refused = None if now is None else refused + now - self._refusing_since
            return ProxyStats(self._accepted, self._reset, refused, len(self._connections))

    def _end_window(self, window: FaultWindow) -> None:
        with self._lock:
            if self._window is not window:
                return  # replaced or cancelled by a later switch
            self._window = None
            self._set_mode("pass")

    def _set_mode(self, mode: str, window: FaultWindow | None = None) -> None:
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, not {mode!r}")
        with self._lock:
            if window is not None and self._window is not window:
                return
            if self._closed:
                self._mode = mode
                return
            previous, self._mode = self._mode, mode
            if previous == "refuse" and mode != "refuse":
                self._listen_again()
            elif mode == "refuse" and previous != "refuse":
                self._stop_listening()
            to_reset = [c for c in self._connections if not c.reset_on_data] if mode != "pass" else []
            self._reset += len(to_reset)
        for connection in to_reset:
            connection.reset()

    def _stop_listening(self) -> None:
        # Close the listener (pending, unaccepted connections get an RST from the kernel), and
        # keep the port bound, not listening, so that connects are refused and nothing else
        # can take the port in the meantime.
        listener, self._listener = self._listener, None
        if listener is not None:
            listener.close()
        self._reserved = self._bind(self.port)
        self._refusing_since = _snmp_attempt_fails()
        if self._refusing_since is None:
            self._refused = None

    def _listen_again(self) -> None:
        reserved, self._reserved = self._reserved, None
        if reserved is None:
            reserved = self._bind(self.port)
        reserved.listen(128)
        self._listener = reserved
        now = _snmp_attempt_fails()
        if self._refused is not None:
            self._refused = (
                None if now is None or self._refusing_since is None else (self._refused + now - self._refusing_since)
            )
        self._refusing_since = None

    @staticmethod
    def _bind(port: int) -> socket.socket:
        for attempt in range(50):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind(("127.0.0.1", port))
            except OSError as error:
                sock.close()
                if error.errno != errno.EADDRINUSE or port == 0 or attempt == 49:
                    raise
                time.sleep(0.02)
                continue
            sock.settimeout(_POLL_S)
            return sock
        raise AssertionError("unreachable")

    # -- connections ----------------------------------------------------------------------

    def _accept_loop(self) -> None:
        while not self._closed:
            listener = self._listener
            if listener is None:
                time.sleep(0.02)
                continue
            try:
                client, _ = listener.accept()
            except (TimeoutError, OSError):
                continue  # nothing yet, or the listener was closed by a switch
            with self._lock:
                self._accepted += 1
                late = self._mode == "reset_on_data"
                if (
                    self._closed
                    or self._mode not in ("pass", "reset_on_data")
                    or (len(self._connections) >= self.max_connections)
                ):
                    self._reset += 1
                    _quietly(lambda c=client: c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _RST_LINGER))
                    _quietly(client.close)
                    continue
                connection = _Connection(self, client, reset_on_data=late)
                if late:
                    self._reset += 1
                self._connections.add(connection)
            connection.start()

    def _forget(self, connection: _Connection) -> None:
        with self._lock:
            self._connections.discard(connection)
