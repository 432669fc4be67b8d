"""The traffic model of a target: what its visits look like, as written and as resolved.

``TrafficSpec`` is exactly what a user may write under ``traffic:`` (in ``defaults`` for every
target, or in a target to override key by key). ``resolve_traffic`` turns the merged settings into
``Traffic``: every default filled in, files (URL list, events, journeys) read and validated with
their own file's line numbers, so the planner never does I/O.
"""

from __future__ import annotations

from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from trafficinator_locust.core import catalog
from trafficinator_locust.core.errors import ConfigError, Problem
from trafficinator_locust.core.spec_errors import problems_from_validation
from trafficinator_locust.core.yaml_source import ConfigPath, SourceDocument, load_yaml_file

DEFAULT_SITE_URL = "https://www.example.com"
MAX_GAP_SECONDS = 1800
DEFAULT_PAGES: tuple[tuple[str, str], ...] = (
    ("/", "Home"),
    ("/products", "Products"),
    ("/products/widgets", "Widgets | Products"),
    ("/products/gadgets", "Gadgets | Products"),
    ("/pricing", "Pricing"),
    ("/blog", "Blog"),
    ("/blog/getting-started", "Getting started | Blog"),
    ("/about", "About us"),
    ("/contact", "Contact"),
    ("/support/faq", "FAQ | Support"),
)
CHANNELS = ("direct", "search", "social", "website", "ai", "campaign")
DEVICE_KINDS = ("desktop", "smartphone", "tablet")
STEP_TYPES = ("pageview", "search", "event", "outlink", "download", "goal", "cart", "order")


