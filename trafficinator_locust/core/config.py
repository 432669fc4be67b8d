"""The traffic config: what a user may write, and the merged per-target view the rest of the code reads.

Two layers of models:

* *spec* models (``ConfigFile``, ``DefaultsSpec``, ``TargetSpec``, ``TrafficSpec``) describe the YAML
  file exactly; every field is optional where ``defaults`` may supply it and unknown keys are errors,
  so typos never pass silently. They also produce the JSON Schema for editors.
* *resolved* models (``Config``, ``Target``, ``Traffic``) are what users, budgets and reports read:
  ``defaults`` merged into each target, file paths resolved and loaded, the rate of each target known.

Loading does the file I/O (YAML, URL lists); everything downstream is pure.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import re
import unicodedata
from collections.abc import Mapping
from dataclasses import replace
from enum import Enum
from functools import lru_cache
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from pydantic import Field, SecretStr, ValidationError, field_validator

from trafficinator_locust.core.budget import DayProfile, Pace, WeekProfile, check_weights, weight_shares
from trafficinator_locust.core.bulk import (
    DEFAULT_BULK_SIZE,
    DEFAULT_RETRIES,
    DEFAULT_RETRY_DELAY,
    MAX_BULK_SIZE,
    MAX_RETRIES,
    MAX_RETRY_DELAY,
)
from trafficinator_locust.core.errors import ConfigError, Problem
from trafficinator_locust.core.ramp import RampSpec, ramp_value
from trafficinator_locust.core.spec_errors import problems_from_validation
from trafficinator_locust.core.traffic import (
    MAX_WEIGHT,
    Resolved,
    Spec,
    Traffic,
    TrafficSpec,
    check_http_url,
    resolve_traffic,
)
from trafficinator_locust.core.yaml_source import ConfigPath, SourceDocument, load_yaml_file

# Limits (docs/limits.md; the traffic model's are in core/traffic.py, the YAML's in core/yaml_source.py).
MAX_TARGETS = 1_000
"""Entries of ``targets`` (each gets a Locust user class)."""
MAX_SITE_ID = 2**32 - 1
"""Matomo's ``site.idsite`` is ``INTEGER(10) UNSIGNED``: 4,294,967,295 is the largest site id there can be."""
MAX_VISITS_PER_DAY = 100_000_000
"""``visits_per_day`` of a target or of the whole config (about 1,160 visits a second)."""
MAX_SEED = 2**63 - 1
"""``seed``: from -MAX_SEED to MAX_SEED (the generated seeds are 63-bit)."""


class Distribution(str, Enum):
    """How planned visits are spread over targets (see docs/configuration.md)."""

    weighted = "weighted"
    round_robin = "round-robin"
    random = "random"
    mirror = "mirror"


class Transport(str, Enum):
    """How a target's hits travel (see docs/traffic.md)."""

    single = "single"
    bulk = "bulk"


class ProfileSpec(Spec):
    """How a target's daily visits spread over its local hours and weekdays (relative weights)."""

    hours: list[float] | None = Field(
        None, description="24 weights for local hours 0..23 (default flat); 0 pauses an hour."
    )
    weekdays: list[float] | None = Field(
        None, description="7 weights, Monday first (default flat); a day's cap is visits_per_day x 7 x w / sum(w)."
    )

    @field_validator("hours")
    @classmethod
    def _24_hours(cls, value: list[float] | None) -> list[float] | None:
        return _check_weights(value, 24, "hours")

    @field_validator("weekdays")
    @classmethod
    def _7_days(cls, value: list[float] | None) -> list[float] | None:
        return _check_weights(value, 7, "weekdays")


def _check_weights(value: list[float] | None, count: int, what: str) -> list[float] | None:
    if value is not None and any(weight > MAX_WEIGHT for weight in value):
        raise ValueError(f"{what} weights must be <= {MAX_WEIGHT:,} (they are relative)")
    return value if value is None else list(check_weights(value, count, what))


