"""A capacity ramp per target: find the rate a Matomo keeps up with (its knee), the pure logic.

Nothing here knows about Locust, gevent or HTTP, nor about clocks. The caller offers a target
``ramp.rate`` hits per second for ``ramp.step_seconds``, measures the step and hands the figures to
:meth:`Ramp.record`; the ramp decides the next rate. The same ramp is driven by a simulated Matomo
in tests and by the master's step windows in a run.

The pieces, from the inside out:

* :class:`RampSpec`: the ramp's settings (``start=10,factor=1.5,step=30s,p95=800,fail=0.01,
  after=hold``), parsed from ``--traffic-ramp`` text by :func:`parse_ramp` or from a config's
  ``ramp:`` mapping by :meth:`RampSpec.from_mapping`, each bad key or value named in a
  :class:`~trafficinator_locust.core.errors.UsageError`.
* :class:`StepResult`: what one step measured (offered and delivered hits, p50/p95, failure ratio).
* :func:`judge`: a step's verdict: ``None`` when it passed, else the criterion it failed
  (``"saturation"``, then ``"failures"``, then ``"p95"``).
* :class:`Ramp`: one target's state machine. It multiplies the rate by ``factor`` each passing
  step (``ramping``); at the first failing step it brackets the knee between the highest passing
  and the lowest failing rate and bisects it geometrically with shorter steps (``refining``) until
  ``failing / passing <= 1.10``; then it holds the knee (``holding``) or stops (``stopped``). A
  first step that fails already puts the knee below ``start``: the ramp steps *down* by ``factor``
  (``start / factor``, ``start / factor**2``, ...) until a rate passes, then bisects as above; if
  nothing down to ``start / 100`` passes it stops with no knee. :meth:`Ramp.as_dict` is the
  report's ``capacity`` object.

The single invariant all of this protects: the knee is always a rate that passed, and once a step
failed, every later rate stays strictly between the highest passing rate (0 while none passed)
and the lowest failing rate, until the two are within 10 % of each other.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any, Literal, NamedTuple

from trafficinator_locust.core.errors import UsageError

Verdict = Literal["p95", "failures", "saturation"]
Phase = Literal["ramping", "refining", "holding", "stopped"]
After = Literal["hold", "stop"]

KEEP_UP = 0.9
"""A step saturates Matomo when fewer than this share of its offered hits were delivered."""
KNEE_PRECISION = 1.10
"""The search ends once ``lowest failing rate / highest passing rate`` is at most this."""
MIN_REFINE_SECONDS = 5.0
"""Refining steps last ``step / 2`` but at least this (and never longer than ``step``)."""
DESCENT_LIMIT = 100.0
"""A ramp whose first step fails searches down to ``start / DESCENT_LIMIT``, no further."""
# Float slack for the precision test: after k bisections of a ratio the bracket is exactly the
# ratio's 2**k-th root, which may land a few ulps above 1.10 when it is meant to be on it.
_EPSILON = 1e-9


# ---------------------------------------------------------------------------------------------
# The spec


class _Rule(NamedTuple):
    allowed: str  # what is allowed, as a message reads it
    example: str


_RULES: dict[str, _Rule] = {
    "start": _Rule("a number of hits per second > 0 and <= 1000000", "10"),
    "factor": _Rule("a number > 1 and <= 10", "1.5"),
    "step": _Rule("a duration from 1 s to 1 h: seconds (30) or with a unit (30s, 2m, 1h)", "30s"),
    "p95": _Rule("milliseconds > 0 and <= 600000", "800"),
    "fail": _Rule("a ratio >= 0 and < 1", "0.01"),
    "after": _Rule("hold or stop", "hold"),
}
KEYS = tuple(_RULES)
_DURATION = re.compile(r"(?P<number>[0-9]+(?:\.[0-9]*)?|\.[0-9]+)\s*(?P<unit>s|m|h)?")
_UNIT_SECONDS = {None: 1.0, "s": 1.0, "m": 60.0, "h": 3600.0}


def _number(value: object) -> float:
    """A finite float from a number or its text (``bool`` is no number here); ValueError otherwise."""
    if isinstance(value, bool):
        raise ValueError
    if isinstance(value, (int, float)):
        number = float(value)
    elif isinstance(value, str):
        number = float(value.strip())
    else:
        raise ValueError
    if not math.isfinite(number):
        raise ValueError
    return number


def _seconds(value: object) -> float:
    if isinstance(value, str):
        match = _DURATION.fullmatch(value.strip().lower())
        if match is None:
            raise ValueError
        return float(match["number"]) * _UNIT_SECONDS[match["unit"]]
    return _number(value)


def _convert(key: str, value: object) -> float | str:
    """``value`` for ``key`` as the spec holds it; ValueError when not allowed (see ``_RULES``)."""
    if key == "after":
        text = value.strip().lower() if isinstance(value, str) else None
        if text not in ("hold", "stop"):
            raise ValueError
        return text
    number = _seconds(value) if key == "step" else _number(value)
    within = {
        "start": 0 < number <= 1e6,
        "factor": 1 < number <= 10,
        "step": 1 <= number <= 3600,
        "p95": 0 < number <= 600_000,
        "fail": 0 <= number < 1,
    }[key]
    if not within:
        raise ValueError
    return number


def ramp_value(key: str, value: object) -> float | str:
    """``value`` of ramp key ``key`` as a spec holds it (``step`` in seconds); ValueError naming what
    is allowed otherwise, for a config model's validator::

        ramp_value("step", "2m")     # 120.0
        ramp_value("factor", 0.5)    # ValueError: must be a number > 1 and <= 10 (e.g. factor: 1.5)
    """
    try:
        return _convert(key, value)
    except ValueError:
        rule = _RULES[key]
        raise ValueError(f"must be {rule.allowed} (e.g. {key}: {rule.example})") from None


def _checked(key: str, value: object, spot: str, example: str) -> float | str:
    try:
        return _convert(key, value)
    except ValueError:
        rule = _RULES[key]
        raise UsageError(f"{spot}: must be {rule.allowed} (e.g. {example}), got {value!r}") from None


def _unknown(where: str, key: object, value: object) -> UsageError:
    return UsageError(f"{where}: unknown key {key!r} (with value {value!r}); the keys allowed are {', '.join(KEYS)}")


@dataclass(frozen=True, slots=True)
class RampSpec:
    """How one target's capacity ramp climbs and when a step passes.

    The offered rate starts at ``start`` hits per second and is multiplied by ``factor`` every
    ``step`` seconds while steps pass. A step passes when its p95 is at most ``p95`` ms, its
    failure ratio at most ``fail`` and Matomo delivered at least 90 % of the hits offered. Once
    the knee is known the target holds it (``after="hold"``) or stops sending (``"stop"``).
    Every value is checked on construction (a :class:`UsageError` naming the field)::

        spec = parse_ramp("start=20,factor=2,step=1m,after=stop")
        spec.step                                                          # 60.0
        RampSpec.from_mapping({"factor": 1.2}, "targets[2].ramp").factor   # 1.2
        spec.to_text()              # 'start=20,factor=2,step=60s,p95=800,fail=0.01,after=stop'
    """

    start: float = 10.0
    factor: float = 1.5
    step: float = 30.0
    p95: float = 800.0
    fail: float = 0.01
    after: After = "hold"

    def __post_init__(self) -> None:
        for item in fields(self):
            value = _checked(item.name, getattr(self, item.name), f"RampSpec.{item.name}", _RULES[item.name].example)
            object.__setattr__(self, item.name, value)

    @classmethod
    def from_mapping(cls, mapping: object, where: str = "ramp") -> RampSpec:
        """The spec of a config's ``ramp: {start: 10, factor: 1.5, step: 30s, ...}``; every key optional.

        Messages name the spot under ``where``: ``targets[2].ramp.factor: must be a number > 1 and
        <= 10 (e.g. factor: 1.5), got 0.5``. Numbers may be YAML numbers or their text.
        """
        if not isinstance(mapping, Mapping):
            raise UsageError(f"{where}: must be a mapping like {{start: 10, factor: 1.5, step: 30s}}, got {mapping!r}")
        values: dict[str, Any] = {}
        for key, value in mapping.items():
            if key not in _RULES:
                raise _unknown(where, key, value)
            values[key] = _checked(key, value, f"{where}.{key}", f"{key}: {_RULES[key].example}")
        return cls(**values)

    def to_text(self) -> str:
        """The spec as ``--traffic-ramp`` text; :func:`parse_ramp` reads it back to an equal spec."""
        return (
            f"start={_plain(self.start)},factor={_plain(self.factor)},step={_plain(self.step)}s,"
            f"p95={_plain(self.p95)},fail={_plain(self.fail)},after={self.after}"
        )


def _plain(number: float) -> str:
    return str(int(number)) if number.is_integer() and abs(number) < 1e15 else repr(number)


def parse_ramp(text: str, where: str = "--traffic-ramp") -> RampSpec:
    """The spec of ``"start=10,factor=1.5,step=30s,p95=800,fail=0.01,after=stop"``; every key optional.

    Empty text (or empty items between commas) leave the defaults. A key given twice, an unknown
    key, an item without ``=`` and a value out of bounds raise :class:`UsageError` naming the key,
    the value and what is allowed::

        parse_ramp("factor=2,step=2m")        # RampSpec(start=10.0, factor=2.0, step=120.0, ...)
        parse_ramp("factor=1")                # UsageError: --traffic-ramp factor: must be a number > 1 ...
    """
    values: dict[str, Any] = {}
    seen: dict[str, str] = {}
    for raw in text.split(","):
        item = raw.strip()
        if not item:
            continue
        key, equals, value = item.partition("=")
        key, value = key.strip().lower(), value.strip()
        if not equals:
            raise UsageError(f"{where}: {item!r} is not key=value (e.g. factor=1.5); the keys are {', '.join(KEYS)}")
        if key not in _RULES:
            raise _unknown(where, key, value)
        if key in seen:
            raise UsageError(f"{where}: {key} is given twice ({seen[key]!r} and {item!r}); give each key once")
        seen[key] = item
        values[key] = _checked(key, value, f"{where} {key}", f"{key}={_RULES[key].example}")
    return RampSpec(**values)


# ---------------------------------------------------------------------------------------------
# One step and its verdict


@dataclass(frozen=True, slots=True)
class StepResult:
    """What one step of a target measured: hits offered and delivered, latency and failures.

    ``offered_*`` are the hits the generator sent, ``delivered_*`` those Matomo answered with
    success. ``offered_hits``/``delivered_hits`` are the counts behind the rates; when given they
    decide saturation (no rounding of a short step's rates), else the rates do::

        StepResult(offered_hits_per_second=40, delivered_hits_per_second=39.5, p50_ms=80, p95_ms=310,
                   fail_ratio=0.002, seconds=30, offered_hits=1200, delivered_hits=1185)
    """

    offered_hits_per_second: float
    delivered_hits_per_second: float
    p50_ms: float
    p95_ms: float
    fail_ratio: float
    seconds: float
    offered_hits: int | None = None
    delivered_hits: int | None = None

    def __post_init__(self) -> None:
        for name in ("offered_hits_per_second", "delivered_hits_per_second", "p50_ms", "p95_ms", "seconds"):
            value = getattr(self, name)
            if not math.isfinite(value) or value < 0:
                raise ValueError(f"StepResult.{name} must be finite and >= 0, got {value!r}")
        if not 0 <= self.fail_ratio <= 1:
            raise ValueError(f"StepResult.fail_ratio must be within 0..1, got {self.fail_ratio!r}")
        for name in ("offered_hits", "delivered_hits"):
            count = getattr(self, name)
            if count is not None and count < 0:
                raise ValueError(f"StepResult.{name} must be >= 0, got {count!r}")

    def delivered_share(self) -> float:
        """Delivered / offered hits (counts when given); 0 when nothing was offered."""
        if self.offered_hits is not None and self.delivered_hits is not None:
            return self.delivered_hits / self.offered_hits if self.offered_hits else 0.0
        if self.offered_hits_per_second <= 0:
            return 0.0
        return self.delivered_hits_per_second / self.offered_hits_per_second


def judge(spec: RampSpec, result: StepResult, rate: float | None = None) -> Verdict | None:
    """``None`` when the step passed, else the criterion it failed, the first of:

    * ``"saturation"``: Matomo delivered less than 90 % of the hits offered. It comes first because
      it is the cause the other two usually follow from: a Matomo that cannot keep up queues
      (p95 rises) and then refuses (failures rise).
    * ``"failures"``: the failure ratio is above ``spec.fail``; errors weigh more than slowness.
    * ``"p95"``: the 95th percentile is above ``spec.p95`` ms.

    With ``rate`` (the hits per second the ramp asked for, as :meth:`Ramp.record` passes it) the
    delivered hits must also reach 90 % of that rate: a generator that fell short proves nothing
    about the rate asked, so a knee is only ever claimed at a rate that was actually delivered.
    A step that offered nothing fails as saturation for the same reason. Limits are inclusive::

        judge(RampSpec(), StepResult(40, 39.5, 80, 310, 0.002, 30))     # None
        judge(RampSpec(), StepResult(40, 30.0, 80, 2900, 0.2, 30))      # 'saturation'
    """
    short_of_rate = rate is not None and result.delivered_hits_per_second < KEEP_UP * rate
    if result.delivered_share() < KEEP_UP or short_of_rate:
        return "saturation"
    if result.fail_ratio > spec.fail:
        return "failures"
    if result.p95_ms > spec.p95:
        return "p95"
    return None


class Step(NamedTuple):
    """One measured step of a ramp's search: the rate asked, what it measured, its verdict."""

    rate: float
    result: StepResult
    verdict: Verdict | None


# ---------------------------------------------------------------------------------------------
# The ramp


class Ramp:
    """One target's capacity search: ``ramping`` -> ``refining`` -> ``holding`` or ``stopped``.

    The caller offers :attr:`rate` hits per second for :attr:`step_seconds`, then calls
    :meth:`record` with the step's figures; :meth:`finish` when the run ends first. The rule:

    * ``ramping``: a passing step multiplies the rate by ``factor``. The first failing step
      brackets the knee between the last passing rate and itself.
    * ``refining`` (steps of ``max(step / 2, 5 s)``, at most ``step``): the next rate is the
      geometric midpoint ``sqrt(passing * failing)``; its verdict replaces the bracket's lower or
      upper end. With no passing rate yet (the very first step failed) the next rate is
      ``failing / factor`` instead, down to ``start / 100``; nothing passing down there stops the
      ramp with no knee. Each bisection halves the bracket's log-ratio, so a factor of 1.5 takes
      three (1.5 -> 1.22 -> 1.11 -> 1.05) and the largest factor, 10, takes five.
    * once ``failing / passing <= 1.10``, the knee is ``passing``: ``after=hold`` keeps offering it
      (later steps are only counted, :attr:`held_steps`/:attr:`held_failures`), ``after=stop``
      offers 0.

    ::

        ramp = Ramp(parse_ramp("start=10,factor=1.5"))
        while not ramp.done:
            ramp.record(measure(target, ramp.rate, ramp.step_seconds))   # the caller's step
        ramp.knee_hits_per_second, ramp.limited_by                        # 58.9, 'p95' (a Matomo keeping up with 60)
        report["capacity"] = ramp.as_dict(hits_per_visit=4.2)
    """

    def __init__(self, spec: RampSpec | None = None):
        self.spec = spec if spec is not None else RampSpec()
        self.steps: list[Step] = []
        """The search's steps in order (not those held at the knee)."""
        self.held_steps = 0
        self.held_failures = 0
        self._rate = self.spec.start
        self._phase: Phase = "ramping"
        self._passing: float | None = None
        self._failing: float | None = None
        self._failing_verdict: Verdict | None = None
        self._done = False
        self._cut_short = False

    # -- what the caller reads

    @property
    def rate(self) -> float:
        """The hits per second to offer now (0 once stopped)."""
        return 0.0 if self._phase == "stopped" else self._rate

    @property
    def step_seconds(self) -> float:
        """How long the current step lasts: ``step``, or the shorter refining step."""
        if self._phase == "refining":
            return min(self.spec.step, max(self.spec.step / 2, MIN_REFINE_SECONDS))
        return self.spec.step

    @property
    def phase(self) -> Phase:
        return self._phase

    @property
    def done(self) -> bool:
        """The search is over: the knee is known (or :meth:`finish` ended it, or nothing passed)."""
        return self._done

    @property
    def knee_hits_per_second(self) -> float | None:
        """The highest passing rate, once the search is over (``None`` before, or if none passed)."""
        return self._passing if self._done else None

    @property
    def knee_is_lower_bound(self) -> bool:
        """The run ended (:meth:`finish`) before the knee was known within 10 %."""
        return self._cut_short

    @property
    def highest_passing_hits_per_second(self) -> float | None:
        return self._passing

    @property
    def lowest_failing_hits_per_second(self) -> float | None:
        return self._failing

    @property
    def limited_by(self) -> Verdict | Literal["none"] | None:
        """The criterion that failed at the bracket's upper end; ``"none"`` if the search ended with
        no failure; ``None`` while it still climbs with none."""
        if self._failing_verdict is not None:
            return self._failing_verdict
        return "none" if self._done else None

    # -- what the caller tells

    def record(self, result: StepResult) -> None:
        """The current step ended with ``result``: judge it and move to the next rate or phase.

        While holding, the step is only counted. Once stopped, a late step (one the stop cut
        short) is ignored.
        """
        if self._phase == "stopped":
            return
        verdict = judge(self.spec, result, rate=self._rate)
        if self._phase == "holding":
            self.held_steps += 1
            self.held_failures += verdict is not None
            return
        self.steps.append(Step(self._rate, result, verdict))
        if verdict is None:
            self._passing = self._rate
        else:
            self._failing, self._failing_verdict = self._rate, verdict
        self._advance()

    def finish(self) -> None:
        """The run is over: stop, and if the knee was not known yet, take the highest passing rate
        as a lower bound (:attr:`knee_is_lower_bound`). Calling it again changes nothing."""
        if self._phase == "stopped":
            return
        if not self._done:
            self._done = self._cut_short = True
        self._phase = "stopped"

    def _advance(self) -> None:
        passing, failing = self._passing, self._failing
        if failing is None:
            self._rate *= self.spec.factor
        elif passing is None:
            lower = failing / self.spec.factor
            if lower < self.spec.start / DESCENT_LIMIT * (1 - _EPSILON):
                self._settle()
            else:
                self._phase, self._rate = "refining", lower
        elif failing <= passing * KNEE_PRECISION * (1 + _EPSILON):
            self._settle()
        else:
            self._phase, self._rate = "refining", math.sqrt(passing * failing)

    def _settle(self) -> None:
        self._done = True
        if self.spec.after == "hold" and self._passing is not None:
            self._phase, self._rate = "holding", self._passing
        else:
            self._phase = "stopped"

    # -- the report

    def as_dict(self, hits_per_visit: float | None = None) -> dict[str, Any]:
        """The report's ``capacity`` object; with ``hits_per_visit`` the knee also in visits per second."""
        knee = self.knee_hits_per_second
        if hits_per_visit is not None and not (math.isfinite(hits_per_visit) and hits_per_visit > 0):
            raise ValueError(f"hits_per_visit must be finite and > 0, got {hits_per_visit!r}")
        first_failure = next((i for i, step in enumerate(self.steps) if step.verdict is not None), len(self.steps))
        return {
            "knee_hits_per_second": knee,
            "knee_visits_per_second": knee / hits_per_visit if knee is not None and hits_per_visit else None,
            "knee_is_lower_bound": self._cut_short,
            "lowest_failing_hits_per_second": self._failing,
            "limited_by": self.limited_by,
            "phase": self._phase,
            "spec": self.spec.to_text(),
            "steps": [
                {
                    "phase": "ramping" if index <= first_failure else "refining",
                    "rate_hits_per_second": step.rate,
                    "offered_hits_per_second": step.result.offered_hits_per_second,
                    "delivered_hits_per_second": step.result.delivered_hits_per_second,
                    "p50_ms": step.result.p50_ms,
                    "p95_ms": step.result.p95_ms,
                    "fail_ratio": step.result.fail_ratio,
                    "seconds": step.result.seconds,
                    "passed": step.verdict is None,
                    "limited_by": step.verdict,
                }
                for index, step in enumerate(self.steps)
            ],
            "held": {"steps": self.held_steps, "failed": self.held_failures},
        }


__all__ = [
    "DESCENT_LIMIT",
    "KEEP_UP",
    "KEYS",
    "KNEE_PRECISION",
    "MIN_REFINE_SECONDS",
    "Ramp",
    "RampSpec",
    "Step",
    "StepResult",
    "judge",
    "parse_ramp",
    "ramp_value",
]
