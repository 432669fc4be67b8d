"""The visit planner: who visits, on which device, which pages, which actions, and when.

Pure and seeded: ``VisitPlanner.plan(n)`` returns the same visit for the same target, seed and visit
number, whatever the concurrency, because each visit gets its own RNG derived from (seed, target,
number). It returns plain hits with the wait before each; the Locust user only sends and waits.
Parameters that depend on the moment of sending (visitor local time) are added by ``tracking``.
"""

from __future__ import annotations

import hashlib
import random
import string
from bisect import bisect_left
from dataclasses import dataclass
from itertools import accumulate
from urllib.parse import quote_plus

from . import catalog
from .config import Target

_PV_ID_ALPHABET = string.ascii_letters + string.digits
ZIPF_EXPONENT = 1.0


@dataclass(frozen=True, slots=True)
class Visitor:
    """One simulated person: its own ``cid`` so Matomo never merges it with another visitor."""

    cid: str
    user_agent: str
    language: str
    resolution: str


@dataclass(frozen=True, slots=True)
class Hit:
    """One tracking request: its kind (the stats name), parameters, and the wait before sending it."""

    kind: str
    params: dict[str, str]
    wait_before: float


@dataclass(frozen=True, slots=True)
class PlannedVisit:
    number: int
    visitor: Visitor
    hits: tuple[Hit, ...]

    @property
    def duration(self) -> float:
        return sum(hit.wait_before for hit in self.hits)


class VisitPlanner:
    """Plans the visits of one target. Build once per target; ``plan`` is cheap and thread-safe."""

    def __init__(self, target: Target, seed: int | None = None):
        self.target = target
        traffic = target.traffic
        self._seed = seed if seed is not None else random.SystemRandom().getrandbits(63)
        self._salt = hashlib.blake2b(f"{self._seed}|{target.name}".encode(), digest_size=8).digest()
        self._pages = traffic.pages
        self._page_cum = list(accumulate(1.0 / (rank**ZIPF_EXPONENT) for rank in range(1, len(self._pages) + 1)))
        self._pageviews = (int(traffic.pageviews.min), int(traffic.pageviews.max))
        self._dwell = (traffic.dwell_seconds.min, traffic.dwell_seconds.max)
        self._site_url = traffic.site_url.rstrip("/")
        actions = traffic.actions
        self._action_shares = (("search", actions.search), ("outlink", actions.outlink), ("download", actions.download), ("event", actions.event))

    def rng_for(self, number: int) -> random.Random:
        """The RNG of visit ``number``: a pure function of (seed, target name, number)."""
        digest = hashlib.blake2b(number.to_bytes(16, "big", signed=True), digest_size=8, key=self._salt).digest()
        return random.Random(int.from_bytes(digest, "big"))

    def plan(self, number: int) -> PlannedVisit:
        rng = self.rng_for(number)
        visitor = self._visitor(rng)
        hits: list[Hit] = []
        pages = [self._page(rng) for _ in range(rng.randint(*self._pageviews))]
        action_at = {kind: rng.randrange(len(pages)) for kind, share in self._action_shares if rng.random() < share}
        previous_url = ""
        pv_id = ""
        for index, page in enumerate(pages):
            pv_id = "".join(rng.choices(_PV_ID_ALPHABET, k=6))
            params = {"url": page.url, "action_name": page.title, "pv_id": pv_id, "urlref": previous_url}
            hits.append(Hit("pageview", params, 0.0 if index == 0 else self._dwell_time(rng)))
            for kind, at in action_at.items():
                if at == index:
                    hits.append(self._action(kind, rng, pv_id, page.url))
            previous_url = page.url
        hits.append(Hit("ping", {"ping": "1", "pv_id": pv_id, "url": previous_url}, self._dwell_time(rng)))
        return PlannedVisit(number, visitor, tuple(hits))

    def _visitor(self, rng: random.Random) -> Visitor:
        device = rng.choice(catalog.DEVICES)
        return Visitor(cid=f"{rng.getrandbits(64):016x}", user_agent=device.user_agent, language=rng.choice(catalog.LANGUAGES), resolution=device.resolution)

    def _page(self, rng: random.Random):
        index = bisect_left(self._page_cum, rng.random() * self._page_cum[-1])
        return self._pages[min(index, len(self._pages) - 1)]

    def _dwell_time(self, rng: random.Random) -> float:
        return round(rng.uniform(*self._dwell), 3)

    def _action(self, kind: str, rng: random.Random, pv_id: str, page_url: str) -> Hit:
        """An add-on action on the page ``pv_id``, some seconds after it loaded."""
        wait = round(rng.uniform(0, self._dwell[1]) / 2, 3)
        if kind == "search":
            term = rng.choice(catalog.SEARCH_TERMS)
            params = {"search": term, "search_count": str(rng.choice((0, 1, 4, 12, 25))), "url": f"{self._site_url}/search?q={quote_plus(term)}", "pv_id": pv_id}
        elif kind == "outlink":
            params = {"link": rng.choice(catalog.OUTLINKS), "url": page_url, "ca": "1", "pv_id": pv_id}
        elif kind == "download":
            params = {"download": self._site_url + rng.choice(catalog.DOWNLOADS), "url": page_url, "ca": "1", "pv_id": pv_id}
        else:
            category, action, name = rng.choice(catalog.EVENTS)
            params = {"e_c": category, "e_a": action, "e_n": name, "e_v": str(rng.randint(1, 100)), "url": page_url, "ca": "1", "pv_id": pv_id}
        return Hit(kind, params, wait)