class RampFields(Spec):
    """A target's capacity ramp under ``--traffic-pacing ramp`` (docs/capacity.md): each key set here
    (in ``defaults.ramp``, then the target's) wins over ``--traffic-ramp``'s."""

    start: float | str | None = Field(None, description="Hits per second of the first step (> 0). Default 10.")
    factor: float | str | None = Field(
        None, description="The rate's multiplier after each passing step (> 1, <= 10). Default 1.5."
    )
    step: float | str | None = Field(
        None, description="How long a step lasts: seconds, or with a unit (30s, 2m; 1 s to 1 h). Default 30s."
    )
    p95: float | str | None = Field(
        None, description="A step passes when its 95th percentile is at most this many ms. Default 800."
    )
    fail: float | str | None = Field(
        None, description="... and its failure ratio at most this (0 <= fail < 1). Default 0.01."
    )
    after: str | None = Field(
        None, description="Once the knee is known: hold (keep offering it) or stop (send nothing). Default hold."
    )

    @field_validator("start", "factor", "step", "p95", "fail", "after", mode="before")
    @classmethod
    def _allowed(cls, value: Any, info: Any) -> Any:
        if value is None:
            return None
        if isinstance(value, bool):
            raise ValueError("must be a number or a duration, not yes/no/true/false")
        return ramp_value(info.field_name, value)


class _TargetFields(Spec):
    url: str | None = Field(None, description="Matomo tracker URL (http/https); a base URL gets /matomo.php appended.")
    site_id: int | None = Field(
        None, ge=1, le=MAX_SITE_ID, description=f"Matomo site id (idsite), 1 to {MAX_SITE_ID:,}."
    )
    token_auth: SecretStr | None = Field(
        None, description="Matomo token with write access to the site. Use ${ENV_VAR}; never logged or shown."
    )
    report_token_auth: SecretStr | None = Field(
        None,
        description="Token with view access for the Reporting API (verify, validate --online); default: "
        "token_auth. Lets a target that tracks without a token be verified. Use ${ENV_VAR}; never shown.",
    )
    weight: float | None = Field(
        None,
        gt=0,
        le=MAX_WEIGHT,
        description="Relative share of users/visits (a ratio: 2/3/5 = 20/30/50). Default 1.",
    )
    visits_per_day: int | None = Field(
        None, ge=0, le=MAX_VISITS_PER_DAY, description="This target's pace and hard daily cap."
    )
    timezone: str | None = Field(
        None, description="IANA time zone of the target's day (cap, h/m/s, diurnal curve). Default UTC."
    )
    enabled: bool | None = Field(None, description="Disabled targets get no user class and no traffic. Default true.")
    seed: int | None = Field(
        None, ge=-MAX_SEED, le=MAX_SEED, description="Seed for reproducible visit planning of this target."
    )
    profile: ProfileSpec | None = Field(
        None, description="Diurnal (hours) and weekday shape of the pace, in the target's time zone."
    )
    transport: Transport | None = Field(
        None,
        description="single: one form POST per hit (default); bulk: the hits of all of the target's users in a "
        "process go out together as Matomo bulk requests (JSON POST, token in the body), each hit with its own cdt.",
    )
    bulk_size: int | None = Field(
        None,
        ge=1,
        le=MAX_BULK_SIZE,
        description=f"Hits per bulk request (transport: bulk). Default {DEFAULT_BULK_SIZE}.",
    )
    bulk_retries: int | None = Field(
        None,
        ge=0,
        le=MAX_RETRIES,
        description="Resends of a bulk request Matomo rolled back or did not process (a deadlock, 500, 503), "
        "and of each single hit isolated from a batch that keeps failing, before giving up on it "
        f"(transport: bulk; backfill without --retries). Default {DEFAULT_RETRIES}.",
    )
    bulk_retry_delay: float | None = Field(
        None,
        ge=0,
        le=MAX_RETRY_DELAY,
        description="Seconds before the first resend of a bulk request; each further one waits twice as long, "
        f"with +-50% jitter (backfill without --retry-delay). Default {DEFAULT_RETRY_DELAY:g}.",
    )
    ramp: RampFields | None = Field(
        None, description="The capacity ramp of --traffic-pacing ramp, key by key over --traffic-ramp."
    )
    traffic: TrafficSpec | None = None

    @field_validator(
        "site_id", "weight", "visits_per_day", "seed", "bulk_size", "bulk_retries", "bulk_retry_delay", mode="before"
    )
    @classmethod
    def _no_booleans(cls, value: Any) -> Any:
        if isinstance(value, bool):
            raise ValueError("must be a number, not yes/no/true/false")
        return value

    @field_validator("url")
    @classmethod
    def _url_http(cls, value: str | None) -> str | None:
        if value is not None:
            check_http_url(value)
            if urlsplit(value).query:
                raise ValueError(
                    "the tracker URL must not carry a query string (token_auth goes in the token_auth key)"
                )
        return value

    @field_validator("timezone")
    @classmethod
    def _known_timezone(cls, value: str | None) -> str | None:
        if value is not None:
            _check_timezone(value)
        return value

    @field_validator("token_auth", "report_token_auth", mode="before")
    @classmethod
    def _empty_token_is_none(cls, value: Any) -> Any:
        return None if value == "" else value


