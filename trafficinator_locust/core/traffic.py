"""The traffic model of a target: what its visits look like, as written and as resolved.

``TrafficSpec`` is exactly what a user may write under ``traffic:`` (in ``defaults`` for every
target, or in a target to override key by key). ``resolve_traffic`` turns the merged settings into
``Traffic``: every default filled in, files (URL list, events, journeys) read and validated with
their own file's line numbers, so the planner never does I/O.
"""

from __future__ import annotations

import difflib
import ipaddress
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import quote_plus, urlencode, urlsplit

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, field_validator, model_validator

from trafficinator_locust.core import catalog, referrers
from trafficinator_locust.core.errors import ConfigError, FileRefused, Problem
from trafficinator_locust.core.files import read_small_text
from trafficinator_locust.core.spec_errors import problems_from_validation
from trafficinator_locust.core.yaml_source import (
    MAX_CONFIG_BYTES,
    ConfigPath,
    SourceDocument,
    load_yaml_text,
)

DEFAULT_SITE_URL = "https://www.example.com"
MAX_GAP_SECONDS = 1800
"""Matomo ends a visit after 30 minutes without a hit: dwell times and step delays stay below."""

# Limits (docs/limits.md lists them; a test checks it shows each value). Every number of the
# config is finite and bounded, so no input can make a visit plan, a cart or a sum blow up.
MAX_URLS_FILE_BYTES = 8 << 20
"""Bytes of a ``traffic.urls`` file (100,000 lines of 80 characters)."""
MAX_PAGES = 100_000
"""Pages of one URL list, inline or in a file."""
MAX_EVENTS = 10_000
"""Entries of one event catalogue (``traffic.events``)."""
MAX_GOALS = 1_000
"""Entries of ``traffic.goals``."""
MAX_PRODUCTS = 10_000
"""Entries of ``traffic.ecommerce.products``."""
MAX_SHIPPING_COSTS = 100
"""Entries of ``traffic.ecommerce.shipping``."""
MAX_JOURNEYS = 1_000
"""Journeys of one ``funnels`` or ``extra_funnels`` list."""
MAX_JOURNEY_STEPS = 500
"""Steps of one journey (each is at least one hit of one visit)."""
MAX_PAGEVIEWS = 500
"""``traffic.pageviews``: pageviews of one visit (a visit's hits are planned together)."""
MAX_CART_ITEMS = 100
"""``traffic.ecommerce.items``: distinct products in a cart."""
MAX_QUANTITY = 1_000
"""``traffic.ecommerce.quantity``: units of one product in a cart."""
MAX_POOL_SIZE = 1_000_000
"""``traffic.visitors.pool_size``: returning visitors kept per target (and in the budget state)."""
MAX_PAUSE_SECONDS = 3_600
"""``traffic.pause_between_visits``: a simulated user's pause between two visits."""
MAX_AMOUNT = 1_000_000
"""Prices, shipping costs, revenues, event values and the ends of every range: sums stay exact to the cent."""
MAX_WEIGHT = 1_000_000
"""Relative weights (targets, devices, channels, languages, countries, events, goals): totals stay finite."""
MAX_CHOICES = 10_000
"""Entries of each ``traffic.referrers.*`` and ``traffic.site_search.*`` table, ``traffic.outlinks``, ``downloads``."""
MAX_NAME_LENGTH = 255
"""Characters of a campaign name, a referring host or a site-search keyword: Matomo's ``referer_name`` is
``VARCHAR(255)``."""
MAX_GOAL_ID = 2**31 - 1
"""Matomo's ``goal.idgoal`` is a signed 32-bit ``INT``."""
MAX_URL_LENGTH = 4_096
"""Characters of a URL (tracker, site, page, link): Matomo stores action URLs in ``VARCHAR(4096)``."""
MAX_RESOLVED_ENTRIES = 200_000
"""Pages, events, journey steps and products built over all targets (a list shared by targets with the
same site counts once): lists in ``defaults`` are resolved for every target."""
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

    model_config = ConfigDict(extra="forbid", populate_by_name=True, allow_inf_nan=False)


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

    min: float | None = Field(None, ge=0, le=MAX_AMOUNT)
    max: float | None = Field(None, ge=0, le=MAX_AMOUNT)


class PageSpec(Spec):
    """One page of the tracked website: absolute URL or path below ``site_url``, and its title."""

    url: str = Field(min_length=1)
    title: str | None = None
    weight: float | None = Field(
        None,
        gt=0,
        le=MAX_WEIGHT,
        description="Relative popularity of this page; replaces the Zipf weight 1/k^s of its rank "
        "(what `trafficinator profile` writes: the page's measured share of pageviews).",
    )

    @field_validator("url")
    @classmethod
    def _page_url(cls, value: str) -> str:
        check_page_url(value)
        return value


def _page_entry(value: Any) -> Any:
    """A bare string in an inline URL list is the page's URL: checked like ``{url: ...}``."""
    return {"url": value} if isinstance(value, str) else value