class Spec(BaseModel):
    """Base of the file-format models: unknown keys are errors, so typos never pass silently."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class Resolved(BaseModel):
    """Base of the resolved models: immutable values the rest of the code reads."""

    model_config = ConfigDict(frozen=True)


# ---------------------------------------------------------------------------------------------
# File format


class IntRange(Spec):
    """An inclusive range of whole numbers, ``{min: 3, max: 6}``; a target may override one end."""

    min: int | None = Field(None, ge=0)
    max: int | None = Field(None, ge=0)


class SecondsRange(Spec):
    """An inclusive range of seconds (or amounts), ``{min: 5, max: 30}``; a target may override one end."""

    min: float | None = Field(None, ge=0)
    max: float | None = Field(None, ge=0)


class PageSpec(Spec):
    """One page of the tracked website: absolute URL or path below ``site_url``, and its title."""

    url: str = Field(min_length=1)
    title: str | None = None


class ActionShares(Spec):
    """Share of visits (0..1) that get each add-on action, on top of their pageviews. Drawn independently."""

    search: float | None = Field(None, ge=0, le=1, description="Site search (default 0.15).")
    outlink: float | None = Field(None, ge=0, le=1, description="Click on an external link (default 0.10).")
    download: float | None = Field(None, ge=0, le=1, description="File download (default 0.08).")
    event: float | None = Field(None, ge=0, le=1, description="Custom event from the event catalogue (default 0.25).")
    goal: float | None = Field(None, ge=0, le=1, description="Goal conversion from 'goals' (default 0).")
    ping: float | None = Field(
        None, ge=0, le=1, description="Closing heartbeat so the last page gets a time (default 1)."
    )


class VisitorsSpec(Spec):
    """Who visits: new or returning, anonymous or logged in."""

    returning: float | None = Field(
        None, ge=0, le=1, description="Share of visits by returning visitors (default 0.3)."
    )
    pool_size: int | None = Field(None, ge=1, description="Returning visitors per target (default 2000).")
    logged_in: float | None = Field(
        None, ge=0, le=1, description="Share of visits with a user id (uid) (default 0.05)."
    )


class DeviceShares(Spec):
    """Relative shares of device kinds (default: the packaged market shares)."""

    desktop: float | None = Field(None, ge=0)
    smartphone: float | None = Field(None, ge=0)
    tablet: float | None = Field(None, ge=0)


class ChannelShares(Spec):
    """Relative shares of acquisition channels; a visit keeps its channel from start to end."""

    direct: float | None = Field(None, ge=0)
    search: float | None = Field(None, ge=0)
    social: float | None = Field(None, ge=0)
    website: float | None = Field(None, ge=0)
    ai: float | None = Field(
        None,
        ge=0,
        description="AI assistants (chatgpt.com, perplexity.ai, ...): 'AI Assistants' from Matomo 5.4, "
        "websites before. Default 1 of 100; 0 when other channels are listed without it.",
    )
    campaign: float | None = Field(None, ge=0)


class EventSpec(Spec):
    """One kind of custom event; ``value`` is drawn from its range when given."""

    category: str = Field(min_length=1)
    action: str = Field(min_length=1)
    name: str | None = None
    value: SecondsRange | None = None
    weight: float = Field(1.0, gt=0)


class GoalSpec(Spec):
    """A goal to convert (it must exist in Matomo); revenue drawn from its range when given."""

    id: int = Field(ge=1)
    revenue: SecondsRange | None = None
    weight: float = Field(1.0, gt=0)
    allow_multiple: bool = Field(
        False,
        description="As the goal's Matomo setting 'allow multiple conversions per visit': "
        "what verify expects (Matomo converts a goal once per visit by default).",
    )


class ProductSpec(Spec):
    sku: str = Field(min_length=1)
    name: str = Field(min_length=1)
    category: str = ""
    price: float = Field(gt=0)


class EcommerceSpec(Spec):
    """Shop behaviour. ``cart`` includes the visits that go on to ``order`` (abandoned = cart - order)."""

    product_view: float | None = Field(None, ge=0, le=1, description="Share of visits viewing products (default 0).")
    cart: float | None = Field(
        None, ge=0, le=1, description="Share of visits updating a cart, ordering or not (default 0)."
    )
    order: float | None = Field(None, ge=0, le=1, description="Share of visits placing an order (default 0; <= cart).")
    currency: str | None = Field(
        None, pattern=r"^[A-Z]{3}$", description="Reporting currency of the site (not sent; Matomo uses the site's)."
    )
    items: IntRange | None = Field(None, description="Distinct products in a cart (default 1 to 3).")
    quantity: IntRange | None = Field(None, description="Quantity per product (default 1 to 2).")
    tax_rate: float | None = Field(None, ge=0, le=1, description="Tax as a share of the subtotal (default 0.2).")
    shipping: list[float] | None = Field(None, description="Shipping costs to draw from (default [0, 4.9, 9.9]).")
    discount_share: float | None = Field(None, ge=0, le=1, description="Share of orders with a discount (default 0.1).")
    discount_rate: float | None = Field(
        None, ge=0, lt=1, description="Discount as a share of the subtotal (default 0.1)."
    )
    products: list[ProductSpec] | None = Field(None, description="Products (default: the packaged catalogue).")

    @field_validator("shipping")
    @classmethod
    def _shipping_costs(cls, value: list[float] | None) -> list[float] | None:
        if value is not None and (not value or any(cost < 0 for cost in value)):
            raise ValueError("must be a non-empty list of costs >= 0")
        return value


class StepSpec(Spec):
    """One step of a journey. Which keys apply depends on ``type``."""

    type: Literal["pageview", "search", "event", "outlink", "download", "goal", "cart", "order"]
    url: str | None = Field(None, description="pageview: page URL or path; outlink/download: the link.")
    title: str | None = None
    term: str | None = Field(None, description="search: the keyword.")
    category: str | None = None
    action: str | None = None
    name: str | None = None
    value: float | None = None
    id: int | None = Field(None, ge=1, description="goal: the goal id.")
    revenue: float | None = Field(None, ge=0)
    delay: SecondsRange | None = Field(None, description="Wait before this step (default: the dwell time).")

    @model_validator(mode="after")
    def _needs(self) -> StepSpec:
        required = {
            "pageview": ("url",),
            "search": ("term",),
            "event": ("category", "action"),
            "outlink": ("url",),
            "download": ("url",),
            "goal": ("id",),
        }
        missing = [key for key in required.get(self.type, ()) if getattr(self, key) in (None, "")]
        if missing:
            raise ValueError(f"a {self.type} step needs {', '.join(missing)}")
        return self


class JourneySpec(Spec):
    """A named path through the site, taken by a share of visits as one Matomo visit."""

    name: str = Field(min_length=1)
    share: float = Field(gt=0, le=1, description="Share of visits that take this journey.")
    steps: list[StepSpec] = Field(min_length=1)
    continue_browsing: bool = Field(
        False, description="Free browsing after the last step, up to the visit's pageviews."
    )

    @model_validator(mode="after")
    def _one_order_last(self) -> JourneySpec:
        """A visit orders at most once, and a cart update after its order is an abandoned cart in Matomo."""
        kinds = [step.type for step in self.steps]
        if kinds.count("order") > 1:
            raise ValueError("a journey has at most one order step (a visit orders at most once)")
        if "order" in kinds and "cart" in kinds[kinds.index("order") :]:
            raise ValueError("no cart step after the order step: Matomo would book an abandoned cart after the order")
        return self


class TrafficSpec(Spec):
    """What visits look like. Set in ``defaults.traffic`` (shared) or a target's ``traffic`` (override)."""

    site_url: str | None = Field(None, description="Base URL of the tracked website; page paths are joined to it.")
    urls: str | list[str | PageSpec] | None = Field(
        None,
        description="Pages: a file with one 'url<TAB>title' per line (relative to this YAML file) or an inline list.",
    )
    zipf_exponent: float | None = Field(
        None,
        ge=0,
        le=4,
        description="Page popularity skew: page k is chosen with weight 1/k^s (default 1; 0 = uniform).",
    )
    section_stickiness: float | None = Field(
        None,
        ge=0,
        le=1,
        description="Chance that the next page stays in the current section (first path segment) (default 0.7).",
    )
    pageviews: IntRange | None = Field(None, description="Pageviews per visit (default 3 to 6).")
    dwell_seconds: SecondsRange | None = Field(
        None, description="Time on a page before the next hit (default 5 to 30 s)."
    )
    pause_between_visits: SecondsRange | None = Field(
        None, description="Pause of a simulated user between two visits (default 0 to 1 s)."
    )
    visitors: VisitorsSpec | None = None
    devices: DeviceShares | None = None
    bots: float | None = Field(
        None, ge=0, le=1, description="Share of visits by known bots (default 0); Matomo drops them unless bots_param."
    )
    bots_param: bool | None = Field(
        None, description="Send bots=1 with bot visits so Matomo records them (default false)."
    )
    languages: dict[str, float] | None = Field(
        None, description="Language tag -> weight (default: the packaged table)."
    )
    countries: dict[str, float] | None = Field(
        None, description="ISO country code -> weight (default: the packaged table). cip is sent only with a token."
    )
    channels: ChannelShares | None = None
    actions: ActionShares | None = None
    events: str | list[EventSpec] | None = Field(
        None, description="Event catalogue: a YAML file (relative to this YAML file) or an inline list."
    )
    goals: list[GoalSpec] | None = Field(None, description="Goals that 'actions.goal' converts.")
    ecommerce: EcommerceSpec | None = None
    funnels: str | list[JourneySpec] | None = Field(
        None, description="Journeys: a YAML file or an inline list. A target's own list REPLACES the shared one."
    )
    extra_funnels: str | list[JourneySpec] | None = Field(
        None, description="Journeys ADDED to the shared ones for this target."
    )

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
            check_http_url(value)
        return value

    @field_validator("languages")
    @classmethod
    def _known_languages(cls, value: dict[str, float] | None) -> dict[str, float] | None:
        return _check_table(value, {language.tag for language in catalog.LANGUAGE_SHARES}, "language tag")

    @field_validator("countries")
    @classmethod
    def _known_countries(cls, value: dict[str, float] | None) -> dict[str, float] | None:
        return _check_table(value, set(catalog.COUNTRIES_BY_CODE), "country code")