class DefaultsSpec(_TargetFields):
    """Shared settings: each applies to every target that does not set the key itself."""


class TargetSpec(_TargetFields):
    """One Matomo instance + site to send traffic to."""

    name: str = Field(min_length=1, description="Unique name (case-insensitive); used in stats and class names.")

    @field_validator("name")
    @classmethod
    def _name_printable(cls, value: str) -> str:
        if value != value.strip() or not value.isprintable() or any(c in value for c in "[]"):
            raise ValueError("must be printable text without leading/trailing spaces or square brackets")
        return value


class ConfigFile(Spec):
    """The whole traffic YAML file."""

    targets: list[TargetSpec] = Field(
        max_length=MAX_TARGETS,
        description=f"The Matomo targets; at least one enabled, at most {MAX_TARGETS:,} "
        "(docs/limits.md lists every limit).",
    )
    defaults: DefaultsSpec | None = None
    distribution: Distribution = Field(
        Distribution.weighted,
        description="weighted: users split by target weight; round-robin: equal shares whatever the weights; "
        "random: each visit's target drawn by weight; mirror: every planned visit goes to every target",
    )
    visits_per_day: int | None = Field(
        None,
        ge=0,
        le=MAX_VISITS_PER_DAY,
        description="Total, split by weight among targets without their own rate.",
    )
    seed: int | None = Field(
        None, ge=-MAX_SEED, le=MAX_SEED, description="Seed for reproducible visit planning of all targets."
    )


# ---------------------------------------------------------------------------------------------
# Resolved view


class Profile(Resolved):
    """Resolved pace shape: 24 hourly and 7 weekday weights (flat by default)."""

    hours: tuple[float, ...] = (1.0,) * 24
    weekdays: tuple[float, ...] = (1.0,) * 7