PageEntry = Annotated[PageSpec, BeforeValidator(_page_entry, json_schema_input_type=str | PageSpec)]


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
    pool_size: int | None = Field(
        None,
        ge=1,
        le=MAX_POOL_SIZE,
        description=f"Returning visitors per target (default 2000, at most {MAX_POOL_SIZE:,}).",
    )
    logged_in: float | None = Field(
        None, ge=0, le=1, description="Share of visits with a user id (uid) (default 0.05)."
    )


class DeviceShares(Spec):
    """Relative shares of device kinds (default: the packaged market shares)."""

    desktop: float | None = Field(None, ge=0, le=MAX_WEIGHT)
    smartphone: float | None = Field(None, ge=0, le=MAX_WEIGHT)
    tablet: float | None = Field(None, ge=0, le=MAX_WEIGHT)


class ChannelShares(Spec):
    """Relative shares of acquisition channels; a visit keeps its channel from start to end."""

    direct: float | None = Field(None, ge=0, le=MAX_WEIGHT)
    search: float | None = Field(None, ge=0, le=MAX_WEIGHT)
    social: float | None = Field(None, ge=0, le=MAX_WEIGHT)
    website: float | None = Field(None, ge=0, le=MAX_WEIGHT)
    ai: float | None = Field(
        None,
        ge=0,
        le=MAX_WEIGHT,
        description="AI assistants (chatgpt.com, perplexity.ai, ...): 'AI Assistants' from Matomo 5.4, "
        "websites before. Default 1 of 100; 0 when other channels are listed without it.",
    )
    campaign: float | None = Field(None, ge=0, le=MAX_WEIGHT)


class EventSpec(Spec):
    """One kind of custom event; ``value`` is drawn from its range when given."""

    category: str = Field(min_length=1)
    action: str = Field(min_length=1)
    name: str | None = None
    value: SecondsRange | None = None
    weight: float = Field(1.0, gt=0, le=MAX_WEIGHT)


class GoalSpec(Spec):
    """A goal to convert (it must exist in Matomo); revenue drawn from its range when given."""

    id: int = Field(ge=1, le=MAX_GOAL_ID)
    revenue: SecondsRange | None = None
    weight: float = Field(1.0, gt=0, le=MAX_WEIGHT)
    allow_multiple: bool = Field(
        False,
        description="As the goal's Matomo setting 'allow multiple conversions per visit': "
        "what verify expects (Matomo converts a goal once per visit by default).",
    )


class ProductSpec(Spec):
    sku: str = Field(min_length=1)
    name: str = Field(min_length=1)
    category: str = ""
    price: float = Field(gt=0, le=MAX_AMOUNT)


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
    items: IntRange | None = Field(
        None, description=f"Distinct products in a cart (default 1 to 3, at most {MAX_CART_ITEMS})."
    )
    quantity: IntRange | None = Field(
        None, description=f"Quantity per product (default 1 to 2, at most {MAX_QUANTITY:,})."
    )
    tax_rate: float | None = Field(None, ge=0, le=1, description="Tax as a share of the subtotal (default 0.2).")
    shipping: list[float] | None = Field(
        None,
        max_length=MAX_SHIPPING_COSTS,
        description=f"Shipping costs to draw from (default [0, 4.9, 9.9]; each <= {MAX_AMOUNT:,}).",
    )
    discount_share: float | None = Field(None, ge=0, le=1, description="Share of orders with a discount (default 0.1).")
    discount_rate: float | None = Field(
        None, ge=0, lt=1, description="Discount as a share of the subtotal (default 0.1)."
    )
    products: list[ProductSpec] | None = Field(
        None,
        max_length=MAX_PRODUCTS,
        description=f"Products (default: the packaged catalogue; at most {MAX_PRODUCTS:,}).",
    )

    @field_validator("shipping")
    @classmethod
    def _shipping_costs(cls, value: list[float] | None) -> list[float] | None:
        if value is not None and (not value or any(not 0 <= cost <= MAX_AMOUNT for cost in value)):
            raise ValueError(f"must be a non-empty list of costs >= 0 and <= {MAX_AMOUNT:,}")
        return value

    @field_validator("items")
    @classmethod
    def _items(cls, value: IntRange | None) -> IntRange | None:
        return _at_most(value, MAX_CART_ITEMS, "distinct products in a cart")

    @field_validator("quantity")
    @classmethod
    def _quantity(cls, value: IntRange | None) -> IntRange | None:
        return _at_most(value, MAX_QUANTITY, "units of one product")


def _at_most(value: IntRange | None, limit: int, what: str) -> IntRange | None:
    """A count range whose ends stay at or below ``limit``."""
    if value is not None and any(end is not None and end > limit for end in (value.min, value.max)):
        raise ValueError(f"min and max must be <= {limit:,} ({what})")
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
    value: float | None = Field(None, ge=-MAX_AMOUNT, le=MAX_AMOUNT)
    id: int | None = Field(None, ge=1, le=MAX_GOAL_ID, description="goal: the goal id.")
    revenue: float | None = Field(None, ge=0, le=MAX_AMOUNT)
    delay: SecondsRange | None = Field(
        None, description=f"Wait before this step (default: the dwell time); under {MAX_GAP_SECONDS} s."
    )

    @field_validator("url")
    @classmethod
    def _step_url(cls, value: str | None) -> str | None:
        if value:
            check_page_url(value)
        return value

    @field_validator("delay")
    @classmethod
    def _delay_under_gap(cls, value: SecondsRange | None) -> SecondsRange | None:
        if value is not None and any(end is not None and end >= MAX_GAP_SECONDS for end in (value.min, value.max)):
            raise ValueError(
                f"min and max must stay under {MAX_GAP_SECONDS} s: Matomo ends a visit after 30 minutes without a hit"
            )
        return value

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
    steps: list[StepSpec] = Field(min_length=1, max_length=MAX_JOURNEY_STEPS)
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


