"""Serving the receiver: a gevent WSGI server on loopback, in the background or until a signal.

:func:`serve` starts a :class:`~trafficinator_locust.receiver.app.ReceiverApp` in this process
(tests, benchmarks); :func:`run` is ``trafficinator sink``: it serves until SIGTERM/SIGINT, says
when it listens (one line on stdout, the bound port in a ready file) and stops cleanly. Only
loopback hosts are accepted: the receiver is a stand-in for tests and demos, never a service.

Example::

    server, port = serve(ReceiverApp(default_instances()))  # port 0: a free one
    ...
    server.stop()
"""

from __future__ import annotations

import gevent
import gevent.event
from gevent.pywsgi import WSGIServer

import signal
import socket
from collections.abc import Iterable, Mapping
from typing import Any

from trafficinator_locust.core.files import write_atomic
from trafficinator_locust.core.loopback import LOOPBACK_HOSTS
from trafficinator_locust.receiver.app import ReceiverApp
from trafficinator_locust.receiver.capacity import DEFAULT_QUEUE_SECONDS
from trafficinator_locust.receiver.instances import ReceiverInstance

__all__ = ["serve", "run"]


class _NoDelayServer(WSGIServer):
    """pywsgi sends a response's headers and body in two writes; with Nagle on, the body waits for
    the client's delayed ACK (~40 ms), so every answer with a body (bulk JSON, the Reporting API,
    stats, the GIF) took 40 ms on a keep-alive connection. TCP_NODELAY sends both at once."""

    def handle(self, sock: Any, address: Any) -> None:
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:
            pass
        super().handle(sock, address)


def serve(app: ReceiverApp, host: str = "127.0.0.1", port: int = 0) -> tuple[WSGIServer, int]:
    """Start ``app`` on a gevent WSGI server in the background; returns ``(server, bound_port)``.

    Only loopback hosts are accepted (ValueError). Keep-alive is on (HTTP/1.1). Stop with ``server.stop()``.
    """
    if host not in LOOPBACK_HOSTS:
        raise ValueError(f"the sink only binds to loopback, not {host!r}")
    server = _NoDelayServer((host, port), app, log=None)
    server.start()
    return server, server.server_port


def run(
    instances: Iterable[ReceiverInstance],
    host: str = "127.0.0.1",
    port: int = 8765,
    ready_file: str | None = None,
    *,
    delay_seconds: float = 0.0,
    loss: float = 0.0,
    loss_seed: int = 0,
    record_hits: bool = False,
    fail_batches: float = 0.0,
    fail_seed: int = 0,
    lose: Mapping[str, float] | None = None,
    lose_seed: int = 0,
    capacity: float | Mapping[str, float] | None = None,
    capacity_queue: float = DEFAULT_QUEUE_SECONDS,
) -> int:
    """Serve until SIGTERM/SIGINT, then stop cleanly and return exit code 0.

    Prints one ``sink listening on ...`` line; writes the bound port to ``ready_file`` (atomic
    rename) once listening so callers can wait for it instead of sleeping. The other options are
    :class:`~trafficinator_locust.receiver.app.ReceiverApp`'s.
    """
    app = ReceiverApp(
        instances,
        delay_seconds=delay_seconds,
        loss=loss,
        loss_seed=loss_seed,
        record_hits=record_hits,
        fail_batches=fail_batches,
        fail_seed=fail_seed,
        lose=lose,
        lose_seed=lose_seed,
        capacity=capacity,
        capacity_queue=capacity_queue,
    )
    server, bound = serve(app, host, port)
    stop = gevent.event.Event()
    watchers = [gevent.signal_handler(sig, stop.set) for sig in (signal.SIGTERM, signal.SIGINT)]
    try:
        if ready_file:  # before the line, so a reader of the line finds the file
            write_atomic(ready_file, str(bound))
        served = ", ".join(prefix or "/" for prefix in app.prefixes)
        print(f"sink listening on http://{host}:{bound} (instances: {served})", flush=True)
        stop.wait()
    finally:
        for watcher in watchers:
            watcher.cancel()
        server.stop(timeout=2)
    return 0