def _check_table(value: dict[str, float] | None, known: set[str], what: str) -> dict[str, float] | None:
    if value is None:
        return None
    unknown = sorted(set(value) - known)
    if unknown:
        raise ValueError(f"unknown {what} {', '.join(unknown)}; known: {', '.join(sorted(known))}")
    if any(weight < 0 for weight in value.values()) or not any(weight > 0 for weight in value.values()):
        raise ValueError("weights must be >= 0 with at least one > 0")
    return value


def check_http_url(value: str) -> None:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(
            "must be an http:// or https:// URL with a host, e.g. https://analytics.example.com/matomo.php"
        )
    if parts.username or parts.password:
        raise ValueError("must not contain user:password; Matomo authenticates with token_auth")


# ---------------------------------------------------------------------------------------------
# Resolved


class Span(Resolved):
    """A resolved inclusive range: both ends known, ``min <= max``."""

    min: float
    max: float


class Page(Resolved):
    url: str
    title: str


class Actions(Resolved):
    search: float = 0.15
    outlink: float = 0.10
    download: float = 0.08
    event: float = 0.25
    goal: float = 0.0
    ping: float = 1.0


class Visitors(Resolved):
    returning: float = 0.3
    pool_size: int = 2000
    logged_in: float = 0.05


class Event(Resolved):
    category: str
    action: str
    name: str | None = None
    value: Span | None = None
    weight: float = 1.0