def _named_weights(value: dict[str, float] | None, what: str) -> dict[str, float] | None:
    """Weights >= 0 and <= MAX_WEIGHT, at least one > 0, of names that are short single-line text."""
    if value is None:
        return None
    for name in value:
        if not name.strip() or len(name) > MAX_NAME_LENGTH or _TITLE_BAD_CHAR.search(name):
            raise ValueError(
                f"{what} {name[:60]!r} must be non-empty text of at most {MAX_NAME_LENGTH} characters "
                "without control characters"
            )
    if any(not 0 <= weight <= MAX_WEIGHT for weight in value.values()) or not any(w > 0 for w in value.values()):
        raise ValueError(f"weights must be >= 0 and <= {MAX_WEIGHT:,} with at least one > 0")
    return value


def _known_names(value: dict[str, float] | None, known: Sequence[str], what: str) -> dict[str, float] | None:
    """Names of ``known`` (matched ignoring case, written back as Matomo spells them); an unknown one is an
    error with the closest known names."""
    if value is None:
        return None
    by_lower = {name.lower(): name for name in known}
    result: dict[str, float] = {}
    for name, weight in value.items():
        canonical = by_lower.get(name.strip().lower())
        if canonical is None:
            close = difflib.get_close_matches(name.lower(), list(by_lower), n=5, cutoff=0.6)
            hint = (
                f"did you mean {', '.join(repr(by_lower[c]) for c in close)}?" if close else f"{len(known)} are known"
            )
            raise ValueError(f"unknown {what} {name[:60]!r}: not in Matomo's list as the planner can reach it; {hint}")
        result[canonical] = result.get(canonical, 0.0) + weight
    return result


class ReferrersSpec(Spec):
    """Which referrers each channel's visits come from (default: the packaged catalogue's, by market share)."""

    search_engines: dict[str, float] | None = Field(
        None,
        max_length=MAX_CHOICES,
        description="Search engine name -> weight, names as Matomo reports them (SearchEngines.yml: Google, Bing, "
        "DuckDuckGo, ...), for the 'search' channel.",
    )
    socials: dict[str, float] | None = Field(
        None,
        max_length=MAX_CHOICES,
        description="Social network name -> weight, names as Matomo reports them (Socials.yml: Facebook, LinkedIn, "
        "Instagram, ...), for the 'social' channel.",
    )
    websites: dict[str, float] | None = Field(
        None,
        max_length=MAX_CHOICES,
        description="Referring host -> weight (blog.example.org), for the 'website' channel.",
    )
    campaigns: dict[str, float] | None = Field(
        None,
        max_length=MAX_CHOICES,
        description="Campaign name -> weight (sent as mtm_campaign; Matomo reports it lower-cased), "
        "for the 'campaign' channel.",
    )

    @field_validator("search_engines")
    @classmethod
    def _engines(cls, value: dict[str, float] | None) -> dict[str, float] | None:
        return _known_names(_named_weights(value, "search engine"), referrers.search_engine_names(), "search engine")

    @field_validator("socials")
    @classmethod
    def _socials(cls, value: dict[str, float] | None) -> dict[str, float] | None:
        return _known_names(_named_weights(value, "social network"), referrers.social_network_names(), "social network")

    @field_validator("websites")
    @classmethod
    def _websites(cls, value: dict[str, float] | None) -> dict[str, float] | None:
        for host in _named_weights(value, "host") or ():
            if not _HOST_NAME.fullmatch(host) or "." not in host:
                raise ValueError(f"{host[:60]!r} must be a host name like blog.example.org (no scheme, no path)")
        return value

    @field_validator("campaigns")
    @classmethod
    def _campaigns(cls, value: dict[str, float] | None) -> dict[str, float] | None:
        return _named_weights(value, "campaign name")


class SiteSearchSpec(Spec):
    """What site searches look for (default: the packaged terms, one search in five without result)."""

    keywords: dict[str, float] | None = Field(
        None,
        max_length=MAX_CHOICES,
        description="Keyword -> weight of the searches that find something (default: the packaged terms, "
        "equal weights, unless no_result_keywords is given).",
    )
    no_result_keywords: dict[str, float] | None = Field(
        None,
        max_length=MAX_CHOICES,
        description="Keyword -> weight of the searches that never find anything (search_count=0: Matomo's "
        "'Search Keywords with No Results'). Default: none once site_search is set.",
    )

    @field_validator("keywords", "no_result_keywords")
    @classmethod
    def _keywords(cls, value: dict[str, float] | None) -> dict[str, float] | None:
        return _named_weights(value, "keyword")

    @model_validator(mode="after")
    def _apart(self) -> SiteSearchSpec:
        both = sorted(set(self.keywords or ()) & set(self.no_result_keywords or ()))
        if both:
            raise ValueError(f"{', '.join(repr(k) for k in both[:5])} in both keywords and no_result_keywords")
        return self