class Target(Resolved):
    """One target after merging ``defaults``: every value known, nothing left to look up."""

    name: str
    slug: str
    url: str
    site_id: int
    token_auth: SecretStr | None = None
    report_token_auth: SecretStr | None = None
    weight: float = 1.0
    visits_per_day: int | None = None
    timezone: str = "UTC"
    enabled: bool = True
    seed: int | None = None
    profile: Profile = Profile()
    transport: Transport = Transport.single
    bulk_size: int = DEFAULT_BULK_SIZE
    # How bulk requests are resent (ADR 014). Left out of model dumps, so a backfill checkpoint written
    # before these keys existed still matches its target: they change how hits travel, not which.
    bulk_retries: int = Field(DEFAULT_RETRIES, exclude=True)
    bulk_retry_delay: float = Field(DEFAULT_RETRY_DELAY, exclude=True)
    # The ramp keys the YAML sets (only the master reads them; left out of dumps like the retries).
    ramp: dict[str, Any] = Field(default_factory=dict, exclude=True)
    traffic: Traffic

    @property
    def class_name(self) -> str:
        """The Locust user class name: identical on master and workers."""
        return f"Target_{self.slug}"

    @property
    def origin(self) -> str:
        """``scheme://host:port`` of the tracker URL (the base URL of an HTTP session)."""
        parts = urlsplit(self.url)
        return f"{parts.scheme}://{parts.netloc}"

    @property
    def has_token(self) -> bool:
        return self.token_auth is not None

    @property
    def token(self) -> str | None:
        """The token in clear, for a POST body only (never a URL, a log line or a message); ``None`` without one."""
        return self.token_auth.get_secret_value() if self.token_auth is not None else None

    @property
    def report_token(self) -> str | None:
        """The Reporting API's token in clear (``report_token_auth``, else ``token_auth``), for POST bodies only."""
        secret = self.report_token_auth or self.token_auth
        return secret.get_secret_value() if secret is not None else None

    @property
    def secrets(self) -> tuple[str, ...]:
        """Every token of the target in clear: what masking must hide."""
        return tuple(s.get_secret_value() for s in (self.token_auth, self.report_token_auth) if s is not None)

    @property
    def tzinfo(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    def ramp_spec(self, base: RampSpec) -> RampSpec:
        """Its capacity ramp: ``base`` (``--traffic-ramp``) with the keys its YAML sets::

        target.ramp_spec(parse_ramp("start=20"))   # the target's ``ramp: {factor: 2}`` -> start 20, factor 2
        """
        return replace(base, **self.ramp) if self.ramp else base

    def pace(self) -> Pace:
        """Its schedule for budgets and backfill: rate/cap, time zone, hourly and weekday profile."""
        return Pace(
            self.visits_per_day,
            self.timezone,
            DayProfile(tuple(self.profile.hours)),
            WeekProfile(tuple(self.profile.weekdays)),
        )


class Config(Resolved):
    """A validated traffic config."""

    source: str
    targets: tuple[Target, ...]
    distribution: Distribution = Distribution.weighted
    visits_per_day: int | None = None
    seed: int | None = None

    @property
    def enabled_targets(self) -> tuple[Target, ...]:
        return tuple(t for t in self.targets if t.enabled)

    def weight_share(self, target: Target) -> float:
        """The target's share of users/visits among enabled targets, 0..1."""
        total = sum(t.weight for t in self.enabled_targets)
        return target.weight / total if target.enabled and total else 0.0

    def fingerprint(self) -> str:
        """A short hash of everything that shapes traffic, tokens included, to compare nodes."""
        payload = self.model_dump(mode="json", exclude={"source"})
        for raw, target in zip(payload["targets"], self.targets):
            secret = target.token or ""
            raw["token_auth"] = hashlib.sha256(secret.encode()).hexdigest()
            raw.pop("report_token_auth", None)  # only read by verify: it does not shape traffic
        return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]


# ---------------------------------------------------------------------------------------------
# Loading


def load_config(path: str | Path, env: Mapping[str, str] | None = None) -> Config:
    """Load, validate and resolve a traffic YAML file. Raises :class:`ConfigError` with all problems.

    ``${VAR}`` references are expanded from ``env`` (default: the process environment), files the
    config names (``urls``, ``funnels``...) are read relative to it, and every problem names its
    file, line and config path::

        config = load_config("config/multi-environment.yaml")
        for target in config.enabled_targets:
            print(target.name, target.url, config.weight_share(target))
    """
    return resolve_document(load_yaml_file(Path(path), env=env))


def resolve_document(doc: SourceDocument) -> Config:
    """Validate plain data from YAML (or migrated environment variables) into a :class:`Config`."""
    if not isinstance(doc.data, dict):
        raise ConfigError(
            [
                doc.problem(
                    (), "the top level must be a mapping with a 'targets' list (see config/multi-environment.yaml)"
                )
            ]
        )
    data = _wrap_single_target(doc)
    try:
        spec = ConfigFile.model_validate(data)
    except ValidationError as exc:
        problems = problems_from_validation(exc, doc, ConfigFile, data=data)
        raise ConfigError(problems + _name_problems(data.get("targets"), doc)) from None
    return _resolve(spec, doc)


