"""One Locust ``FastHttpUser`` subclass per target, and the visit task they share.

Each generated class is named ``Target_<slug>`` on every node, carries its target's tracker URL, and
runs visits planned by ``visits`` and encoded by ``tracking``. Requests use the absolute tracker URL,
so Locust's ``--host`` (which overwrites every class's host) cannot redirect a target's traffic.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from datetime import datetime, timezone
from typing import ClassVar
from urllib.parse import urlsplit

import gevent
from locust import FastHttpUser, between, task
from locust.exception import StopUser
from locust.user.task import LOCUST_STATE_RUNNING, LOCUST_STATE_STOPPING, LOCUST_STATE_WAITING

from .config import Config, Target
from .report import VisitTally
from .tracking import FORM_CONTENT_TYPE, TrackingEncoder
from .visits import PlannedVisit, VisitPlanner

# Visit numbers of one process start at worker_index * this, so seeded plans never repeat across workers.
VISIT_NUMBERS_PER_WORKER = 1 << 40


class TargetUser(FastHttpUser):
    """Base of the generated classes: one simulated visitor after another, for one target."""

    abstract = True
    target: ClassVar[Target]
    planner: ClassVar[VisitPlanner]
    encoder: ClassVar[TrackingEncoder]
    tally: ClassVar[VisitTally]
    tracker_url: ClassVar[str]
    _numbers: ClassVar[Iterator[int]]
    _headers: ClassVar[dict[str, str]] = {"Content-Type": FORM_CONTENT_TYPE}

    @task
    def visit(self) -> None:
        visit = self.planner.plan(self.next_visit_number())
        self.run_visit(visit)

    @classmethod
    def next_visit_number(cls) -> int:
        return next(cls._numbers)

    def run_visit(self, visit: PlannedVisit) -> None:
        """Send the visit's hits in order, waiting between them like a reader would."""
        name = self.target.name
        for index, hit in enumerate(visit.hits):
            if hit.wait_before:
                self.pause(hit.wait_before)
            body = self.encoder.body(hit, visit.visitor, datetime.now(timezone.utc))
            with self.client.post(self.tracker_url, data=body, headers=self._headers, name=f"[{name}] {hit.kind}", catch_response=True) as response:
                ok = 200 <= (response.status_code or 0) < 300
                if not ok:
                    response.failure(f"HTTP {response.status_code}")
            if index == 0:
                self.tally.visit_started(name, ok)
                if not ok:
                    return  # Matomo stored nothing: the rest would be orphan hits

    def pause(self, seconds: float) -> None:
        """Sleep between hits where Locust may stop the user; never stop it during a request.

        Mirrors ``TaskSet.wait``: a user asked to stop while a request is in flight finishes that
        request (so it is counted) and stops here, at its next pause.
        """
        if self._state == LOCUST_STATE_STOPPING:
            raise StopUser()
        self._state = LOCUST_STATE_WAITING
        gevent.sleep(seconds)
        if self._state == LOCUST_STATE_STOPPING:
            raise StopUser()
        self._state = LOCUST_STATE_RUNNING


def build_user_classes(config: Config, tally: VisitTally, worker_index: int = 0) -> dict[str, type[TargetUser]]:
    """One user class per enabled target, keyed by class name (the name Locust dispatches by)."""
    classes: dict[str, type[TargetUser]] = {}
    for target in config.enabled_targets:
        seed = target.seed if target.seed is not None else config.seed
        pause = target.traffic.pause_between_visits
        parts = urlsplit(target.url)
        attributes = {
            "abstract": False,
            "target": target,
            "planner": VisitPlanner(target, seed),
            "encoder": TrackingEncoder(target),
            "tally": tally,
            "tracker_url": target.url,
            "host": f"{parts.scheme}://{parts.netloc}",
            "weight": target.weight,
            "wait_time": between(pause.min, pause.max),
            "_numbers": itertools.count(worker_index * VISIT_NUMBERS_PER_WORKER),
            "__module__": __name__,
            "__doc__": f"Visits for target {target.name!r} (site {target.site_id}).",
        }
        classes[target.class_name] = type(target.class_name, (TargetUser,), attributes)
    return classes


def set_worker_index(classes: dict[str, type[TargetUser]], worker_index: int) -> None:
    """Move each class's visit numbers into this worker's range (known only once the runner exists)."""
    for cls in classes.values():
        cls._numbers = itertools.count(worker_index * VISIT_NUMBERS_PER_WORKER)
