"""CI threshold rules (pure): parsing, per-target scope, evaluation, exit code."""

import pytest

from trafficinator_locust.core.checks import EXIT_CHECK_FAILED, Rule, evaluate, exit_code, parse_rules
from trafficinator_locust.core.errors import CheckSyntaxError

FIGURES = {
    "Production": {
        "fail_ratio": 0.002,
        "p95": 640.0,
        "delivered": 0.991,
        "visits": 200,
        "requests": 900,
        "failures": 2,
        "p50": 120.0,
    },
    "Staging": {
        "fail_ratio": 0.05,
        "p95": 950.0,
        "delivered": None,
        "visits": 50,
        "requests": 300,
        "failures": 15,
        "p50": 300.0,
    },
}


def test_parse_global_and_scoped_rules():
    rules = parse_rules(["fail_ratio<0.01, p95<=800", "production:delivered>=0.98"], known_targets=FIGURES)
    assert rules == [
        Rule(None, "fail_ratio", "<", 0.01),
        Rule(None, "p95", "<=", 800.0),
        Rule("Production", "delivered", ">=", 0.98),
    ]


@pytest.mark.parametrize(
    "text, fragment",
    [
        ("p95 800", "cannot read check"),
        ("latency<5", "unknown metric 'latency'"),
        ("Nowhere:p95<5", "unknown target 'Nowhere'"),
        ("p95<fast", "cannot read check"),
    ],
)
def test_bad_rules_say_what_is_allowed(text, fragment):
    with pytest.raises(CheckSyntaxError, match=fragment):
        parse_rules([text], known_targets=FIGURES)


def test_global_rule_applies_to_every_target_and_names_the_failing_one():
    results = evaluate(parse_rules(["fail_ratio<0.01"]), FIGURES)
    assert [(r.target, r.passed) for r in results] == [("Production", True), ("Staging", False)]
    assert "FAIL [Staging] fail_ratio<0.01 (actual 0.05)" in [str(r) for r in results]
    assert exit_code(results) == EXIT_CHECK_FAILED == 3


def test_scoped_rule_applies_to_its_target_only():
    results = evaluate(parse_rules(["Production:p95<700"]), FIGURES)
    assert [(r.target, r.passed) for r in results] == [("Production", True)]
    assert exit_code(results) == 0


def test_a_missing_metric_fails_rather_than_passing_silently():
    results = evaluate(parse_rules(["delivered>=0.98"]), FIGURES)
    staging = next(r for r in results if r.target == "Staging")
    assert not staging.passed and "actual n/a" in str(staging)


@pytest.mark.parametrize(
    "op, value, expected",
    [("<", 640, False), ("<=", 640, True), (">", 639, True), (">=", 641, False), ("==", 640, True)],
)
def test_operators(op, value, expected):
    assert evaluate([Rule("Production", "p95", op, value)], FIGURES)[0].passed is expected
