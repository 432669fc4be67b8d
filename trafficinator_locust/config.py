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
from enum import Enum
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal, Union, get_args, get_origin
from urllib.parse import urlsplit, urlunsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator, model_validator

from .budget import weight_shares
from .yaml_source import ConfigError, ConfigPath, Problem, SourceDocument, load_yaml_file

DEFAULT_SITE_URL = "https://www.example.com"
MAX_GAP_SECONDS = 1800
DEFAULT_PAGES: tuple[tuple[str, str], ...] = (
    ("/", "Home"),
    ("/products", "Products"),
    ("/products/widgets", "Widgets"),
    ("/products/gadgets", "Gadgets"),
    ("/pricing", "Pricing"),
    ("/blog", "Blog"),
    ("/blog/getting-started", "Getting started"),
    ("/about", "About us"),
    ("/contact", "Contact"),
    ("/support/faq", "FAQ"),
)


class Distribution(str, Enum):
    """How planned visits are spread over targets (see docs/configuration.md)."""

    weighted = "weighted"
    round_robin = "round-robin"
    random = "random"
    mirror = "mirror"


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class IntRange(_Spec):
    """An inclusive range of whole numbers, ``{min: 3, max: 6}``; a target may override one end."""

    min: int | None = Field(None, ge=0)
    max: int | None = Field(None, ge=0)


class SecondsRange(_Spec):
    """An inclusive range of seconds, ``{min: 5, max: 30}``; a target may override one end."""

    min: float | None = Field(None, ge=0)
    max: float | None = Field(None, ge=0)


class PageSpec(_Spec):
    """One page of the tracked website: absolute URL or path below ``site_url``, and its title."""

    url: str = Field(min_length=1)
    title: str | None = None


class ActionShares(_Spec):
    """Share of visits (0..1) that get each add-on action, on top of their pageviews."""

    search: float | None = Field(None, ge=0, le=1, description="Site search (default 0.15).")
    outlink: float | None = Field(None, ge=0, le=1, description="Click on an external link (default 0.10).")
    download: float | None = Field(None, ge=0, le=1, description="File download (default 0.08).")
    event: float | None = Field(None, ge=0, le=1, description="Custom event (default 0.25).")


class TrafficSpec(_Spec):
    """What visits look like. Set in ``defaults.traffic`` (shared) or a target's ``traffic`` (override)."""

    site_url: str | None = Field(None, description="Base URL of the tracked website; page paths are joined to it.")
    pageviews: IntRange | None = Field(None, description="Pageviews per visit (default 3 to 6).")
    dwell_seconds: SecondsRange | None = Field(None, description="Time on a page before the next hit (default 5 to 30 s).")
    pause_between_visits: SecondsRange | None = Field(None, description="Pause of a simulated user between two visits (default 0 to 1 s).")
    urls: str | list[str | PageSpec] | None = Field(
        None, description="Pages: a file with one 'url<TAB>title' per line (relative to this YAML file) or an inline list."
    )
    funnels: str | None = Field(None, description="YAML file of journeys (relative to this YAML file).")
    events: str | None = Field(None, description="YAML file of the event catalogue (relative to this YAML file).")
    actions: ActionShares | None = Field(None, description="Share of visits with each add-on action.")

    @field_validator("pageviews")
    @classmethod
    def _at_least_one_pageview(cls, value: IntRange | None) -> IntRange | None:
        if value is not None and value.min is not None and value.min < 1:
            raise ValueError("a visit needs at least one pageview: min must be >= 1")
        return value

    @field_validator("site_url")
    @classmethod
    def _site_url_http(cls, value: str | None) -> str | None:
        if value is not None:
            _check_http_url(value)
        return value


