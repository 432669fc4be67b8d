"""Migrate the single-target generator's environment variables into a one-target config.

The generator this project replaces was configured only by environment variables (``MATOMO_URL``,
``MATOMO_SITE_ID``, ``TARGET_VISITS_PER_DAY``, ``*_PROBABILITY``...). Users keep their ``.env`` files:
when no traffic config is given and ``MATOMO_URL`` is set, the plugin builds the equivalent config,
and ``trafficinator migrate`` prints it as YAML so they can move to the multi-target file.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from trafficinator_locust.core.config import Config, resolve_document
from trafficinator_locust.core.yaml_source import ConfigPath, SourceDocument

LEGACY_SOURCE = "environment"

# env var -> (path inside the target, converter name)
_SIMPLE: dict[str, tuple[ConfigPath, str]] = {
    "MATOMO_URL": (("url",), "str"),
    "MATOMO_SITE_ID": (("site_id",), "str"),
    "MATOMO_TOKEN_AUTH": (("token_auth",), "str"),
    "TARGET_VISITS_PER_DAY": (("visits_per_day",), "int"),
    "TIMEZONE": (("timezone",), "str"),
    "PAGEVIEWS_MIN": (("traffic", "pageviews", "min"), "str"),
    "PAGEVIEWS_MAX": (("traffic", "pageviews", "max"), "str"),
    "PAUSE_BETWEEN_PVS_MIN": (("traffic", "dwell_seconds", "min"), "str"),
    "PAUSE_BETWEEN_PVS_MAX": (("traffic", "dwell_seconds", "max"), "str"),
    "URLS_FILE": (("traffic", "urls"), "path"),
    "SITESEARCH_PROBABILITY": (("traffic", "actions", "search"), "str"),
    "OUTLINKS_PROBABILITY": (("traffic", "actions", "outlink"), "str"),
    "DOWNLOADS_PROBABILITY": (("traffic", "actions", "download"), "str"),
    "ECOMMERCE_PROBABILITY": (("traffic", "ecommerce", "order"), "str"),
    "ECOMMERCE_CURRENCY": (("traffic", "ecommerce", "currency"), "str"),
    "ECOMMERCE_TAX_RATE": (("traffic", "ecommerce", "tax_rate"), "str"),
    "ECOMMERCE_SHIPPING_RATES": (("traffic", "ecommerce", "shipping"), "list"),
    "ECOMMERCE_ITEMS_MIN": (("traffic", "ecommerce", "items", "min"), "str"),
    "ECOMMERCE_ITEMS_MAX": (("traffic", "ecommerce", "items", "max"), "str"),
}

# Errors about a whole range name both of its variables.
_RANGE_LABELS: dict[ConfigPath, str] = {
    ("targets", 0, "traffic", "pageviews"): "PAGEVIEWS_MIN/PAGEVIEWS_MAX",
    ("targets", 0, "traffic", "dwell_seconds"): "PAUSE_BETWEEN_PVS_MIN/PAUSE_BETWEEN_PVS_MAX",
}

# Known variables that have no config key: where their job went.
_ELSEWHERE: dict[str, str] = {
    "CONCURRENCY": "use Locust's -u/--users",
    "AUTO_STOP_AFTER_HOURS": "use Locust's -t/--run-time",
    "MAX_TOTAL_VISITS": "use visits_per_day (a daily cap per target)",
    "VISIT_DURATION_MIN": "visit length follows pageviews x traffic.dwell_seconds",
    "VISIT_DURATION_MAX": "visit length follows pageviews x traffic.dwell_seconds",
    "RANDOMIZE_VISITOR_COUNTRIES": "countries come from traffic.countries; cip is sent only with a token",
    "ECOMMERCE_ORDER_VALUE_MIN": "order values follow traffic.ecommerce.products and items",
    "ECOMMERCE_ORDER_VALUE_MAX": "order values follow traffic.ecommerce.products and items",
    "FUNNEL_CONFIG_PATH": "set traffic.funnels in the YAML (funnels are YAML now)",
    "AUTO_START": "start from the Locust web UI or --headless",
    "START_SIGNAL_FILE": "start from the Locust web UI or --headless",
    "START_CHECK_INTERVAL": "start from the Locust web UI or --headless",
    "LOG_LEVEL": "use Locust's --loglevel",
}
_ELSEWHERE_PREFIXES = {
    "ECOMMERCE_": "see traffic.ecommerce in docs/traffic.md",
    "BACKFILL_": "use `trafficinator backfill`",
}


def is_legacy_environment(env: Mapping[str, str]) -> bool:
    """True when the old single-target variables are present (``MATOMO_URL`` at least)."""
    return bool(env.get("MATOMO_URL"))


def legacy_document(env: Mapping[str, str]) -> SourceDocument:
    """The one-target config the old variables describe, as plain data with env-var names as labels."""
    target: dict[str, Any] = {"name": env.get("MATOMO_TARGET_NAME", "Default")}
    labels: dict[ConfigPath, str] = {("targets", 0): "MATOMO_URL", **_RANGE_LABELS}
    for var, (path, kind) in _SIMPLE.items():
        labels[("targets", 0) + path] = var
        value = env.get(var)
        if value is None or value == "":
            continue
        if kind == "int":
            value = _whole_number(value)
        elif kind == "path":
            value = str(Path(value).resolve())
        elif kind == "list":
            value = [part.strip() for part in value.split(",") if part.strip()]
        _set(target, path, value)
    if env.get("ECOMMERCE_PROBABILITY"):
        _set(target, ("traffic", "ecommerce", "cart"), env["ECOMMERCE_PROBABILITY"])  # the old tool ordered every cart
    direct = env.get("DIRECT_TRAFFIC_PROBABILITY")
    if direct:
        target.setdefault("traffic", {})["channels"] = _old_channels(direct)
        labels[("targets", 0, "traffic", "channels")] = "DIRECT_TRAFFIC_PROBABILITY"
    click, other = env.get("CLICK_EVENTS_PROBABILITY"), env.get("RANDOM_EVENTS_PROBABILITY")
    if click or other:
        target.setdefault("traffic", {}).setdefault("actions", {})["event"] = _either(click, other)
        labels[("targets", 0, "traffic", "actions", "event")] = "CLICK_EVENTS_PROBABILITY"
    return SourceDocument(data={"targets": [target]}, source=LEGACY_SOURCE, path_labels=labels, folder=Path.cwd())


def legacy_config(env: Mapping[str, str]) -> Config:
    """Validate the migrated variables; errors name the environment variable to fix."""
    return resolve_document(legacy_document(env))


def unmapped_variables(env: Mapping[str, str]) -> dict[str, str]:
    """Old variables that are set but have no config key, with where their job went."""
    notes = {var: why for var, why in _ELSEWHERE.items() if env.get(var)}
    for var in env:
        for prefix, why in _ELSEWHERE_PREFIXES.items():
            if var.startswith(prefix) and env.get(var) and var not in _SIMPLE and var not in notes:
                notes[var] = why
    return dict(sorted(notes.items()))


def migration_yaml(env: Mapping[str, str]) -> str:
    """The multi-target YAML equivalent of the old variables, token kept as ``${MATOMO_TOKEN_AUTH}``."""
    config = legacy_config(env)  # validates first: never print a config that would not load
    target = legacy_document(env).data["targets"][0]
    if "token_auth" in target:
        target["token_auth"] = "${MATOMO_TOKEN_AUTH}"
    if "site_id" in target:
        target["site_id"] = config.targets[0].site_id
    for key in ("pageviews", "dwell_seconds"):
        span = target.get("traffic", {}).get(key)
        if span:
            resolved = getattr(config.targets[0].traffic, key)
            target["traffic"][key] = {"min": _number(resolved.min), "max": _number(resolved.max)}
    if "traffic" in target:
        target["traffic"] = _typed(target["traffic"])
    text = "# Migrated from the single-target environment variables by `trafficinator migrate`.\n"
    text += "# yaml-language-server: $schema=trafficinator.schema.json\n"
    text += yaml.safe_dump({"targets": [target]}, sort_keys=False, allow_unicode=True)
    notes = unmapped_variables(env)
    if notes:
        text += "# Variables without a config key:\n" + "".join(f"#   {var}: {why}\n" for var, why in notes.items())
    return text


def _typed(value: Any) -> Any:
    """Numbers read from variables as text become numbers again in the printed YAML."""
    if isinstance(value, dict):
        return {key: _typed(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_typed(item) for item in value]
    if isinstance(value, str):
        try:
            number = float(value)
        except ValueError:
            return value
        return int(number) if number.is_integer() and "." not in value else number
    return value


def _set(tree: dict[str, Any], path: ConfigPath, value: Any) -> None:
    for key in path[:-1]:
        tree = tree.setdefault(str(key), {})
    tree[str(path[-1])] = value


def _whole_number(value: str) -> Any:
    try:
        return int(float(value))
    except (ValueError, OverflowError):  # "abc", "nan"; "inf", "1e999"
        return value  # let validation report it with the variable's name


def _either(first: str | None, second: str | None) -> Any:
    """Chance that a visit has at least one of two independent event kinds."""
    try:
        a, b = float(first or 0), float(second or 0)
    except ValueError:
        return first or second
    return round(1 - (1 - a) * (1 - b), 4)


def _old_channels(direct: str) -> Any:
    """The old tool: direct share as given, the rest split search 35 : social 15 : referral 20."""
    try:
        share = float(direct)
    except ValueError:
        return {"direct": direct}
    rest = max(1 - share, 0) / 70
    return {
        "direct": round(share * 100, 2),
        "search": round(35 * rest * 100, 2),
        "social": round(15 * rest * 100, 2),
        "website": round(20 * rest * 100, 2),
        "campaign": 0,
    }


def _number(value: float) -> int | float:
    return int(value) if float(value).is_integer() else value


__all__ = [
    "is_legacy_environment",
    "legacy_config",
    "legacy_document",
    "migration_yaml",
    "unmapped_variables",
]