def _link_weights(value: dict[str, float] | None, absolute: bool) -> dict[str, float] | None:
    if value is None:
        return None
    for url in value:
        try:
            check_http_url(url) if absolute else check_page_url(url)
        except ValueError as exc:
            raise ValueError(f"{url[:60]!r} {exc}") from None
    if any(not 0 <= weight <= MAX_WEIGHT for weight in value.values()) or not any(w > 0 for w in value.values()):
        raise ValueError(f"weights must be >= 0 and <= {MAX_WEIGHT:,} with at least one > 0")
    return value


class TrafficSpec(Spec):
    """What visits look like. Set in ``defaults.traffic`` (shared) or a target's ``traffic`` (override)."""

    site_url: str | None = Field(None, description="Base URL of the tracked website; page paths are joined to it.")
    urls: str | Annotated[list[PageEntry], Field(max_length=MAX_PAGES)] | None = Field(
        None,
        description="Pages: a file with one 'url<TAB>title' per line (relative to this YAML file) or an inline list; "
        f"at most {MAX_PAGES:,} pages.",
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
    pageviews: IntRange | None = Field(
        None, description=f"Pageviews per visit (default 3 to 6, at most {MAX_PAGEVIEWS})."
    )
    dwell_seconds: SecondsRange | None = Field(
        None, description="Time on a page before the next hit (default 5 to 30 s)."
    )
    pause_between_visits: SecondsRange | None = Field(
        None,
        description="Pause of a simulated user between two visits "
        f"(default 0 to 1 s, at most {MAX_PAUSE_SECONDS:,} s).",
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
    browsers: dict[str, float] | None = Field(
        None,
        description="Browser family -> weight over all devices (Chrome, Safari, Firefox, Edge, Opera, Samsung "
        "Internet: the catalogue's); each device kind keeps its share (default: the catalogue's browser shares).",
    )
    channels: ChannelShares | None = None
    referrers: ReferrersSpec | None = None
    actions: ActionShares | None = None
    site_search: SiteSearchSpec | None = None
    outlinks: dict[str, float] | None = Field(
        None,
        max_length=MAX_CHOICES,
        description="External link URL -> weight for 'actions.outlink' (default: the packaged links, equal weights).",
    )
    downloads: dict[str, float] | None = Field(
        None,
        max_length=MAX_CHOICES,
        description="File URL or path below site_url -> weight for 'actions.download' (default: the packaged files).",
    )
    events: str | Annotated[list[EventSpec], Field(max_length=MAX_EVENTS)] | None = Field(
        None,
        description="Event catalogue: a YAML file (relative to this YAML file) or an inline list; "
        f"at most {MAX_EVENTS:,} events.",
    )
    goals: list[GoalSpec] | None = Field(
        None, max_length=MAX_GOALS, description=f"Goals that 'actions.goal' converts (at most {MAX_GOALS:,})."
    )
    ecommerce: EcommerceSpec | None = None
    funnels: str | Annotated[list[JourneySpec], Field(max_length=MAX_JOURNEYS)] | None = Field(
        None,
        description="Journeys: a YAML file or an inline list. A target's own list REPLACES the shared one. "
        f"At most {MAX_JOURNEYS:,} journeys of {MAX_JOURNEY_STEPS} steps.",
    )
    extra_funnels: str | Annotated[list[JourneySpec], Field(max_length=MAX_JOURNEYS)] | None = Field(
        None, description="Journeys ADDED to the shared ones for this target."
    )

    @field_validator("pageviews")
    @classmethod
    def _at_least_one_pageview(cls, value: IntRange | None) -> IntRange | None:
        if value is not None and value.min is not None and value.min < 1:
            raise ValueError("a visit needs at least one pageview: min must be >= 1")
        return _at_most(value, MAX_PAGEVIEWS, "pageviews of one visit")

    @field_validator("pause_between_visits")
    @classmethod
    def _pause(cls, value: SecondsRange | None) -> SecondsRange | None:
        if value is not None and any(end is not None and end > MAX_PAUSE_SECONDS for end in (value.min, value.max)):
            raise ValueError(f"min and max must be <= {MAX_PAUSE_SECONDS:,} s (pace visits with visits_per_day)")
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

    @field_validator("browsers")
    @classmethod
    def _known_browsers(cls, value: dict[str, float] | None) -> dict[str, float] | None:
        known = sorted({device.browser for device in catalog.DEVICES})
        if value is not None:
            unknown = [name for name in value if name.lower() not in {k.lower() for k in known}]
            if unknown:
                names = ", ".join(repr(n) for n in unknown)
                raise ValueError(f"unknown browser {names}; the device catalogue has {', '.join(known)}")
        return _known_names(_named_weights(value, "browser"), known, "browser")

    @field_validator("outlinks")
    @classmethod
    def _outlinks(cls, value: dict[str, float] | None) -> dict[str, float] | None:
        return _link_weights(value, absolute=True)

    @field_validator("downloads")
    @classmethod
    def _downloads(cls, value: dict[str, float] | None) -> dict[str, float] | None:
        return _link_weights(value, absolute=False)


def _check_table(value: dict[str, float] | None, known: set[str], what: str) -> dict[str, float] | None:
    if value is None:
        return None
    unknown = sorted(set(value) - known)
    if unknown:
        raise ValueError(f"unknown {what} {', '.join(unknown)}; known: {', '.join(sorted(known))}")
    if any(not 0 <= weight <= MAX_WEIGHT for weight in value.values()) or not any(
        weight > 0 for weight in value.values()
    ):
        raise ValueError(f"weights must be >= 0 and <= {MAX_WEIGHT:,} with at least one > 0")
    return value


# Characters a URL never holds as such: white space (percent-encode it) and control characters.
_URL_BAD_CHAR = re.compile(r"[\x00-\x20\x7f-\xa0\u1680\u2000-\u200f\u2028-\u202f\u205f\u3000\ufeff]")
_HOST_NAME = re.compile(r"[\w.-]+")


def check_http_url(value: str) -> None:
    """An absolute http(s) URL a client can send to: a host, a port 1..65535 if any, no white space or
    control character, no user:password, at most :data:`MAX_URL_LENGTH` characters. ``ValueError`` says what."""
    parts = _url_parts(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(
            "must be an http:// or https:// URL with a host, e.g. https://analytics.example.com/matomo.php"
        )
    if parts.username or parts.password:
        raise ValueError("must not contain user:password; Matomo authenticates with token_auth")


def check_page_url(value: str) -> None:
    """A page URL or path: the checks of :func:`check_http_url` for an absolute http(s) URL, and for any
    value no white space or control character and at most :data:`MAX_URL_LENGTH` characters."""
    if value[:8].lower().startswith(("http://", "https://")):
        parts = _url_parts(value)
        if not parts.hostname:
            raise ValueError("must have a host after http:// or https://, or be a path like /products")
    else:
        _check_url_text(value)


def _check_url_text(value: str) -> None:
    if len(value) > MAX_URL_LENGTH:
        raise ValueError(f"is {len(value):,} characters long, more than the {MAX_URL_LENGTH:,} allowed for a URL")
    bad = _URL_BAD_CHAR.search(value)
    if bad:
        char = bad.group()
        code = f"U+{ord(char):04X}"
        if char.isspace():
            raise ValueError(f"must not contain spaces or other white space ({code}); percent-encode a space as %20")
        raise ValueError(f"must not contain a control character ({code}); remove it")


def _url_parts(value: str) -> Any:
    """``urlsplit`` of a URL that passed :func:`_check_url_text`, with its host and port checked."""
    _check_url_text(value)
    try:
        parts = urlsplit(value)
    except ValueError as exc:  # "Invalid IPv6 URL"
        raise ValueError(f"is not a valid URL ({exc}); write IPv6 hosts as [2001:db8::1]") from None
    try:
        port = parts.port
    except ValueError:
        port = 0
    if port == 0 and parts.netloc.rpartition("@")[2].rpartition("]")[2].count(":"):
        raise ValueError("has a bad port: it must be a number from 1 to 65535, e.g. https://host:8443/")
    host = parts.hostname or ""
    if host:
        if ":" in host:
            try:
                ipaddress.IPv6Address(host.split("%", 1)[0])
            except ValueError:
                raise ValueError(f"has a bad IPv6 host [{host}]") from None
        elif not _HOST_NAME.fullmatch(host):
            raise ValueError(f"has a bad host {host[:60]!r}: letters, digits, '.', '-' and '_' only")
    return parts


# ---------------------------------------------------------------------------------------------
# Resolved


class Span(Resolved):
    """A resolved inclusive range: both ends known, ``min <= max``."""

    min: float
    max: float


class Page(Resolved):
    url: str
    title: str
    weight: float | None = None
    """Its own popularity; ``None``: the Zipf weight of its rank in the list."""


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


class Choice(Resolved):
    """One weighted choice of the planner: a referrer (``url``: a search engine's with ``{query}``, a social
    network's or website's page, a campaign's landing query), a keyword, or a link (``name`` = ``url``)."""

    name: str
    url: str
    weight: float
    no_result: bool = False
    """A site-search keyword that never finds anything (``search_count=0``)."""


class Referrers(Resolved):
    """The referrer choices of each channel; ``None``: the packaged catalogue's."""

    search_engines: tuple[Choice, ...] | None = None
    socials: tuple[Choice, ...] | None = None
    websites: tuple[Choice, ...] | None = None
    campaigns: tuple[Choice, ...] | None = None


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
    browsers: dict[str, float] | None = None
    """Browser family -> weight over all device kinds; ``None``: the catalogue's shares within each kind."""
    referrers: Referrers = Referrers()
    actions: Actions = Actions()
    site_search: tuple[Choice, ...] | None = None
    """Site-search keywords; ``None``: the packaged terms, with a random result count (0 included)."""
    outlinks: tuple[Choice, ...] | None = None
    downloads: tuple[Choice, ...] | None = None
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
    """Complete merged traffic settings: defaults filled, files read and checked. Raises ConfigError.

    A list or file shared by several targets (from ``defaults``) is read and built once per site
    (``doc.cache``); what is built over all targets is bounded by :data:`MAX_RESOLVED_ENTRIES`.
    """
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
            values[key] = model(**{name: value for name, value in raw[key].items() if value is not None})
    if raw.get("devices"):
        values["devices"] = _shares(
            raw["devices"], dict(catalog.DEVICE_KIND_SHARES), doc, path + ("devices",), problems
        )
    if raw.get("channels"):
        values["channels"] = _shares(
            raw["channels"], Traffic.model_fields["channels"].default_factory(), doc, path + ("channels",), problems
        )
    for key in ("languages", "countries", "browsers"):
        if raw.get(key):
            values[key] = dict(raw[key])
    _choices(raw, site_url, doc, path, problems, values)
    if raw.get("goals"):
        goals = raw["goals"]
        values["goals"] = _built(
            doc,
            "goals",
            goals,
            None,
            len(goals),
            path + ("goals",),
            problems,
            lambda: tuple(
                Goal(
                    id=g["id"],
                    revenue=_span(g.get("revenue"), None, doc, path + ("goals", index), problems),
                    weight=g.get("weight", 1.0),
                    allow_multiple=g.get("allow_multiple", False),
                )
                for index, g in enumerate(goals)
            ),
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
        values["events"] = _load_list(raw["events"], EventSpec, doc, path + ("events",), problems, _event, None)
    journeys: list[Journey] = []
    for key in ("funnels", "extra_funnels"):
        if raw.get(key) is not None:
            journeys.extend(
                _load_list(
                    raw[key], JourneySpec, doc, path + (key,), problems, lambda spec: _journey(spec, site_url), site_url
                )
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


def _built(
    doc: SourceDocument,
    kind: str,
    source: Any,
    site_url: str | None,
    count: int,
    path: ConfigPath,
    problems: list[Problem],
    build: Any,
) -> tuple[Any, ...]:
    """``build()`` once per (``source`` list, site): targets sharing a list from ``defaults`` share the result.

    ``count`` entries are charged to the document's total; past :data:`MAX_RESOLVED_ENTRIES` nothing
    more is built and one problem says why (an empty result, never a second problem).
    """
    key = (kind, id(source), site_url)
    cached = doc.cache.get(key)
    if cached is not None and cached[0] is source:
        return cached[1]
    doc.resolved_entries += count
    if doc.resolved_entries > MAX_RESOLVED_ENTRIES:
        if not doc.cache.get("over-budget"):
            doc.cache["over-budget"] = True
            problems.append(
                doc.problem(
                    path,
                    f"with this list the targets' pages, events, journey steps, goals and products add up to "
                    f"{doc.resolved_entries:,}, more than the {MAX_RESOLVED_ENTRIES:,} allowed over all targets; "
                    "a list in 'defaults' is built again for every target with another site_url: "
                    "give such targets the same site_url, or shorten the lists",
                )
            )
        return ()
    result = tuple(build())
    doc.cache[key] = (source, result)  # the source is kept alive, so its id cannot be reused meanwhile
    return result


def _choices(
    raw: dict[str, Any], site_url: str, doc: SourceDocument, path: ConfigPath, problems: list[Problem], values: dict
) -> None:
    """The referrer, site-search and link choices (each list built once per list and site, see :func:`_built`)."""
    lists: dict[str, Any] = {}
    for key, given in (raw.get("referrers") or {}).items():
        build = {
            "search_engines": _engine_choices,
            "socials": _social_choices,
            "websites": lambda weights, at=path + ("referrers", key): _website_choices(
                weights, site_url, doc, at, problems
            ),
            "campaigns": _campaign_choices,
        }.get(key)
        if given and build is not None:
            lists[key] = _built(
                doc, f"referrers.{key}", given, site_url, len(given), path + ("referrers", key), problems,
                lambda given=given, build=build: build(given),
            )  # fmt: skip
    if lists:
        values["referrers"] = Referrers(**lists)
    search = raw.get("site_search")
    if search:
        missing = search.get("no_result_keywords") or {}
        found = search.get("keywords") or ({} if missing else {term: 1.0 for term in catalog.SEARCH_TERMS})
        values["site_search"] = _built(
            doc, "site_search", search, None, len(found) + len(missing), path + ("site_search",), problems,
            lambda: [Choice(name=k, url=quote_plus(k), weight=w) for k, w in found.items()]
            + [Choice(name=k, url=quote_plus(k), weight=w, no_result=True) for k, w in missing.items()],
        )  # fmt: skip
    for key in ("outlinks", "downloads"):
        links = raw.get(key)
        if links:
            values[key] = _built(
                doc, key, links, site_url, len(links), path + (key,), problems,
                lambda links=links: [
                    Choice(name=url, url=page_url(site_url, url), weight=w) for url, w in links.items()
                ],
            )  # fmt: skip


def _engine_choices(weights: dict[str, float]) -> list[Choice]:
    """The catalogue's result page of an engine it has, else one built from Matomo's list."""
    by_name = {engine.name: engine.url for engine in catalog.SEARCH_ENGINES}
    return [
        Choice(name=name, url=by_name.get(name) or referrers.search_engine_referrer(name) or "", weight=weight)
        for name, weight in weights.items()
    ]


def _social_choices(weights: dict[str, float]) -> list[Choice]:
    """The catalogue's link pages of a network it has (its weight split by their shares), else one page
    built from Matomo's list. Catalogue entries are matched by what Matomo calls them (``classify``)."""
    choices = []
    for name, weight in weights.items():
        known = [
            social
            for social in catalog.SOCIAL_NETWORKS
            if referrers.classify(DEFAULT_SITE_URL, social.url).name == name
        ]
        total = sum(social.weight for social in known)
        if known and total > 0:
            choices += [Choice(name=name, url=s.url, weight=weight * s.weight / total) for s in known]
        else:
            choices.append(Choice(name=name, url=referrers.social_network_referrer(name) or "", weight=weight))
    return choices


def _website_choices(
    weights: dict[str, float], site_url: str, doc: SourceDocument, path: ConfigPath, problems: list[Problem]
) -> list[Choice]:
    """``https://<host>/``, checked to be a website to Matomo (not a search engine, social network, AI
    assistant or the site itself) with ``classify``."""
    choices = []
    for host, weight in weights.items():
        url = f"https://{host.lower()}/"
        found = referrers.classify(site_url, url)
        if found.type == "website" and found.name == host.lower():
            choices.append(Choice(name=host.lower(), url=url, weight=weight))
            continue
        what = "the site's own host (Matomo counts it as a direct entry)" if found.type == "direct" else (
            f"the {found.type} {found.name!r} to Matomo"
        )  # fmt: skip
        problems.append(doc.problem(path, f"{host!r} is not a referring website but {what}; leave it out"))
    return choices


def _campaign_choices(weights: dict[str, float]) -> list[Choice]:
    """``mtm_campaign`` (with the catalogue's source, medium and keyword for a campaign it has)."""
    known = {campaign.name.lower(): campaign for campaign in catalog.CAMPAIGNS}
    choices = []
    for name, weight in weights.items():
        campaign = known.get(name.lower())
        query = {"mtm_campaign": name}
        if campaign is not None:
            query |= {"mtm_source": campaign.source, "mtm_medium": campaign.medium}
            query |= {"mtm_kwd": campaign.keyword} if campaign.keyword else {}
        choices.append(Choice(name=name.lower(), url=urlencode(query), weight=weight))
    return choices


def _span(
    given: dict[str, Any] | None, default: Span | None, doc: SourceDocument, path: ConfigPath, problems: list[Problem]
) -> Span | None:
    """``given`` merged over ``default``; an end given as null counts as not given, a missing end equals the other."""
    given = given or {}
    low = given.get("min")
    high = given.get("max")
    if low is None and default is not None and "min" not in given:
        low = default.min
    if high is None and default is not None and "max" not in given:
        high = default.max
    low = high if low is None else low
    high = low if high is None else high
    if low is None:
        return default
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
        and v is not None
    }
    for key in ("items", "quantity"):
        span = _span(raw.get(key), getattr(default, key), doc, path + (key,), problems)
        if span:
            values[key] = span
    if raw.get("shipping") is not None:
        values["shipping"] = tuple(raw["shipping"])
    if raw.get("products"):
        products = raw["products"]
        values["products"] = _built(
            doc,
            "products",
            products,
            None,
            len(products),
            path + ("products",),
            problems,
            lambda: (Product(**ProductSpec.model_validate(product).model_dump()) for product in products),
        )
    result = default.model_copy(update=values)
    if result.order > result.cart and raw.get("cart") is not None:
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


def _read_included(
    doc: SourceDocument, name: str, path: ConfigPath, limit: int, problems: list[Problem], form: str
) -> tuple[Path, str] | None:
    """A file the config names at ``path``, read only when it is a small regular file; ``None`` after a problem."""
    file = doc.folder / name
    try:
        return file, read_small_text(file, limit, "file")
    except FileNotFoundError:
        message = f"file '{name}' not found (looked in {doc.folder}); paths are relative to the YAML file"
    except FileRefused as exc:  # a device, a FIFO, a folder, too big: never read
        message = str(exc)
    except (OSError, ValueError) as exc:  # unreadable, not UTF-8, a NUL in the name
        message = f"cannot read '{name}' ({exc.__class__.__name__}); it must be UTF-8 text, {form}"
    problems.append(doc.problem(path, message))
    return None


def _list_file(
    value: str, model: type[Spec], doc: SourceDocument, path: ConfigPath, problems: list[Problem]
) -> list[Spec] | None:
    """The validated entries of a YAML list file, read once per config (its problems reported once)."""
    key = ("list-file", model.__name__, value)
    if key in doc.cache:
        return doc.cache[key]
    doc.cache[key] = None
    read = _read_included(doc, value, path, MAX_CONFIG_BYTES, problems, "a YAML list")
    if read is None:
        return None
    file, text = read
    try:
        sub = load_yaml_text(text, str(file), folder=file.parent, env=doc.env)
    except ConfigError as exc:
        problems.extend(exc.problems)
        return None
    data = sub.data
    if isinstance(data, dict) and len(data) == 1 and next(iter(data)) in _LIST_KEYS:
        key_name, data = next(iter(data.items()))
        sub.data = data  # keep the file's lines, seen from inside the list
        sub.lines = {line_path[1:]: line for line_path, line in sub.lines.items() if line_path[:1] == (key_name,)}
    noun = model.__name__.removesuffix("Spec").lower()
    if not isinstance(data, list):
        problems.append(sub.problem((), f"must be a YAML list of {noun} entries"))
        return None
    limit = MAX_EVENTS if model is EventSpec else MAX_JOURNEYS
    if len(data) > limit:
        problems.append(sub.problem((), f"{len(data):,} {noun} entries, more than the {limit:,} allowed"))
        return None
    specs: list[Spec] = []
    for index, item in enumerate(data):
        try:
            specs.append(model.model_validate(item))
        except ValidationError as exc:
            problems.extend(problems_from_validation(exc, sub, model, at=(index,), data=item))
    doc.cache[key] = specs
    return specs


def _load_list(
    value: str | list[Any],
    model: type[Spec],
    doc: SourceDocument,
    path: ConfigPath,
    problems: list[Problem],
    build: Any,
    site_url: str | None,
) -> tuple[Any, ...]:
    """An inline list (already validated) or a YAML file holding a list (or ``{funnels|journeys|events: [...]}``),
    validated with the file's own line numbers; built once per list and site (see :func:`_built`)."""
    if isinstance(value, list):
        items: list[Any] | None = value
    else:
        items = _list_file(value, model, doc, path, problems)
        if not items:
            return ()
    count = sum(
        1 + len(item.get("steps", ()) if isinstance(item, dict) else getattr(item, "steps", ())) for item in items
    )
    return _built(
        doc,
        model.__name__,
        items,
        site_url,
        count,
        path,
        problems,
        lambda: (build(item if isinstance(item, Spec) else model.model_validate(item)) for item in items),
    )


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


_TITLE_BAD_CHAR = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def _url_file(
    doc: SourceDocument, name: str, path: ConfigPath, problems: list[Problem]
) -> list[tuple[str, str]] | None:
    """The ``(url, title)`` lines of a URL list file, each checked (problems name the file's own line); read once."""
    key = ("urls-file", name)
    if key in doc.cache:
        return doc.cache[key]
    doc.cache[key] = None  # a file with problems is reported once, for the first target that reads it
    before = len(problems)
    read = _read_included(doc, name, path, MAX_URLS_FILE_BYTES, problems, "one 'url<TAB>title' per line")
    if read is None:
        return None
    file, text = read
    source, label = str(file), doc.label_of(path)
    entries: list[tuple[str, str]] = []
    count = 0
    for number, line in enumerate(text.split("\n"), 1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        count += 1
        if count > MAX_PAGES:
            problems.append(Problem(source, number, label, f"more than {MAX_PAGES:,} pages; keep the list shorter"))
            return None
        url, _, title = line.partition("\t")
        url, title = url.strip(), title.strip()
        if not url:
            problems.append(Problem(source, number, label, "the line has a title but no URL or path before its tab"))
            continue
        try:
            check_page_url(url)
        except ValueError as exc:
            shown = repr(url) if len(url) <= 60 else repr(url[:57] + "...")
            problems.append(Problem(source, number, label, f"{shown} {exc}"))
            continue
        if _TITLE_BAD_CHAR.search(title):
            problems.append(Problem(source, number, label, "the title must not contain a control character"))
            continue
        entries.append((url, title))
    if len(problems) > before:
        return None
    doc.cache[key] = entries
    return entries


def load_pages(urls: Any, site_url: str, doc: SourceDocument, path: ConfigPath) -> tuple[Page, ...]:
    """The pages of ``traffic.urls`` (a file name or an inline list) below ``site_url``; ConfigError otherwise."""
    problems: list[Problem] = []
    if isinstance(urls, str):
        entries = _url_file(doc, urls, path, problems)
        if entries is None:
            raise ConfigError(problems)
        source: list[Any] = entries
    else:
        source = urls
    if not source:
        raise ConfigError([doc.problem(path, "the URL list is empty; give at least one page")])

    def build() -> Any:  # only when this list is not built yet for this site (see _built)
        for item in source:
            weight = None
            if isinstance(item, tuple):
                url, title = item
            elif isinstance(item, dict):
                url, title, weight = item["url"], item.get("title"), item.get("weight")
            elif isinstance(item, PageSpec):
                url, title, weight = item.url, item.title, item.weight
            else:
                url, title = item, None
            full = page_url(site_url, url)
            yield Page(url=full, title=title or title_from_url(full), weight=weight)

    pages = _built(doc, "pages", source, site_url, len(source), path, problems, build)
    if problems:
        raise ConfigError(problems)
    return pages


def title_from_url(url: str) -> str:
    last = urlsplit(url).path.rstrip("/").rsplit("/", 1)[-1]
    return last.replace("-", " ").replace("_", " ").capitalize() or "Home"