class ProfileSpec(_Spec):
    """How a target's daily visits spread over its local hours and weekdays (relative weights)."""

    hours: list[float] | None = Field(None, description="24 weights for local hours 0..23 (default flat); 0 pauses an hour.")
    weekdays: list[float] | None = Field(None, description="7 weights, Monday first (default flat); a day's cap is visits_per_day x 7 x w / sum(w).")

    @field_validator("hours")
    @classmethod
    def _24_hours(cls, value: list[float] | None) -> list[float] | None:
        return _check_weights(value, 24, "hours")

    @field_validator("weekdays")
    @classmethod
    def _7_days(cls, value: list[float] | None) -> list[float] | None:
        return _check_weights(value, 7, "weekdays")


def _check_weights(value: list[float] | None, count: int, what: str) -> list[float] | None:
    if value is None:
        return value
    if len(value) != count:
        raise ValueError(f"needs exactly {count} weights ({what}), got {len(value)}")
    if any(w < 0 for w in value) or not any(w > 0 for w in value):
        raise ValueError("weights must be >= 0 with at least one > 0")
    return value


class _TargetFields(_Spec):
    url: str | None = Field(None, description="Matomo tracker URL (http/https); a base URL gets /matomo.php appended.")
    site_id: int | None = Field(None, ge=1, description="Matomo site id (idsite), >= 1.")
    token_auth: SecretStr | None = Field(
        None, description="Matomo token with write access to the site. Use ${ENV_VAR}; never logged or shown."
    )
    weight: float | None = Field(None, gt=0, description="Relative share of users/visits (a ratio: 2/3/5 = 20/30/50). Default 1.")
    visits_per_day: int | None = Field(None, ge=0, description="This target's pace and hard daily cap.")
    timezone: str | None = Field(None, description="IANA time zone of the target's day (cap, h/m/s, diurnal curve). Default UTC.")
    enabled: bool | None = Field(None, description="Disabled targets get no user class and no traffic. Default true.")
    seed: int | None = Field(None, description="Seed for reproducible visit planning of this target.")
    profile: ProfileSpec | None = Field(None, description="Diurnal (hours) and weekday shape of the pace, in the target's time zone.")
    traffic: TrafficSpec | None = None

    @field_validator("site_id", "weight", "visits_per_day", "seed", mode="before")
    @classmethod
    def _no_booleans(cls, value: Any) -> Any:
        if isinstance(value, bool):
            raise ValueError("must be a number, not yes/no/true/false")
        return value

    @field_validator("url")
    @classmethod
    def _url_http(cls, value: str | None) -> str | None:
        if value is not None:
            _check_http_url(value)
            if urlsplit(value).query:
                raise ValueError("the tracker URL must not carry a query string (token_auth goes in the token_auth key)")
        return value

    @field_validator("timezone")
    @classmethod
    def _known_timezone(cls, value: str | None) -> str | None:
        if value is not None:
            _check_timezone(value)
        return value

    @field_validator("token_auth", mode="before")
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


class ConfigFile(_Spec):
    """The whole traffic YAML file."""

    targets: list[TargetSpec] = Field(description="The Matomo targets; at least one enabled.")
    defaults: DefaultsSpec | None = None
    distribution: Distribution = Field(Distribution.weighted, description="weighted | round-robin | random | mirror")
    visits_per_day: int | None = Field(None, ge=0, description="Total, split by weight among targets without their own rate.")
    seed: int | None = Field(None, description="Seed for reproducible visit planning of all targets.")


# ---------------------------------------------------------------------------------------------
# Resolved view


class _Resolved(BaseModel):
    model_config = ConfigDict(frozen=True)


class Page(_Resolved):
    url: str
    title: str


class Span(_Resolved):
    """A resolved inclusive range: both ends known, ``low <= high``."""

    min: float
    max: float


class Actions(_Resolved):
    """Resolved action shares of one target."""

    search: float = 0.15
    outlink: float = 0.10
    download: float = 0.08
    event: float = 0.25


