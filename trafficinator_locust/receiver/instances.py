"""What the receiver serves: Matomo instances told apart by URL path prefix, their sites and tokens.

An instance is one simulated Matomo (``/dev/matomo.php``, ``/prod/matomo.php``, or ``/matomo.php``
for the prefix ""); each has websites (``idsite``) with a time zone, currency and goals (ids of
manually triggered goals, or :class:`ReceiverGoal` definitions with a URL pattern), and tokens
with Matomo's roles, the same on every site of the instance. The tokens a traffic config brings are
admin tokens (they track with ``cip``/old ``cdt``); ``ReceiverInstance.roles`` adds others, e.g. a
view-only token that the Reporting API accepts and the tracker does not.

Example::

    instances = instances_from_targets(load_config("traffic.yaml").targets, port=8765)
    # or by hand:
    instances = [ReceiverInstance("/dev", {1: ReceiverSite(1, "Europe/Paris")}, {"dev-token"})]
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from trafficinator_locust.core.loopback import LOOPBACK_HOSTS
from trafficinator_locust.core.protocol import instance_path

__all__ = [
    "ROLES",
    "ReceiverGoal",
    "ReceiverSite",
    "ReceiverInstance",
    "instances_from_targets",
    "default_instances",
    "normalise_prefix",
]

ROLES = ("view", "write", "admin")
"""Matomo's roles, weakest first; tracking with a token needs write or admin."""


@dataclass(frozen=True)
class ReceiverGoal:
    """One goal of a site, as Matomo's Goals plugin defines it (plugins/Goals, ``GoalManager``).

    ``url_contains`` empty: converted only manually (``idgoal=N``); otherwise also converted
    automatically by a pageview whose URL contains it (case-insensitive, Matomo's default).
    ``allow_multiple`` False (Matomo's default): at most one conversion per visit. ``revenue``:
    the default revenue when the hit sends none.
    """

    id: int
    url_contains: str = ""
    allow_multiple: bool = False
    revenue: float = 0.0


@dataclass
class ReceiverSite:
    """One Matomo website (``idsite``) of a receiver instance.

    ``goals`` are the ids of manually triggered goals; ``goal_definitions`` adds goals with a URL
    pattern or other settings (a definition wins over a bare id). :attr:`goal_rules` holds both.
    """

    site_id: int
    timezone: str = "UTC"
    currency: str = "USD"
    goals: frozenset[int] = frozenset({1, 2, 3})
    ecommerce: bool = True
    name: str = ""
    goal_definitions: tuple[ReceiverGoal, ...] = ()

    @property
    def goal_rules(self) -> dict[int, ReceiverGoal]:
        """Every goal of the site by id: the bare ``goals`` as manual goals, then the definitions."""
        rules = {goal_id: ReceiverGoal(goal_id) for goal_id in self.goals}
        rules.update((goal.id, goal) for goal in self.goal_definitions)
        return rules


@dataclass
class ReceiverInstance:
    """One simulated Matomo instance, reached under ``<prefix>/matomo.php`` (prefix may be "")."""

    prefix: str
    sites: dict[int, ReceiverSite]
    tokens: set[str] = field(default_factory=set)
    """Tokens with admin access to every site of the instance (what a config's targets bring)."""
    roles: dict[str, str] = field(default_factory=dict)
    """More tokens and their role on every site: ``"view"``, ``"write"`` or ``"admin"``; a token
    named here and in ``tokens`` gets the role named here."""

    def token_roles(self) -> dict[str, str]:
        """Every token of the instance with its role; ValueError names an unknown role."""
        roles = dict.fromkeys((t for t in self.tokens if t), "admin")
        for token, role in self.roles.items():
            if role not in ROLES:
                raise ValueError(f"instance {self.prefix or '/'}: role {role!r} is not one of {', '.join(ROLES)}")
            if token:
                roles[token] = role
        return roles


