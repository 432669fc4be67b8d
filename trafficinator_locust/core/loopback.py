"""The names of this machine: where the receiver may listen and a login-less web UI may be reached.

Load from this project goes only to loopback, and the web UI without a login answers only
requests that name a loopback host (DNS rebinding)::

    if host not in LOOPBACK_HOSTS:
        raise ValueError(f"{host}: not a loopback address")
"""

from __future__ import annotations

LOOPBACK = "127.0.0.1"
"""The address to bind when nothing else was asked for."""

LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1", "[::1]"})
"""Host names and addresses that mean this machine (``[::1]`` as it appears in a Host header)."""
