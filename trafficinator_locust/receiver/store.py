"""What the receiver stored, per instance and site, and the stats JSON that tells it.

The tracker writes here (hits per kind, rejections per reason, silent drops, order ids, visits,
conversions), ``GET /sink/stats`` and the Reporting API read from here. The shape of
:meth:`SiteState.stats` is what tests, the demo and ``trafficinator verify`` compare against: its
fields are only ever added to, never changed. Per site: ``returning_visits``, ``visitor_types``
(new / returning / returningCustomer), ``referrer_types`` (direct, search, social, website,
campaign, ai) and ``conversions`` (by goal id, ``ecommerceOrder``, ``ecommerceAbandonedCart``)
count over every day; ``lost`` counts the valid hits ``--loss`` or ``--lose`` answered as stored
but dropped, ``lost_by_kind`` the same per hit kind (both only when some were lost); per instance
``failed_batches`` counts the bulk requests that ``--fail-batches`` answered like a deadlock and
``rolled_back_batches`` those a refused item rolled back. With a capacity (``--capacity``, see
:mod:`.capacity`) the instance's ``saturated`` counts every hit answered 503 because its queue was
full (a bulk request's items each), a site's ``saturated`` those naming the site (only when some
were), and the instance's ``capacity`` shows the limit and the current backlog. The per-day
figures of the Reporting API live beside the counters: visits (:mod:`.visits`), actions and events
(:mod:`.actions`), conversions (:mod:`.goals`), each bounded per day and keeping only the latest days
(:mod:`.archive`).

Example::

    state = InstanceState(ReceiverInstance("/dev", {1: ReceiverSite(1)}, {"dev-token"}), "/dev")
    site = state.site_for({"idsite": "1"})
    state.stats()["sites"]["1"]["hits"]  # 0
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any
from zoneinfo import ZoneInfo

from trafficinator_locust.core.protocol import HIT_KINDS, Rejection
from trafficinator_locust.receiver.actions import ActionReports
from trafficinator_locust.receiver.capacity import ServiceQueue
from trafficinator_locust.receiver.goals import Conversions
from trafficinator_locust.receiver.instances import ReceiverInstance, ReceiverSite
from trafficinator_locust.receiver.visits import SiteVisits

__all__ = ["SiteState", "InstanceState"]


def _counter_dict(counter: Counter[str]) -> dict[str, int]:
    return {reason: count for reason, count in sorted(counter.items())}


class SiteState:
    """Counters, visits and lookups of one site of one instance."""

    def __init__(self, site: ReceiverSite) -> None:
        self.site = site
        self.zone = ZoneInfo(site.timezone)
        self.visits = SiteVisits(self.zone)
        self.conversions = Conversions()
        self.action_reports = ActionReports()
        self.goal_rules = site.goal_rules
        self.goal_ids = frozenset(self.goal_rules)
        self.url_goals = tuple(goal for goal in self.goal_rules.values() if goal.url_contains)
        self.reset()

    def reset(self) -> None:
        """Forget every hit, visit and lookup."""
        self.visits.reset()
        self.conversions.reset()
        self.action_reports.reset()
        self.hits = 0
        self.ip_overrides = 0  # stored hits whose visitor IP came from cip (token required)
        self.hit_log: dict[str, list[tuple[str, ...]]] = {}
        self.lost = 0  # valid hits answered as stored but dropped on purpose (the tracker's loss)
        self.lost_kinds: Counter[str] = Counter()  # the same per hit kind
        self.saturated = 0  # hits answered 503 because the instance's queue was full (the capacity)
        self.actions = dict.fromkeys(HIT_KINDS, 0)
        self.invalid: Counter[str] = Counter()
        self.ignored: Counter[str] = Counter()
        self.ec_ids: set[str] = set()

    def stats(self) -> dict[str, Any]:
        """This site's counters as plain JSON-ready values."""
        return {
            "visits": self.visits.started,
            "unique_visitors": self.visits.unique_visitors(),
            "actions": dict(self.actions),
            "hits": self.hits,
            "ip_overrides": self.ip_overrides,
            **(
                {"hit_log": {cid: [list(hit) for hit in hits] for cid, hits in self.hit_log.items()}}
                if self.hit_log
                else {}
            ),
            "invalid": _counter_dict(self.invalid),
            "ignored": _counter_dict(self.ignored),
            "visits_by_day": self.visits.by_day(),
            "returning_visits": self.visits.returning_visits(),
            "visitor_types": _counter_dict(self.visits.visitor_types),
            "referrer_types": _counter_dict(self.visits.referrer_types),
            "conversions": self.conversions.stats(),
            **({"lost": self.lost} if self.lost else {}),
            **({"lost_by_kind": _counter_dict(self.lost_kinds)} if self.lost_kinds else {}),
            **({"saturated": self.saturated} if self.saturated else {}),
        }


class InstanceState:
    """One instance: its configuration, per-site state and counters for unattributable hits;
    ``queue`` is its capacity (``None``: unlimited)."""

    def __init__(self, instance: ReceiverInstance, prefix: str, queue: ServiceQueue | None = None) -> None:
        self.instance = instance
        self.prefix = prefix
        self.queue = queue
        self.roles = instance.token_roles()
        self.tokens = frozenset(t for t, role in self.roles.items() if role != "view")
        """Tokens the tracker accepts (write or admin)."""
        self.sites = {site_id: SiteState(site) for site_id, site in instance.sites.items()}
        self.invalid: Counter[str] = Counter()
        self.ignored: Counter[str] = Counter()
        self.failed_batches = 0
        self.rolled_back_batches = 0
        self.saturated = 0

    def reset(self) -> None:
        """Forget everything recorded for this instance."""
        for site in self.sites.values():
            site.reset()
        self.invalid.clear()
        self.ignored.clear()
        self.failed_batches = 0
        self.rolled_back_batches = 0
        self.saturated = 0

    def site_for(self, params: Mapping[str, str]) -> SiteState | None:
        """The site a hit names, if it is one of this instance's sites."""
        idsite = params.get("idsite", "").strip()
        return self.sites.get(int(idsite)) if idsite.isdigit() else None

    def count(self, site: SiteState | None, outcome: Rejection) -> None:
        """Count a hit that was not stored: on its site, or on the instance when it names no known site."""
        holder: SiteState | InstanceState = self if site is None else site
        counters = holder.ignored if outcome.ignored else holder.invalid
        counters[outcome.reason] += 1

    def count_saturated(self, items: Sequence[Mapping[str, str]]) -> None:
        """Count a request answered 503 by the capacity: each of its hits (at least 1) on the
        instance, and each item naming a known site on that site too."""
        self.saturated += max(1, len(items))
        for params in items:
            site = self.site_for(params)
            if site is not None:
                site.saturated += 1

    def stats(self) -> dict[str, Any]:
        """Counters of every site, plus invalid/ignored hits that name no known site."""
        return {
            "instance": self.prefix,
            "sites": {str(site_id): site.stats() for site_id, site in self.sites.items()},
            "invalid": _counter_dict(self.invalid),
            "ignored": _counter_dict(self.ignored),
            "failed_batches": self.failed_batches,
            "rolled_back_batches": self.rolled_back_batches,
            "saturated": self.saturated,
            **({"capacity": self.queue.stats()} if self.queue is not None else {}),
        }