def normalise_prefix(prefix: str) -> str:
    """An instance prefix as the receiver serves it: ``"dev/"`` -> ``"/dev"``, ``"/"`` -> ``""``."""
    prefix = prefix.strip().rstrip("/")
    return prefix if not prefix or prefix.startswith("/") else "/" + prefix


def instances_from_targets(
    targets: Iterable[Any], host: str = "127.0.0.1", port: int | None = None
) -> list[ReceiverInstance]:
    """Group loopback targets into receiver instances by the path prefix of their tracker URL.

    A target is any object with ``name``, ``url``, ``site_id``, ``timezone`` and ``token_auth``
    (a plain string or a pydantic ``SecretStr``); its ``report_token_auth``, if any, gets view access.
    Targets on other hosts, or on another port when
    ``port`` is given and not 0 (0 means "a free port", so any target port matches), are skipped.
    Several targets may share an instance (one site each); the first target of a site id wins.
    """
    hosts = {host} | (set(LOOPBACK_HOSTS) if host in LOOPBACK_HOSTS else set())
    instances: dict[str, ReceiverInstance] = {}
    for target in targets:
        parts = urlsplit(target.url)
        if parts.hostname not in hosts:
            continue
        target_port = parts.port or (443 if parts.scheme == "https" else 80)
        if port and target_port != port:
            continue
        prefix = instance_path(target.url)
        instance = instances.setdefault(prefix, ReceiverInstance(prefix, {}, set()))
        site_id = int(target.site_id)
        instance.sites.setdefault(site_id, _site_of(target, site_id))
        token = _plain_token(target.token_auth)
        if token:
            instance.tokens.add(token)
        report_token = _plain_token(getattr(target, "report_token_auth", None))
        if report_token and report_token not in instance.tokens:
            instance.roles.setdefault(report_token, "view")  # a report_token_auth: the Reporting API's only
    return list(instances.values())


def _plain_token(token: object) -> str | None:
    if token is None:
        return None
    getter = getattr(token, "get_secret_value", None)
    value = getter() if callable(getter) else token
    return str(value) or None


def _site_of(target: Any, site_id: int) -> ReceiverSite:
    """The site a target describes: its time zone, and the goals and currency of its traffic model."""
    traffic = getattr(target, "traffic", None)
    goals = {goal.id for goal in getattr(traffic, "goals", ())}
    goals |= {
        step.id
        for journey in getattr(traffic, "journeys", ())
        for step in journey.steps
        if step.type == "goal" and step.id
    }
    currency = getattr(getattr(traffic, "ecommerce", None), "currency", None) or "USD"
    several = tuple(
        ReceiverGoal(goal.id, allow_multiple=True) for goal in getattr(traffic, "goals", ()) if goal.allow_multiple
    )
    return ReceiverSite(
        site_id,
        timezone=target.timezone or "UTC",
        currency=currency,
        goals=frozenset(goals) or frozenset({1, 2, 3}),
        name=target.name,
        goal_definitions=several,
    )


def default_instances() -> list[ReceiverInstance]:
    """The instances of the packaged demo config: ``/dev``, ``/staging`` and ``/prod``.

    Tokens come from ``DEMO_DEV_TOKEN``, ``DEMO_STAGING_TOKEN`` and ``DEMO_PROD_TOKEN`` with the
    same demo defaults as ``config/demo.yaml``.
    """
    env = os.environ
    return [
        ReceiverInstance(
            "/dev",
            {1: ReceiverSite(1, "UTC", name="Development")},
            {env.get("DEMO_DEV_TOKEN", "demo-dev-token-5f1c")},
        ),
        ReceiverInstance(
            "/staging",
            {2: ReceiverSite(2, "America/New_York", name="Staging")},
            {env.get("DEMO_STAGING_TOKEN", "demo-staging-token-8a2e")},
        ),
        ReceiverInstance(
            "/prod",
            {1: ReceiverSite(1, "Asia/Tokyo", name="Production")},
            {env.get("DEMO_PROD_TOKEN", "demo-prod-token-c93d")},
        ),
    ]