def _name_problems(targets: Any, doc: SourceDocument) -> list[Problem]:
    """Duplicate names and class names, checked on raw data so they show up with schema errors."""
    if not isinstance(targets, list):
        return []
    problems: list[Problem] = []
    seen_names: dict[str, int] = {}
    seen_slugs: dict[str, int] = {}
    for index, target in enumerate(targets):
        name = target.get("name") if isinstance(target, dict) else None
        if not isinstance(name, str) or not name:
            continue
        path: ConfigPath = ("targets", index, "name")
        folded, slug = name.casefold(), slugify(name)
        if folded in seen_names:
            problems.append(
                doc.problem(
                    path,
                    f"duplicate target name '{name}' (also targets[{seen_names[folded]}]); "
                    "names are case-insensitive and must be unique",
                )
            )
        elif slug in seen_slugs:
            problems.append(
                doc.problem(
                    path,
                    f"name '{name}' gives the same class name Target_{slug} as targets[{seen_slugs[slug]}]; "
                    "make the names differ in letters or digits",
                )
            )
        seen_names.setdefault(folded, index)
        seen_slugs.setdefault(slug, index)
    return problems


TARGET_KEYS = frozenset(TargetSpec.model_fields) - {"traffic"}
_FILE_ONLY_KEYS = frozenset({"defaults", "distribution"})


def single_target_as_multi(data: dict[str, Any]) -> dict[str, Any] | None:
    """The multi-target form of a single-target layout (``url``/``site_id`` at the top, no ``targets``).

    Returns ``None`` when ``data`` is not in the single-target layout.
    """
    if "targets" in data or not ({"url", "site_id"} & data.keys()):
        return None
    target = {key: value for key, value in data.items() if key not in _FILE_ONLY_KEYS}
    rest = {key: value for key, value in data.items() if key in _FILE_ONLY_KEYS}
    return {**rest, "targets": [{"name": "Default", **target}]}


def _wrap_single_target(doc: SourceDocument) -> dict[str, Any]:
    """Accept the single-target layout; errors keep naming the keys as the user wrote them."""
    wrapped = single_target_as_multi(doc.data)
    if wrapped is None:
        return doc.data
    moved = set(wrapped["targets"][0]) & set(doc.data)
    for path, line in list(doc.lines.items()):
        if path and path[0] in moved:
            doc.lines.setdefault(("targets", 0) + path, line)
    for key in moved | TARGET_KEYS | {"traffic"}:
        doc.path_labels[("targets", 0, key)] = key
    doc.path_labels.setdefault(("targets", 0), "<top level>")
    return wrapped


def _resolve(spec: ConfigFile, doc: SourceDocument) -> Config:
    doc.cache.clear()  # lists built once per site, and their total, count for this resolution only
    doc.resolved_entries = 0
    problems = _name_problems(
        doc.data.get("targets") if "targets" in doc.data else [t.model_dump() for t in spec.targets], doc
    )
    defaults = _without_nulls(spec.defaults.model_dump(exclude_unset=True), _NULL_KEEPS) if spec.defaults else {}
    targets: list[Target] = []
    for index, target_spec in enumerate(spec.targets):
        path: ConfigPath = ("targets", index)
        merged = _deep_merge(defaults, _without_nulls(target_spec.model_dump(exclude_unset=True), _NULL_KEEPS))
        missing = [key for key in ("url", "site_id") if merged.get(key) is None]
        for key in missing:
            problems.append(doc.problem(path + (key,), f"missing '{key}': set it on the target or in 'defaults'"))
        if missing:
            continue
        try:
            traffic = resolve_traffic(merged.pop("traffic", {}), doc, path + ("traffic",))
        except ConfigError as exc:
            problems.extend(exc.problems)
            continue
        merged["url"] = tracker_url(merged["url"])
        if merged.get("profile"):
            merged["profile"] = Profile(**{key: tuple(value) for key, value in merged["profile"].items()})
        targets.append(Target(**merged, slug=slugify(target_spec.name), traffic=traffic))
    if not problems and not any(t.enabled for t in targets):
        problems.append(doc.problem(("targets",), "no enabled target; enable at least one (enabled: true)"))
    if problems:
        raise ConfigError(problems)
    targets = _split_total_rate(targets, spec.visits_per_day)
    return Config(
        source=doc.source,
        targets=tuple(targets),
        distribution=spec.distribution,
        visits_per_day=spec.visits_per_day,
        seed=spec.seed,
    )