class Traffic(_Resolved):
    """The merged traffic settings of one target, with its page list loaded."""

    site_url: str = DEFAULT_SITE_URL
    pageviews: Span = Span(min=3, max=6)
    dwell_seconds: Span = Span(min=5, max=30)
    pause_between_visits: Span = Span(min=0, max=1)
    pages: tuple[Page, ...]
    funnels: str | None = None
    events: str | None = None
    actions: Actions = Actions()


class Profile(_Resolved):
    """Resolved pace shape: 24 hourly and 7 weekday weights (flat by default)."""

    hours: tuple[float, ...] = (1.0,) * 24
    weekdays: tuple[float, ...] = (1.0,) * 7


class Target(_Resolved):
    """One target after merging ``defaults``: every value known, nothing left to look up."""

    name: str
    slug: str
    url: str
    site_id: int
    token_auth: SecretStr | None = None
    weight: float = 1.0
    visits_per_day: int | None = None
    timezone: str = "UTC"
    enabled: bool = True
    seed: int | None = None
    profile: Profile = Profile()
    traffic: Traffic

    @property
    def class_name(self) -> str:
        """The Locust user class name: identical on master and workers."""
        return f"Target_{self.slug}"

    @property
    def has_token(self) -> bool:
        return self.token_auth is not None

    @property
    def tzinfo(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)


class Config(_Resolved):
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
            secret = target.token_auth.get_secret_value() if target.token_auth else ""
            raw["token_auth"] = hashlib.sha256(secret.encode()).hexdigest()
        return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]


# ---------------------------------------------------------------------------------------------
# Loading


def load_config(path: str | Path, env: Mapping[str, str] | None = None) -> Config:
    """Load, validate and resolve a traffic YAML file. Raises :class:`ConfigError` with all problems."""
    return resolve_document(load_yaml_file(Path(path), env=env))


def resolve_document(doc: SourceDocument) -> Config:
    """Validate plain data from YAML (or migrated environment variables) into a :class:`Config`."""
    if not isinstance(doc.data, dict):
        raise ConfigError([doc.problem((), "the top level must be a mapping with a 'targets' list (see config/multi-environment.yaml)")])
    data = _wrap_single_target(doc)
    try:
        spec = ConfigFile.model_validate(data)
    except ValidationError as exc:
        problems = _problems_from_validation(exc, doc, ConfigFile)
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
            problems.append(doc.problem(path, f"duplicate target name '{name}' (also targets[{seen_names[folded]}]); names are case-insensitive and must be unique"))
        elif slug in seen_slugs:
            problems.append(doc.problem(path, f"name '{name}' gives the same class name Target_{slug} as targets[{seen_slugs[slug]}]; make the names differ in letters or digits"))
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
    problems = _name_problems(doc.data.get("targets") if "targets" in doc.data else [t.model_dump() for t in spec.targets], doc)
    defaults = spec.defaults.model_dump(exclude_unset=True) if spec.defaults else {}
    targets: list[Target] = []
    for index, target_spec in enumerate(spec.targets):
        path: ConfigPath = ("targets", index)
        merged = _deep_merge(defaults, target_spec.model_dump(exclude_unset=True))
        missing = [key for key in ("url", "site_id") if merged.get(key) is None]
        for key in missing:
            problems.append(doc.problem(path + (key,), f"missing '{key}': set it on the target or in 'defaults'"))
        if missing:
            continue
        try:
            traffic = _resolve_traffic(merged.pop("traffic", {}), doc, path)
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
    return Config(source=doc.source, targets=tuple(targets), distribution=spec.distribution, visits_per_day=spec.visits_per_day, seed=spec.seed)


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


