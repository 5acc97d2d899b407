"""Serve an ASGI app on loopback with uvicorn: in a background thread for tests, or forever for the CLI.

::

    with serve(app) as served:                # a free port, ready when this returns
        httpx.get(served.url + "/health")
    # stopped: the port is closed and the server thread has ended

    serve_forever(app, "127.0.0.1", 8080, ready=print)   # blocks until Ctrl-C / SIGTERM

The socket is bound here, before uvicorn starts, so ``port=0`` picks a free
port and the URL is known at once. uvicorn runs with ``log_level="warning"`` and
no access log; it never touches the process's logging configuration.
"""

from __future__ import annotations

import signal
import socket
import threading
import time
from collections.abc import Callable
from types import FrameType
from typing import Any

import uvicorn

from hub.testing.tls import LoopbackTLS

__all__ = ["Served", "serve", "serve_forever"]


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP explicitly: asyncio only sets TCP_NODELAY on accepted sockets whose proto says TCP,
    # and without it every small answer waits ~40 ms for a delayed ACK (Nagle).
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    sock.listen(128)
    sock.set_inheritable(True)
    return sock


def _config(app: Any, tls: LoopbackTLS | None = None) -> uvicorn.Config:
    ssl = {"ssl_certfile": tls.certfile, "ssl_keyfile": tls.keyfile} if tls else {}
    return uvicorn.Config(app, interface="asgi3", log_level="warning", access_log=False, log_config=None,
                          lifespan="off",
                          timeout_graceful_shutdown=2, timeout_keep_alive=30, **ssl)


class Served:
    """A running server: its ``url`` (``http://127.0.0.1:54321``) and :meth:`stop`.

    Also a context manager that stops the server on exit. Stopping waits for
    in-flight requests (at most ~2 s), closes the port and joins the thread.
    """

    def __init__(self, app: Any, host: str = "127.0.0.1", port: int = 0, *, timeout: float = 10.0,
                 tls: LoopbackTLS | None = None):
        self.host = host
        self.tls = tls
        self._sock = _bind(host, port)
        self.port: int = self._sock.getsockname()[1]
        self._server = uvicorn.Server(_config(app, tls))
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name=f"serve:{self.port}", daemon=True)
        self._thread.start()
        self._wait_started(timeout)

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{'https' if self.tls else 'http'}://{host}:{self.port}"

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    def _run(self) -> None:
        try:
            self._server.run(sockets=[self._sock])
        except BaseException as exc:  # surfaced by _wait_started; SystemExit on a failed startup too
            self._error = exc

    def _wait_started(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"server on {self.url} did not start") from self._error
            time.sleep(0.005)

    def stop(self, timeout: float = 10.0) -> None:
        """Shut down and wait for the server thread to end. Safe to call twice."""
        self._server.should_exit = True
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout)
            if self._thread.is_alive():
                self._server.force_exit = True
                self._thread.join(timeout)
        self._sock.close()

    def __enter__(self) -> Served:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"<Served {self.url} {'running' if self.running else 'stopped'}>"


def serve(app: Any, port: int = 0, host: str = "127.0.0.1", *, tls: LoopbackTLS | None = None) -> Served:
    """Start ``app`` on ``host:port`` (0: a free port) in a background thread; return when it accepts.

    With ``tls`` (see :func:`hub.testing.tls.loopback_tls`) it serves HTTPS, for
    clients that only speak https (simple-salesforce builds ``https://`` URLs).
    """
    return Served(app, host, port, tls=tls)


def serve_forever(app: Any, host: str = "127.0.0.1", port: int = 8080, *,
                  ready: Callable[[str], None] | None = None, stop: threading.Event | None = None,
                  tls: LoopbackTLS | None = None) -> None:
    """Serve ``app`` until Ctrl-C or SIGTERM (or ``stop`` is set); then shut down cleanly and return.

    ``ready`` is called with the base URL once the server accepts connections
    (useful with ``port=0``). Prints nothing itself. Signal handlers are only
    installed when called from the main thread, and restored afterwards.
    """
    done = stop or threading.Event()
    previous: dict[int, Any] = {}
    if threading.current_thread() is threading.main_thread():
        def on_signal(signum: int, frame: FrameType | None) -> None:
            done.set()

        for sig in (signal.SIGINT, signal.SIGTERM):
            previous[sig] = signal.signal(sig, on_signal)
    try:
        with Served(app, host, port, tls=tls) as served:
            if ready is not None:
                ready(served.url)
            while not done.wait(0.5):
                if not served.running:
                    raise RuntimeError(f"server on {served.url} stopped unexpectedly")
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
