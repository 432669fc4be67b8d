"""The receiver's WSGI application: routes each path to the tracker, the Reporting API or the stats.

Per instance prefix ``P``: ``P/matomo.php`` and ``P/piwik.php`` (the tracker, see :mod:`.tracker`),
``P/index.php`` and ``P/`` (the Reporting API, see :mod:`.reporting`), ``GET P/sink/stats`` and
``POST P/sink/reset``; ``GET /sink/stats`` and ``POST /sink/reset`` cover every instance. Any other
path is 404. The routes are one dict lookup, built once.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from trafficinator_locust.receiver.capacity import DEFAULT_QUEUE_SECONDS, ServiceQueue, check_capacity
from trafficinator_locust.receiver.instances import ReceiverInstance, normalise_prefix
from trafficinator_locust.receiver.reporting import handle as handle_api
from trafficinator_locust.receiver.store import InstanceState
from trafficinator_locust.receiver.tracker import FailBatches, KindLoss, Loss, Tracker
from trafficinator_locust.receiver.wsgi import TEXT, Environ, StartResponse, read_body, respond, respond_json

__all__ = ["ReceiverApp"]

Handler = Callable[[InstanceState | None, Environ, StartResponse], list[bytes]]


class ReceiverApp:
    """The WSGI application of the receiver, serving every instance; ``clock`` returns unix seconds.

    Call it through any WSGI server or test client, and read what it stored with :meth:`stats`::

        app = ReceiverApp([ReceiverInstance("/dev", {1: ReceiverSite(1, "Europe/Paris")}, {"dev-token"})])
        werkzeug.test.Client(app).get("/dev/matomo.php?idsite=1&rec=1")  # 200, Matomo's GIF
        app.stats("/dev")["sites"]["1"]["hits"]  # 1
        server, port = serve(app)  # the same app on http://127.0.0.1:<port> (receiver.server)

    ``delay_seconds`` waits before answering each tracking request. ``record_hits`` keeps, per
    site, each visitor's stored hits as (kind, page path) in order, shown as ``hit_log`` in the
    stats (for tests comparing sequences; memory grows with hits). ``loss``: the share of
    otherwise-valid hits answered as stored but dropped (0..1), chosen per hit by a keyed hash of
    its parameters (seeded by ``loss_seed``), so runs are repeatable and ``trafficinator verify``
    has a silent loss to find, like Matomo's silent drops. ``fail_batches``: the share of bulk
    requests (0..1, drawn by a random generator seeded by ``fail_seed``) answered like a database
    deadlock, ``500 {"status": "error", "tracked": 0}``, storing nothing (``failed_batches`` in the
    stats), for testing the generator's retries. ``lose``: per hit kind (``core.protocol.HIT_KINDS``),
    the share (0..1) of that kind's valid hits answered as stored but dropped, chosen like ``loss``'s
    (seeded by ``lose_seed``), so a test knows which report must come out short; lost hits are
    counted per site and kind (``lost_by_kind`` in the stats). ``capacity``: at most that many
    tracked hits per second per instance (a number for every instance, or a mapping of prefix to
    number for some; see :mod:`.capacity`): each tracking request queues FIFO on its instance for 1
    hit (a bulk request: its items) of ``1 / capacity`` s, and one that would wait longer than
    ``capacity_queue`` seconds is answered 503 at once, storing nothing (``saturated`` in the stats);
    the Reporting API is never limited. ValueError for a loss outside 0..1, a fail_batches outside
    0..1, a lose kind or share that is not one, a capacity or capacity_queue that is not a finite
    number > 0, a capacity naming a prefix not served, two instances on one prefix, or an unknown
    token role.
    """

    def __init__(
        self,
        instances: Iterable[ReceiverInstance],
        clock: Callable[[], float] = time.time,
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
    ) -> None:
        self.clock = clock
        self.tracker = Tracker(
            clock,
            delay_seconds=delay_seconds,
            loss=Loss(loss, loss_seed),
            record_hits=record_hits,
            fail_batches=FailBatches(fail_batches, fail_seed),
            lose=KindLoss(lose, lose_seed),
        )
        self._states: dict[str, InstanceState] = {}
        for instance in instances:
            prefix = normalise_prefix(instance.prefix)
            if prefix in self._states:
                raise ValueError(f"two sink instances share the prefix {prefix!r}")
            self._states[prefix] = InstanceState(instance, prefix)
        for prefix, hits_per_second in _capacities(capacity, capacity_queue, list(self._states)).items():
            self._states[prefix].queue = ServiceQueue(hits_per_second, capacity_queue)
        self._routes = self._build_routes()

    @property
    def prefixes(self) -> list[str]:
        """The instance prefixes served, in configuration order."""
        return list(self._states)

    def __call__(self, environ: Environ, start_response: StartResponse) -> list[bytes]:
        route = self._routes.get(environ.get("PATH_INFO", ""))
        if route is None:
            return respond(start_response, 404, b"not found", TEXT)
        handler, state = route
        return handler(state, environ, start_response)

    def stats(self, prefix: str | None = None) -> dict[str, Any]:
        """One instance's stats, or (``prefix=None``) every instance's keyed by prefix."""
        if prefix is not None:
            return self._states[normalise_prefix(prefix)].stats()
        return {key: state.stats() for key, state in self._states.items()}

    def reset(self, prefix: str | None = None) -> None:
        """Clear one instance's data, or every instance's with ``prefix=None``."""
        if prefix is None:
            states = list(self._states.values())
        else:
            states = [self._states[normalise_prefix(prefix)]]
        for state in states:
            state.reset()

    def _build_routes(self) -> dict[str, tuple[Handler, InstanceState | None]]:
        routes: dict[str, tuple[Handler, InstanceState | None]] = {}
        for prefix, state in self._states.items():
            for name in ("/matomo.php", "/piwik.php"):
                routes[prefix + name] = (self.tracker.answer, state)
            for name in ("/index.php", "/"):
                routes[prefix + name] = (self._api, state)
            routes[prefix + "/sink/stats"] = (self._stats, state)
            routes[prefix + "/sink/reset"] = (self._reset, state)
        routes["/sink/stats"] = (self._stats, None)
        routes["/sink/reset"] = (self._reset, None)
        return routes

    def _api(self, state: InstanceState | None, environ: Environ, start_response: StartResponse) -> list[bytes]:
        return handle_api(state, environ, start_response, self.clock)

    def _stats(self, state: InstanceState | None, environ: Environ, start_response: StartResponse) -> list[bytes]:
        if environ.get("REQUEST_METHOD") != "GET":
            return respond(start_response, 405, b"use GET", TEXT)
        payload = state.stats() if state is not None else self.stats()
        return respond_json(start_response, payload)

    def _reset(self, state: InstanceState | None, environ: Environ, start_response: StartResponse) -> list[bytes]:
        if environ.get("REQUEST_METHOD") != "POST":
            return respond(start_response, 405, b"use POST", TEXT)
        read_body(environ)
        self.reset(state.prefix if state is not None else None)
        return respond_json(start_response, {"status": "ok"})


def _capacities(
    capacity: float | Mapping[str, float] | None, queue_seconds: float, prefixes: list[str]
) -> dict[str, float]:
    """The capacity of each limited instance: a number for every prefix, a mapping for those it names."""
    check_capacity(1.0, queue_seconds)
    if capacity is None:
        return {}
    if not isinstance(capacity, Mapping):
        capacity = dict.fromkeys(prefixes, capacity)
    limits = {normalise_prefix(prefix): value for prefix, value in capacity.items()}
    unknown = [prefix or "/" for prefix in limits if prefix not in prefixes]
    if unknown:
        raise ValueError(f"capacity names instances that are not served: {', '.join(unknown)}")
    for value in limits.values():
        check_capacity(value, queue_seconds)
    return limits