def _resolve_traffic(raw: dict[str, Any], doc: SourceDocument, target_path: ConfigPath) -> Traffic:
    """Merge-complete traffic settings: load the URL list, resolve file paths against the YAML folder."""
    path = target_path + ("traffic",)
    problems: list[Problem] = []
    site_url = raw.get("site_url") or DEFAULT_SITE_URL
    values: dict[str, Any] = {}
    for key in ("pageviews", "dwell_seconds", "pause_between_visits"):
        default: Span = Traffic.model_fields[key].default
        given = raw.get(key) or {}
        low, high = given.get("min", default.min), given.get("max", default.max)
        if low > high:
            problems.append(doc.problem(path + (key,), f"min ({low:g}) must not exceed max ({high:g}) after merging with defaults"))
        elif key == "dwell_seconds" and high >= MAX_GAP_SECONDS:
            problems.append(doc.problem(path + (key,), f"max ({high:g}) must stay under {MAX_GAP_SECONDS} s: Matomo ends a visit after 30 minutes without a hit"))
        else:
            values[key] = Span(min=low, max=high)
    if raw.get("actions"):
        values["actions"] = Actions(**raw["actions"])
    urls = raw.get("urls")
    pages: tuple[Page, ...] = ()
    try:
        pages = _load_pages(urls, site_url, doc, path + ("urls",)) if urls is not None else _default_pages(site_url)
    except ConfigError as exc:
        problems.extend(exc.problems)
    for key in ("funnels", "events"):
        if raw.get(key):
            file = doc.folder / raw[key]
            if not file.is_file():
                problems.append(doc.problem(path + (key,), f"file '{raw[key]}' not found (looked in {doc.folder}); paths are relative to the YAML file"))
            values[key] = str(file)
    if problems:
        raise ConfigError(problems)
    return Traffic(site_url=site_url, pages=pages, **values)


def _default_pages(site_url: str) -> tuple[Page, ...]:
    return tuple(Page(url=site_url.rstrip("/") + path, title=title) for path, title in DEFAULT_PAGES)


def _load_pages(urls: Any, site_url: str, doc: SourceDocument, path: ConfigPath) -> tuple[Page, ...]:
    if isinstance(urls, str):
        file = doc.folder / urls
        try:
            lines = file.read_text(encoding="utf-8").splitlines()
        except FileNotFoundError:
            raise ConfigError([doc.problem(path, f"file '{urls}' not found (looked in {doc.folder}); paths are relative to the YAML file")]) from None
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError([doc.problem(path, f"cannot read '{urls}' ({exc.__class__.__name__}); it must be UTF-8 text, one 'url<TAB>title' per line")]) from None
        entries = [line.split("\t", 1) for line in lines if line.strip() and not line.lstrip().startswith("#")]
        items = [PageSpec(url=parts[0].strip(), title=parts[1].strip() if len(parts) > 1 else None) for parts in entries]
    else:
        items = [PageSpec(**item) if isinstance(item, dict) else PageSpec(url=item) for item in urls]
    if not items:
        raise ConfigError([doc.problem(path, "the URL list is empty; give at least one page")])
    pages = []
    for item in items:
        url = item.url if item.url.startswith(("http://", "https://")) else site_url.rstrip("/") + "/" + item.url.lstrip("/")
        pages.append(Page(url=url, title=item.title or _title_from_url(url)))
    return tuple(pages)


def _title_from_url(url: str) -> str:
    last = urlsplit(url).path.rstrip("/").rsplit("/", 1)[-1]
    return last.replace("-", " ").replace("_", " ").capitalize() or "Home"


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


def _check_http_url(value: str) -> None:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("must be an http:// or https:// URL with a host, e.g. https://analytics.example.com/matomo.php")
    if parts.username or parts.password:
        raise ValueError("must not contain user:password; Matomo authenticates with token_auth")


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


# ---------------------------------------------------------------------------------------------
# Pydantic errors -> user-facing problems

_SECRET_KEYS = {"token_auth"}


def _problems_from_validation(exc: ValidationError, doc: SourceDocument, model: type[BaseModel]) -> list[Problem]:
    problems = []
    for error in exc.errors(include_url=False):
        loc = _clean_loc(error["loc"])
        problems.append(doc.problem(loc, _describe(error, loc, model)))
    return problems