class Goal(Resolved):
    id: int
    revenue: Span | None = None
    weight: float = 1.0
    allow_multiple: bool = False


class Product(Resolved):
    sku: str
    name: str
    category: str
    price: float


class Ecommerce(Resolved):
    product_view: float = 0.0
    cart: float = 0.0
    order: float = 0.0
    currency: str = "USD"
    items: Span = Span(min=1, max=3)
    quantity: Span = Span(min=1, max=2)
    tax_rate: float = 0.2
    shipping: tuple[float, ...] = (0.0, 4.9, 9.9)
    discount_share: float = 0.1
    discount_rate: float = 0.1
    products: tuple[Product, ...] = tuple(
        Product(sku=p.sku, name=p.name, category=p.category, price=p.price) for p in catalog.PRODUCTS
    )


class Step(Resolved):
    type: str
    url: str | None = None
    title: str | None = None
    term: str | None = None
    category: str | None = None
    action: str | None = None
    name: str | None = None
    value: float | None = None
    id: int | None = None
    revenue: float | None = None
    delay: Span | None = None


class Journey(Resolved):
    name: str
    share: float
    steps: tuple[Step, ...]
    continue_browsing: bool = False


class Traffic(Resolved):
    """The merged traffic settings of one target, with every file loaded."""

    site_url: str = DEFAULT_SITE_URL
    pages: tuple[Page, ...]
    zipf_exponent: float = 1.0
    section_stickiness: float = 0.7
    pageviews: Span = Span(min=3, max=6)
    dwell_seconds: Span = Span(min=5, max=30)
    pause_between_visits: Span = Span(min=0, max=1)
    visitors: Visitors = Visitors()
    devices: dict[str, float] = Field(default_factory=lambda: dict(catalog.DEVICE_KIND_SHARES))
    bots: float = 0.0
    bots_param: bool = False
    languages: dict[str, float] = Field(
        default_factory=lambda: {language.tag: language.weight for language in catalog.LANGUAGE_SHARES}
    )
    countries: dict[str, float] = Field(
        default_factory=lambda: {country.code: country.weight for country in catalog.COUNTRIES}
    )
    channels: dict[str, float] = Field(
        # ai: 1 of 100 (AI referrals were ~1 % of visits in 2025), taken from website, where Matomo counted
        # them before 5.4; the other channels' bounds stay where they were (docs/traffic.md, Channels)
        default_factory=lambda: {
            "direct": 30.0,
            "search": 35.0,
            "social": 10.0,
            "website": 14.0,
            "ai": 1.0,
            "campaign": 10.0,
        }
    )
    actions: Actions = Actions()
    events: tuple[Event, ...] = tuple(Event(category=c, action=a, name=n) for c, a, n in catalog.EVENTS)
    goals: tuple[Goal, ...] = (Goal(id=1),)
    ecommerce: Ecommerce = Ecommerce()
    journeys: tuple[Journey, ...] = ()

    @property
    def multiple_goals(self) -> frozenset[int]:
        """Ids of the goals Matomo converts more than once per visit (``allow_multiple``)."""
        return frozenset(goal.id for goal in self.goals if goal.allow_multiple)


# ---------------------------------------------------------------------------------------------
# Resolution


_RANGES = ("pageviews", "dwell_seconds", "pause_between_visits")
_SCALARS = ("zipf_exponent", "section_stickiness", "bots", "bots_param")


