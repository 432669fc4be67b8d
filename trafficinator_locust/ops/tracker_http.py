"""HTTP to a Matomo outside Locust, with the standard library's ``http.client``: one stack for all.

Why: the backfill, ``verify`` and ``validate --online`` run without Locust (and without gevent),
so they cannot use Locust's HTTP sessions; one module opens their connections, so TLS, timeouts,
paths and what a failure looks like are decided once. Two ways to use it:

* :class:`TrackerPoster`: POSTs to one tracker URL over a keep-alive connection, and says whether a
  POST that got no answer may be sent again (:class:`~trafficinator_locust.core.errors.SendError`);
  what an answer means is :func:`trafficinator_locust.core.bulk.judge`'s business::

      poster = TrackerPoster("https://matomo.example/matomo.php", timeout=30)
      status, body = poster.post(payload, JSON_CONTENT_TYPE)
      poster.close()

* :class:`Endpoint`: one request on a fresh connection, failures raised as the standard library's
  ``OSError`` / ``http.client.HTTPException`` for the caller to word (the Reporting API client,
  preflight's tracker page and test hit)::

      answer = Endpoint("https://matomo.example/matomo.php").exchange("GET", headers={}, timeout=10)

No message built here holds a URL's user:password (:func:`display_url`) or a request body.
"""

from __future__ import annotations

import http.client
import socket
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol
from urllib.parse import urlsplit, urlunsplit

from trafficinator_locust.core.errors import SendError

__all__ = [
    "FORM_CONTENT_TYPE",
    "Endpoint",
    "HttpAnswer",
    "Poster",
    "Settle",
    "TrackerPoster",
    "display_url",
]

FORM_CONTENT_TYPE = "application/x-www-form-urlencoded"
IDLE_RECONNECT_SECONDS = 5.0
BACKFILL_USER_AGENT = "trafficinator-backfill"


def display_url(url: str) -> str:
    """The URL without user:password, query or fragment, for messages and reports."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


@dataclass(frozen=True)
class HttpAnswer:
    """What a server answered: status, body (up to the reader's limit) and ``Location`` if any."""

    status: int
    body: bytes
    location: str = ""


class Endpoint:
    """Where one http(s) URL is served, and one request to it on a fresh connection.

    ``context`` is the TLS context for https (default: the system's trust store); a URL that is not
    http(s) with a host raises ``ValueError``.
    """

    def __init__(self, url: str, *, context: ssl.SSLContext | None = None):
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not an http(s) URL: {display_url(url)}")
        self.url = url
        self.https = parts.scheme == "https"
        self.host, self.port = parts.hostname, parts.port
        self.path = parts.path or "/"
        self.context = context

    def connect(self, timeout: float) -> http.client.HTTPConnection:
        """A connection (not yet open: it opens on the first request) with ``timeout`` per socket operation."""
        if self.https:
            return http.client.HTTPSConnection(self.host, self.port, timeout=timeout, context=self.context)
        return http.client.HTTPConnection(self.host, self.port, timeout=timeout)

    def exchange(
        self,
        method: str,
        body: bytes | None = None,
        *,
        headers: dict[str, str],
        timeout: float,
        max_body: int | None = None,
    ) -> HttpAnswer:
        """Send one request and read the answer (at most ``max_body`` bytes), then close.

        Failures propagate as ``OSError`` (``TimeoutError``, ``ConnectionRefusedError``, TLS errors,
        ...) or ``http.client.HTTPException`` (a server that speaks no HTTP).
        """
        connection = self.connect(timeout)
        try:
            connection.request(method, self.path, body=body, headers=headers)
            response = connection.getresponse()
            data = response.read(max_body)
            return HttpAnswer(response.status, data, response.getheader("Location", "") or "")
        finally:
            connection.close()


Settle = Callable[[int, bytes], object]
"""``settle(status, body)``: judge an answer while its request is still open (Locust marks it by the result)."""


class Poster(Protocol):
    """What the backfill sends its bulk requests through (:class:`TrackerPoster`, or Locust's).

    ``post`` returns ``(status, body)`` after calling ``settle(status, body)`` when given, or raises
    :class:`~trafficinator_locust.core.errors.SendError` when no answer came (then ``settle`` is not called).
    """

    def post(self, body: bytes, content_type: str, settle: Settle | None = None) -> tuple[int, bytes]: ...

    def close(self) -> None: ...


class TrackerPoster:
    """POSTs to one tracker URL over a keep-alive connection, so a backfill of many batches does
    not pay a TCP (and TLS) handshake per batch.

    A connection idle for more than a few seconds is replaced before use, so a server closing idle
    connections never turns a sent batch into an ambiguous failure. One poster per thread.

    Example::

        poster = TrackerPoster(target.url, timeout=30)
        try:
            status, body = poster.post(build_payload(queries, token), JSON_CONTENT_TYPE)
        except SendError as error:
            retry = error.retryable  # True only when Matomo cannot have stored anything
        finally:
            poster.close()
    """

    def __init__(self, url: str, timeout: float = 30.0, *, user_agent: str = BACKFILL_USER_AGENT):
        self._endpoint = Endpoint(url)
        self.url = url
        self._timeout = timeout
        self._headers: dict[str, str] = {"User-Agent": user_agent}
        self._connection: http.client.HTTPConnection | None = None
        self._used_at = 0.0

    def _connect(self) -> http.client.HTTPConnection:
        now = time.monotonic()
        if self._connection is not None and now - self._used_at > IDLE_RECONNECT_SECONDS:
            self.close()
        if self._connection is None:
            self._connection = self._endpoint.connect(self._timeout)
        return self._connection

    def post(self, body: bytes, content_type: str, settle: Settle | None = None) -> tuple[int, bytes]:
        """Send one POST; returns ``(status, body)`` (after ``settle(status, body)`` when given) or raises
        :class:`SendError`.

        ``retryable`` is set when the request could not be sent (refused, unreachable, reset while
        sending): Matomo cannot have stored it. Once sent, a missing answer is not retryable.
        """
        connection = self._connect()
        headers = {**self._headers, "Content-Type": content_type, "Content-Length": str(len(body))}
        try:
            connection.request("POST", self._endpoint.path, body=body, headers=headers)
        except (OSError, http.client.HTTPException) as exc:
            self.close()
            raise SendError(f"cannot send to {display_url(self.url)}: {_reason(exc)}", retryable=True) from None
        try:
            response = connection.getresponse()
            data = response.read()
        except (OSError, http.client.HTTPException) as exc:
            self.close()
            raise SendError(f"no answer from {display_url(self.url)}: {_reason(exc)}", retryable=False) from None
        self._used_at = time.monotonic()
        if response.will_close:
            self.close()
        if settle is not None:
            settle(response.status, data)
        return response.status, data

    def close(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None


def _reason(exc: BaseException) -> str:
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, socket.timeout):
        return "timed out"
    text = str(exc) or exc.__class__.__name__
    return text[:200]