def _clean_loc(loc: tuple[Any, ...]) -> ConfigPath:
    """Drop pydantic's union-branch labels (``str``, ``list[...]``) from an error location."""
    return tuple(part for part in loc if isinstance(part, int) or not _is_branch_label(part))


def _is_branch_label(part: str) -> bool:
    return part in {"str", "int", "float", "bool", "PageSpec"} or "[" in part or part.startswith("function-")


def _describe(error: dict[str, Any], loc: ConfigPath, model: type[BaseModel]) -> str:
    kind = error["type"]
    secret = any(part in _SECRET_KEYS for part in loc if isinstance(part, str))
    shown = "" if secret else _shown_input(error.get("input"))
    got = f" (got {shown.strip()})" if shown else ""
    if kind == "extra_forbidden":
        key = loc[-1]
        allowed = _allowed_keys(model, loc[:-1])
        guess = difflib.get_close_matches(str(key), allowed, n=1)
        hint = f" Did you mean '{guess[0]}'?" if guess else ""
        return f"unknown key '{key}'.{hint} Allowed here: {', '.join(sorted(allowed))}"
    if kind == "missing":
        return "required key is missing"
    if kind == "enum":
        return f"{shown}is not allowed; use one of: {error.get('ctx', {}).get('expected', '')}"
    message = error["msg"]
    if message.startswith("Value error, "):
        message = message[len("Value error, "):]
        return f"{shown}{message}" if message.startswith(("is ", "must ")) else f"{message}{got}"
    return f"{message[:1].lower()}{message[1:]}{got}"


def _shown_input(value: Any) -> str:
    if isinstance(value, (dict, list)) or value is None:
        return ""
    if isinstance(value, str) and "://" in value:
        value = _redacted_url(value)
    text = repr(value)
    return f"{text[:60]} " if len(text) <= 60 else f"{text[:57]}... "


def _redacted_url(url: str) -> str:
    """A URL fit for an error message: no user:password, no query (it may hold a token)."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return url.split("?", 1)[0].split("@")[-1]
    query = "?..." if parts.query else ""
    return urlunsplit((parts.scheme, host + port, parts.path, "", "")) + query


def _allowed_keys(model: type[BaseModel], loc: ConfigPath) -> list[str]:
    """The field names of the model found at ``loc`` (walking lists, optionals and unions)."""
    current: Any = model
    for part in loc:
        current = _unwrap(current, want_model=isinstance(part, str))
        if isinstance(part, str) and isinstance(current, type) and issubclass(current, BaseModel):
            field = current.model_fields.get(part)
            if field is None:
                return []
            current = field.annotation
    current = _unwrap(current, want_model=True)
    if isinstance(current, type) and issubclass(current, BaseModel):
        return list(current.model_fields)
    return []


def _unwrap(annotation: Any, want_model: bool) -> Any:
    """Strip Optional/list/Union until a model (or list element) remains."""
    for _ in range(4):
        origin = get_origin(annotation)
        if origin is Union or (origin is not None and str(origin) == "<class 'types.UnionType'>"):
            options = [a for a in get_args(annotation) if a is not type(None)]
            models = [a for a in options if isinstance(a, type) and issubclass(a, BaseModel)]
            lists = [a for a in options if get_origin(a) is list]
            annotation = models[0] if want_model and models else (lists[0] if lists else options[0])
        elif origin is list:
            annotation = get_args(annotation)[0]
        else:
            return annotation
    return annotation


def json_schema() -> dict[str, Any]:
    """JSON Schema of the config file, for editors (yaml-language-server)."""
    schema = ConfigFile.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "trafficinator-locust traffic config"
    return schema


__all__ = [
    "Config",
    "ConfigError",
    "ConfigFile",
    "Distribution",
    "Page",
    "Span",
    "Problem",
    "Target",
    "Traffic",
    "json_schema",
    "load_config",
    "resolve_document",
    "single_target_as_multi",
    "slugify",
    "tracker_url",
]

_ = Literal  # keep typing import used by annotations in subclasses