def resolve_traffic(raw: dict[str, Any], doc: SourceDocument, path: ConfigPath) -> Traffic:
    """Complete merged traffic settings: defaults filled, files read and checked. Raises ConfigError."""
    problems: list[Problem] = []
    site_url = raw.get("site_url") or DEFAULT_SITE_URL
    values: dict[str, Any] = {key: raw[key] for key in _SCALARS if raw.get(key) is not None}
    for key in _RANGES:
        span = _span(raw.get(key), Traffic.model_fields[key].default, doc, path + (key,), problems)
        if key == "dwell_seconds" and span and span.max >= MAX_GAP_SECONDS:
            problems.append(
                doc.problem(
                    path + (key,),
                    f"max ({span.max:g}) must stay under {MAX_GAP_SECONDS} s: "
                    "Matomo ends a visit after 30 minutes without a hit",
                )
            )
        elif span:
            values[key] = span
    for key, model in (("visitors", Visitors), ("actions", Actions)):
        if raw.get(key):
            values[key] = model(**raw[key])
    if raw.get("devices"):
        values["devices"] = _shares(
            raw["devices"], dict(catalog.DEVICE_KIND_SHARES), doc, path + ("devices",), problems
        )
    if raw.get("channels"):
        values["channels"] = _shares(
            raw["channels"], Traffic.model_fields["channels"].default_factory(), doc, path + ("channels",), problems
        )
    for key in ("languages", "countries"):
        if raw.get(key):
            values[key] = dict(raw[key])
    if raw.get("goals"):
        values["goals"] = tuple(
            Goal(
                id=g["id"],
                revenue=_span(g.get("revenue"), None, doc, path + ("goals",), problems),
                weight=g.get("weight", 1.0),
                allow_multiple=g.get("allow_multiple", False),
            )
            for g in raw["goals"]
        )
    if raw.get("ecommerce"):
        values["ecommerce"] = _ecommerce(raw["ecommerce"], doc, path + ("ecommerce",), problems)
    pages: tuple[Page, ...] = ()
    try:
        pages = (
            load_pages(raw["urls"], site_url, doc, path + ("urls",))
            if raw.get("urls") is not None
            else default_pages(site_url)
        )
    except ConfigError as exc:
        problems.extend(exc.problems)
    if raw.get("events") is not None:
        values["events"] = tuple(_load_list(raw["events"], EventSpec, doc, path + ("events",), problems, _event))
    journeys: list[Journey] = []
    for key in ("funnels", "extra_funnels"):
        if raw.get(key) is not None:
            journeys.extend(
                _load_list(raw[key], JourneySpec, doc, path + (key,), problems, lambda spec: _journey(spec, site_url))
            )
    if sum(j.share for j in journeys) > 1 + 1e-9:
        problems.append(
            doc.problem(
                path + ("funnels",),
                f"journey shares add up to {sum(j.share for j in journeys):g}; "
                "they are shares of visits and must total at most 1",
            )
        )
    values["journeys"] = tuple(journeys)
    if problems:
        raise ConfigError(problems)
    return Traffic(site_url=site_url, pages=pages, **values)


def _span(
    given: dict[str, Any] | None, default: Span | None, doc: SourceDocument, path: ConfigPath, problems: list[Problem]
) -> Span | None:
    if not given and default is None:
        return None
    given = given or {}
    low = given.get("min", default.min if default else None)
    high = given.get("max", default.max if default else None)
    low = high if low is None else low
    high = low if high is None else high
    if low > high:
        problems.append(doc.problem(path, f"min ({low:g}) must not exceed max ({high:g}) after merging with defaults"))
        return None
    return Span(min=low, max=high)


def _shares(
    given: dict[str, float | None],
    default: dict[str, float],
    doc: SourceDocument,
    path: ConfigPath,
    problems: list[Problem],
) -> dict[str, float]:
    """Relative shares: keys given replace the default's; keys not given keep their default weight only if
    none is given."""
    shares = {key: float(value) for key, value in given.items() if value is not None}
    merged = shares if shares else default
    merged = {key: merged.get(key, 0.0) for key in default}
    if not any(weight > 0 for weight in merged.values()):
        problems.append(doc.problem(path, "at least one share must be > 0"))
    return merged


def _ecommerce(raw: dict[str, Any], doc: SourceDocument, path: ConfigPath, problems: list[Problem]) -> Ecommerce:
    default = Ecommerce()
    values: dict[str, Any] = {
        k: v
        for k, v in raw.items()
        if k in ("product_view", "cart", "order", "currency", "tax_rate", "discount_share", "discount_rate")
    }
    for key in ("items", "quantity"):
        span = _span(raw.get(key), getattr(default, key), doc, path + (key,), problems)
        if span:
            values[key] = span
    if raw.get("shipping") is not None:
        values["shipping"] = tuple(raw["shipping"])
    if raw.get("products"):
        values["products"] = tuple(Product(**product) for product in raw["products"])
    result = default.model_copy(update=values)
    if result.order > result.cart and "cart" in raw:
        problems.append(
            doc.problem(
                path + ("order",),
                f"order share ({result.order:g}) must not exceed cart share ({result.cart:g}): "
                "every order starts with a cart",
            )
        )
    if result.order > result.cart:
        result = result.model_copy(update={"cart": result.order})
    return result


_LIST_KEYS = ("funnels", "journeys", "events")