def _split_total_rate(targets: list[Target], total: int | None) -> list[Target]:
    """Give targets without their own ``visits_per_day`` their weight's share of the total."""
    if total is None:
        return targets
    free = [t for t in targets if t.enabled and t.visits_per_day is None]
    if not free:
        return targets
    claimed = sum(t.visits_per_day or 0 for t in targets if t.enabled and t.visits_per_day is not None)
    shares = weight_shares({t.name: t.weight for t in free}, max(total - claimed, 0))
    return [t.model_copy(update={"visits_per_day": shares[t.name]}) if t.name in shares else t for t in targets]


_NULL_KEEPS = frozenset({"token_auth", "report_token_auth", "visits_per_day", "seed"})
"""Keys of a target where ``null`` overrides ``defaults`` (no token, unpaced, unseeded)."""
_TRAFFIC_NULL_KEEPS = frozenset({"urls", "events", "goals", "funnels", "extra_funnels"})
"""``traffic`` keys where ``null`` overrides the shared list (the built-in default applies)."""


def _without_nulls(data: dict[str, Any], keep: frozenset[str]) -> dict[str, Any]:
    """``data`` without the keys written as ``null`` (not set: ``defaults`` or the built-in default applies),
    except those in ``keep``; nested mappings too (lists are kept as they are, shared)."""
    result = {}
    for key, value in data.items():
        if value is None and key not in keep:
            continue
        if isinstance(value, dict):
            value = _without_nulls(value, _TRAFFIC_NULL_KEEPS if key == "traffic" else frozenset())
        result[key] = value
    return result


def _deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """Override wins key by key; nested mappings merge; lists and scalars replace."""
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def tracker_url(url: str) -> str:
    """``https://x/matomo`` -> ``https://x/matomo/matomo.php``; a URL already ending in ``.php`` stays."""
    parts = urlsplit(url)
    path = parts.path
    if not path.endswith(".php"):
        path = path.rstrip("/") + "/matomo.php"
    return urlunsplit((parts.scheme, parts.netloc, path, "", ""))


def slugify(name: str) -> str:
    """A stable identifier fragment for class names: ``"Client A"`` -> ``Client_A``."""
    ascii_name = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode()
    slug = re.sub(r"[^0-9A-Za-z]+", "_", ascii_name).strip("_")
    return slug or "t" + hashlib.sha1(name.encode()).hexdigest()[:8]


@lru_cache(maxsize=1)
def _timezone_names() -> frozenset[str]:
    return frozenset(available_timezones())


def _check_timezone(value: str) -> None:
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        close = difflib.get_close_matches(value, _timezone_names(), n=1)
        hint = f"; did you mean '{close[0]}'?" if close else ""
        raise ValueError(f"is not an IANA time zone name (like 'Europe/Stockholm' or 'UTC'){hint}") from None


def json_schema() -> dict[str, Any]:
    """JSON Schema of the config file, for editors (yaml-language-server)."""
    schema = ConfigFile.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "trafficinator-locust traffic config"
    return schema


__all__ = [
    "Config",
    "ConfigFile",
    "Distribution",
    "Target",
    "Traffic",
    "json_schema",
    "load_config",
    "resolve_document",
    "single_target_as_multi",
    "slugify",
    "tracker_url",
]
