"""What this Locust process runs: the config, the user classes built from it, its generation, the tally.

Both roles of a process (:mod:`.coordinator` on the master or local runner, :mod:`.sender` on a
worker or local runner) read it, and either may swap in a new config: the coordinator when the web
UI stages one, a worker's sender when its master ships one. Locust looks user classes up by name
in ``environment.user_classes``, so a swap replaces that list in place, then tells whoever asked
(:meth:`Deployment.on_change`)::

    deployment = Deployment.of(config)
    deployment.on_change(lambda: print("new classes:", sorted(deployment.user_classes)))
    deployment.use(environment, staged_config, deployment.generation + 1)
"""

from __future__ import annotations

from locust.env import Environment

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from trafficinator_locust.core.config import Config
from trafficinator_locust.runtime.tally import VisitTally
from trafficinator_locust.runtime.users import AwaitingConfig, TargetUser, build_user_classes

HELLO = "trafficinator:hello"
"""The message a worker sends its master with its :meth:`Deployment.identity` (or ``{"pending": True}``)."""


@dataclass
class Deployment:
    """``config`` is ``None`` only on a worker started without one (``-f -``): it holds a placeholder
    class until the master's config arrives with the first spawn message (:mod:`.config_shipping`).
    ``generation`` counts configs: 0 at start, +1 for each one staged later."""

    config: Config | None
    user_classes: dict[str, type[TargetUser]]
    tally: VisitTally = field(default_factory=VisitTally)
    generation: int = 0
    _listeners: list[Callable[[], None]] = field(default_factory=list)

    @classmethod
    def of(cls, config: Config) -> Deployment:
        """The deployment of ``config``, generation 0, with its user classes built."""
        deployment = cls(config=config, user_classes={})
        deployment.user_classes = build_user_classes(config, deployment.tally)
        return deployment

    @classmethod
    def awaiting(cls) -> Deployment:
        """A worker's deployment before its master's config arrived: one placeholder class."""
        return cls(config=None, user_classes={AwaitingConfig.__name__: AwaitingConfig})

    def identity(self) -> dict[str, Any]:
        """What must match between master and workers: the config (tokens hashed) and the class names."""
        assert self.config is not None
        return {
            "fingerprint": self.config.fingerprint(),
            "classes": sorted(self.user_classes),
            "generation": self.generation,
        }

    def on_change(self, listener: Callable[[], None]) -> None:
        """Call ``listener`` after each :meth:`use` (e.g. to hand the new classes a permit client)."""
        self._listeners.append(listener)

    def use(self, environment: Environment, config: Config, generation: int) -> None:
        """Swap in ``config``: new user classes, in place in ``environment.user_classes``."""
        self.config, self.generation = config, generation
        self.user_classes = build_user_classes(config, self.tally)
        environment.user_classes[:] = list(self.user_classes.values())
        for listener in self._listeners:
            listener()


def refusal(theirs: dict[str, Any], mine: dict[str, Any], generation: int) -> str | None:
    """Why the master must refuse a worker whose hello said ``theirs`` (``None``: accept it).

    A worker without a config, or with an older generation than the master's, takes the master's
    config at the next test start; only one that claims the same generation with a different
    config is refused (Locust would crash it with a KeyError on a class it lacks).
    """
    if theirs.get("pending") or theirs == mine or theirs.get("generation", 0) < generation:
        return None
    extra = sorted(set(theirs.get("classes", [])) ^ set(mine["classes"]))
    return f"fingerprint {theirs.get('fingerprint')}, master {mine['fingerprint']}" + (
        f"; classes differing: {', '.join(extra)}" if extra else ""
    )