def _load_list(
    value: str | list[Any],
    model: type[Spec],
    doc: SourceDocument,
    path: ConfigPath,
    problems: list[Problem],
    build: Any,
) -> list[Any]:
    """An inline list (already validated) or a YAML file holding a list (or ``{funnels|journeys|events: [...]}``),
    validated with the file's own line numbers."""
    if isinstance(value, list):
        return [build(item if isinstance(item, Spec) else model.model_validate(item)) for item in value]
    file = doc.folder / value
    if not file.is_file():
        problems.append(
            doc.problem(path, f"file '{value}' not found (looked in {doc.folder}); paths are relative to the YAML file")
        )
        return []
    try:
        sub = load_yaml_file(file)
    except ConfigError as exc:
        problems.extend(exc.problems)
        return []
    data = sub.data
    if isinstance(data, dict) and len(data) == 1 and next(iter(data)) in _LIST_KEYS:
        key, data = next(iter(data.items()))
        sub.data = data  # keep the file's lines, seen from inside the list
        sub.lines = {path[1:]: line for path, line in sub.lines.items() if path[:1] == (key,)}
    if not isinstance(data, list):
        problems.append(
            sub.problem((), f"must be a YAML list of {model.__name__.removesuffix('Spec').lower()} entries")
        )
        return []
    items = []
    for index, item in enumerate(sub.data):
        try:
            items.append(build(model.model_validate(item)))
        except ValidationError as exc:
            problems.extend(problems_from_validation(exc, sub, model, at=(index,)))
    return items


def _event(spec: EventSpec) -> Event:
    return Event(
        category=spec.category, action=spec.action, name=spec.name, value=_loose_span(spec.value), weight=spec.weight
    )


def _loose_span(given: SecondsRange | None) -> Span | None:
    """A range inside a list entry (no defaults to merge with): a missing end equals the other."""
    if given is None:
        return None
    low = given.min if given.min is not None else given.max or 0
    return Span(min=low, max=given.max if given.max is not None else low)


def _journey(spec: JourneySpec, site_url: str) -> Journey:
    steps = []
    for step in spec.steps:
        data = step.model_dump(exclude={"delay"})
        if step.type == "pageview" and step.url:
            data["url"] = page_url(site_url, step.url)
            data["title"] = step.title or title_from_url(data["url"])
        if step.type == "download" and step.url:
            data["url"] = page_url(site_url, step.url)
        steps.append(Step(**data, delay=_loose_span(step.delay)))
    return Journey(name=spec.name, share=spec.share, steps=tuple(steps), continue_browsing=spec.continue_browsing)


def page_url(site_url: str, url: str) -> str:
    """An absolute URL stays; a path goes below ``site_url`` (its own path included)."""
    return url if url.startswith(("http://", "https://")) else site_url.rstrip("/") + "/" + url.lstrip("/")


def default_pages(site_url: str) -> tuple[Page, ...]:
    return tuple(Page(url=page_url(site_url, path), title=title) for path, title in DEFAULT_PAGES)


def load_pages(urls: Any, site_url: str, doc: SourceDocument, path: ConfigPath) -> tuple[Page, ...]:
    if isinstance(urls, str):
        file = doc.folder / urls
        try:
            lines = file.read_text(encoding="utf-8").splitlines()
        except FileNotFoundError:
            raise ConfigError(
                [
                    doc.problem(
                        path, f"file '{urls}' not found (looked in {doc.folder}); paths are relative to the YAML file"
                    )
                ]
            ) from None
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(
                [
                    doc.problem(
                        path,
                        f"cannot read '{urls}' ({exc.__class__.__name__}); "
                        "it must be UTF-8 text, one 'url<TAB>title' per line",
                    )
                ]
            ) from None
        entries = [line.split("\t", 1) for line in lines if line.strip() and not line.lstrip().startswith("#")]
        items = [
            PageSpec(url=parts[0].strip(), title=parts[1].strip() if len(parts) > 1 else None) for parts in entries
        ]
    else:
        items = [
            PageSpec(**item) if isinstance(item, dict) else item if isinstance(item, PageSpec) else PageSpec(url=item)
            for item in urls
        ]
    if not items:
        raise ConfigError([doc.problem(path, "the URL list is empty; give at least one page")])
    pages = []
    for item in items:
        url = page_url(site_url, item.url)
        pages.append(Page(url=url, title=item.title or title_from_url(url)))
    return tuple(pages)


def title_from_url(url: str) -> str:
    last = urlsplit(url).path.rstrip("/").rsplit("/", 1)[-1]
    return last.replace("-", " ").replace("_", " ").capitalize() or "Home"
