"""CI thresholds per target: ``--traffic-check "fail_ratio<0.01,p95<800,Production:delivered>=0.98"``.

Pure: rules are parsed from text and evaluated against plain per-target figures (a mapping of metric
name to number), so a headless run can fail CI with exit code 3 naming the target and the rule.
A rule without a target applies to every enabled target; ``Name:rule`` applies to one.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from trafficinator_locust.core.errors import CheckSyntaxError

EXIT_CHECK_FAILED = 3

METRICS: dict[str, str] = {
    "fail_ratio": "failed requests / requests (0..1)",
    "failures": "failed requests",
    "requests": "requests sent",
    "visits": "visits started",
    "p50": "median response time, ms",
    "p95": "95th percentile response time, ms",
    "delivered": "visits started / visits expected at the target's pace (paced targets only)",
    "knee": "hits/s at the target's capacity knee (--traffic-pacing ramp only; a knee not found fails)",
}
_OPERATORS: dict[str, Callable[[float, float], bool]] = {
    "<=": operator.le,
    ">=": operator.ge,
    "==": operator.eq,
    "<": operator.lt,
    ">": operator.gt,
}
_RULE = re.compile(
    r"^\s*(?:(?P<target>[^:<>=]+?)\s*:)?\s*(?P<metric>[a-z_0-9]+)\s*(?P<op><=|>=|==|<|>)\s*(?P<value>-?[0-9]+(?:\.[0-9]+)?)\s*$"
)


@dataclass(frozen=True)
class Rule:
    target: str | None
    metric: str
    op: str
    value: float

    def __str__(self) -> str:
        scope = f"{self.target}:" if self.target else ""
        return f"{scope}{self.metric}{self.op}{self.value:g}"


@dataclass(frozen=True)
class CheckResult:
    target: str
    rule: Rule
    actual: float | None
    passed: bool

    def __str__(self) -> str:
        shown = "n/a" if self.actual is None else f"{self.actual:g}"
        return (
            f"{'PASS' if self.passed else 'FAIL'} [{self.target}] "
            f"{self.rule.metric}{self.rule.op}{self.rule.value:g} (actual {shown})"
        )


def parse_rules(texts: Iterable[str], known_targets: Iterable[str] = ()) -> list[Rule]:
    """Parse comma-separated rules from one or more option values. Raises CheckSyntaxError."""
    names = {name.casefold(): name for name in known_targets}
    rules = []
    for text in texts:
        for part in filter(None, (piece.strip() for piece in text.split(","))):
            match = _RULE.match(part)
            if not match:
                raise CheckSyntaxError(
                    f"cannot read check '{part}'; write [target:]metric<op>number, "
                    "e.g. p95<800 or Production:fail_ratio<0.01"
                )
            metric = match["metric"]
            if metric not in METRICS:
                raise CheckSyntaxError(f"unknown metric '{metric}' in '{part}'; use one of: {', '.join(METRICS)}")
            target = match["target"]
            if target is not None:
                if names and target.casefold() not in names:
                    raise CheckSyntaxError(
                        f"unknown target '{target}' in '{part}'; targets: {', '.join(names.values())}"
                    )
                target = names.get(target.casefold(), target)
            rules.append(Rule(target, metric, match["op"], float(match["value"])))
    return rules


def evaluate(rules: Iterable[Rule], figures: Mapping[str, Mapping[str, float | None]]) -> list[CheckResult]:
    """Apply each rule to its target(s). A metric a target does not have (``None``) fails the rule."""
    results = []
    for rule in rules:
        for target in [rule.target] if rule.target else list(figures):
            actual = figures.get(target, {}).get(rule.metric)
            passed = actual is not None and _OPERATORS[rule.op](actual, rule.value)
            results.append(CheckResult(target, rule, actual, passed))
    return results


def exit_code(results: Iterable[CheckResult]) -> int:
    return EXIT_CHECK_FAILED if any(not r.passed for r in results) else 0
