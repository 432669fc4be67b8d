"""The visit planner: who visits, on which device, from where, which pages and actions, and when.

Pure and seeded: ``VisitPlanner.plan(n)`` returns the same visit for the same target, seed and visit
number, whatever the concurrency, because each visit gets its own RNG derived from (seed, target,
number). It returns plain hits with the wait before each; the Locust user only sends and waits.
Parameters that depend on the moment or place of sending (visitor local time, ``cip`` with a token,
the plugin flags, which depend on the token too, a run-unique order id) are added by ``tracking``.

Every share is drawn independently per visit, so one action never crowds out another.
"""

from __future__ import annotations

import hashlib
import json
import random
from bisect import bisect_left
from collections.abc import Mapping, Sequence
from itertools import accumulate
from typing import Any, NamedTuple, TypeVar
from urllib.parse import quote_plus, urlencode, urlsplit

from trafficinator_locust.core import catalog
from trafficinator_locust.core.config import Target
from trafficinator_locust.core.traffic import Journey, Page, Span, Step, Traffic
from trafficinator_locust.core.visitors import VisitorTicket

T = TypeVar("T")
_NUMBER_MASK = (1 << 128) - 1
VISITOR_STREAM = 3
"""``rng_for(index, 3)``: visitor ``index`` of a ticket (streams 0 and 1: the planner, 2: backfill placement)."""
# random.Random.seed wraps the C seeding in Python; planning reseeds one Random per visit through the
# C method directly (same state as Random(key): only Random's unused gauss cache is left alone).
_seed_core = random.Random.__mro__[1].seed
_QUOTED_TERMS = tuple(quote_plus(term) for term in catalog.SEARCH_TERMS)
# Half the site searches are made in a category (Matomo's "Search Categories" report); "" = none.
_SEARCH_CATEGORIES = ("", "", "", "Products", "Help", "Blog")
_SHOP_STEPS = frozenset({"cart", "order"})


class Visitor(NamedTuple):
    """One simulated person. Its own ``cid`` keeps Matomo from merging it with another visitor."""

    cid: str
    user_agent: str
    language: str
    resolution: str
    country: str
    ip: str
    uadata: str | None = None
    uid: str | None = None
    returning: bool = False
    visit_count: int = 1
    bot: bool = False


class Hit(NamedTuple):
    """One tracking request: its kind (the stats name), parameters, and the wait before sending it."""

    kind: str
    params: dict[str, str]
    wait_before: float


class PlannedVisit(NamedTuple):
    """One visit: who, from which channel, the hits in order, and which actions it carries."""

    number: int
    visitor: Visitor
    channel: str
    hits: tuple[Hit, ...]
    journey: str | None = None
    actions: frozenset[str] = frozenset()

    @property
    def duration(self) -> float:
        return sum(hit.wait_before for hit in self.hits)

    @property
    def stored_by_matomo(self) -> bool:
        """Matomo silently drops bot visits unless they carry ``bots=1``."""
        return not self.visitor.bot or self.hits[0].params.get("bots") == "1"


class Weighted:
    """Draw from a fixed list by weight with one uniform number (bisect on cumulative weights)."""

    __slots__ = ("items", "cumulative", "total")

    def __init__(self, items: Sequence[T], weights: Sequence[float]):
        pairs = [(item, float(w)) for item, w in zip(items, weights) if w > 0]
        self.items = tuple(item for item, _ in pairs)
        self.cumulative = tuple(accumulate(w for _, w in pairs))
        self.total = self.cumulative[-1] if pairs else 0.0

    def __bool__(self) -> bool:
        return bool(self.items)

    def pick(self, rng: random.Random) -> Any:
        # random() < 1, so the point lies below the last cumulative weight: the index is always valid
        return self.items[bisect_left(self.cumulative, rng.random() * self.total)]


class _Page(NamedTuple):
    """A pageview being planned, with the add-on hits that happen on it (``extras`` grows)."""

    page: Page
    params: dict[str, str]
    extras: list[Hit]
    wait: float | None


# Hot loops build these tuples through tuple.__new__ (C) rather than the NamedTuples' Python-level __new__.
_new_tuple = tuple.__new__


class VisitPlanner:
    """Plans the visits of one target. Build once per target; ``plan`` is cheap and side-effect free."""

    def __init__(self, target: Target, seed: int | None = None, *, salt_name: str | None = None):
        """``salt_name`` replaces the target name in the RNG salt: targets sharing it plan identical visits (mirror)."""
        self.target = target
        traffic: Traffic = target.traffic
        self.traffic = traffic
        self._seed = seed if seed is not None else random.SystemRandom().getrandbits(63)
        salt = hashlib.blake2b(f"{self._seed}|{salt_name or target.name}".encode(), digest_size=16).digest()
        self._salt = int.from_bytes(salt, "big") << 136
        # Who ticket visitor n is: kept apart from the visits' salt so a later run (a new process,
        # maybe a new seed) can take over the people an earlier run's visitor book remembers.
        self.visitor_salt = self._salt
        self._site_url = traffic.site_url.rstrip("/")
        self._pageviews = (int(traffic.pageviews.min), int(traffic.pageviews.max))
        self._dwell = (traffic.dwell_seconds.min, traffic.dwell_seconds.max)
        self._pages = _page_table(traffic.pages, traffic.zipf_exponent)
        self._sections = _section_tables(traffic.pages, traffic.zipf_exponent)
        self._stickiness = traffic.section_stickiness
        # page URL -> the Weighted table of its section (None when the section has one page)
        self._next_in_section = {page.url: self._sections.get(_section(page.url)) for page in traffic.pages}
        self._dwell_low, self._dwell_span = (
            traffic.dwell_seconds.min,
            traffic.dwell_seconds.max - traffic.dwell_seconds.min,
        )
        self._pool: dict[int, Visitor] = {}
        self._product_pages = {
            p.sku: Page(url=f"{self._site_url}/products/{p.sku.lower()}", title=p.name)
            for p in traffic.ecommerce.products
        }
        self._checkout = Page(url=f"{self._site_url}/checkout", title="Checkout")
        self._product_view_params = {
            p.sku: {"_pks": p.sku, "_pkn": p.name, "_pkc": p.category, "_pkp": f"{p.price:.2f}"}
            for p in traffic.ecommerce.products
        }
        self._item_json = {p.sku: _item_prefix(p) for p in traffic.ecommerce.products}
        self._step_pages = {
            step.url: Page(url=step.url, title=step.title or "")
            for j in traffic.journeys
            for step in j.steps
            if step.type == "pageview" and step.url
        }
        kinds = Weighted(list(traffic.devices), list(traffic.devices.values()))
        self._device_kinds = kinds
        device_weights = browser_weights(traffic.devices, traffic.browsers) if traffic.browsers else None
        self._devices = {
            kind: Weighted(
                catalog.DEVICES_BY_KIND[kind],
                [
                    d.share * (device_weights[kind].get(d.browser, 0.0) if device_weights else 1.0)
                    for d in catalog.DEVICES_BY_KIND[kind]
                ],
            )
            for kind in kinds.items
        }
        accept = {language.tag: language.accept_language for language in catalog.LANGUAGE_SHARES}
        self._languages = Weighted([accept[tag] for tag in traffic.languages], list(traffic.languages.values()))
        self._countries = Weighted(list(traffic.countries), list(traffic.countries.values()))
        self._channels = Weighted(list(traffic.channels), list(traffic.channels.values()))
        chosen = traffic.referrers
        self._engines = _weighted(chosen.search_engines or catalog.SEARCH_ENGINES)
        self._socials = _weighted(chosen.socials or catalog.SOCIAL_NETWORKS)
        self._assistants = _weighted(catalog.AI_ASSISTANTS)
        self._campaigns = _weighted(catalog.CAMPAIGNS)
        self._websites = _weighted(chosen.websites) if chosen.websites else None
        self._chosen_campaigns = _weighted(chosen.campaigns) if chosen.campaigns else None
        self._keywords = _weighted(traffic.site_search) if traffic.site_search else None
        self._outlinks = _weighted(traffic.outlinks) if traffic.outlinks else None
        self._downloads = _weighted(traffic.downloads) if traffic.downloads else None
        self._events = Weighted(traffic.events, [e.weight for e in traffic.events])
        self._goals = Weighted(traffic.goals, [g.weight for g in traffic.goals])
        self._journey_bounds = tuple(accumulate(j.share for j in traffic.journeys))
        actions = traffic.actions
        self._addons = (
            ("search", actions.search),
            ("outlink", actions.outlink),
            ("download", actions.download),
            ("event", actions.event),
        )
        self._key = target.slug
        # Reused, reseeded per visit (plan never yields, so greenlets cannot interleave; one planner per thread).
        self._visit_rng, self._pool_rng = random.Random(), random.Random()
        self._campaign_queries = {
            c: urlencode(
                {
                    "mtm_campaign": c.name,
                    "mtm_source": c.source,
                    "mtm_medium": c.medium,
                    **({"mtm_kwd": c.keyword} if c.keyword else {}),
                }
            )
            for c in catalog.CAMPAIGNS
        }

    # -- randomness ---------------------------------------------------------------------------

    def rng_for(self, number: int, stream: int = 0) -> random.Random:
        """The RNG of visit ``number`` (stream 0) or of returning visitor ``number`` (stream 1).

        Mersenne Twister seeded with the whole key (salt, stream, number): distinct keys give
        independent sequences, and no hashing is needed per visit.
        """
        return random.Random(self._key_of(number, stream))

    def _key_of(self, number: int, stream: int) -> int:
        return self._salt | (stream << 128) | (number & _NUMBER_MASK)

    def _reseeded(self, rng: random.Random, number: int, stream: int) -> random.Random:
        """``rng`` in the state of ``rng_for(number, stream)``, without building a new Random."""
        _seed_core(rng, self._key_of(number, stream))
        return rng

    # -- visits -------------------------------------------------------------------------------

    def plan(self, number: int, ticket: VisitorTicket | None = None) -> PlannedVisit:
        """The visit numbered ``number``: the same number (and seed) always plans the same visit,
        so a backfill that resumes, or mirrored targets, send the same hits::

            planner = VisitPlanner(config.targets[0], seed=7)
            visit = planner.plan(1)
            visit.channel, [hit.kind for hit in visit.hits]   # ('social', ['pageview', ..., 'ping'])

        ``ticket`` (from the target's :class:`~.visitors.VisitorBook`) says who visits: visitor
        ``ticket.index`` is the same person on every visit, returning once Matomo stored an earlier
        visit of theirs. Without a ticket (mirror; a backfill resumed from a checkpoint older than its
        visitor books) a returning visit draws from a pool of ``visitors.pool_size`` people, whether
        or not Matomo has seen them.
        """
        rng = self._reseeded(self._visit_rng, number, 0)
        if rng.random() < self.traffic.bots:
            return self._bot_visit(number, rng)
        visitor = self._visitor(rng) if ticket is None else self._ticket_visitor(ticket)
        channel = self._channels.pick(rng)
        journey = self._journey(rng)
        wanted = _between(rng, *self._pageviews)
        pages = self._journey_pages(journey, rng, number) if journey else []
        scripted = len(pages)  # the journey's own pages keep their order; shop pages come after them
        if journey is None or journey.continue_browsing:
            pages += self._free_pages(
                rng, max(wanted - len(pages), 0 if journey else 1), pages[-1].page if pages else None
            )
        actions = set()
        for kind, share in self._addons:
            if rng.random() < share and pages:
                pages[int(rng.random() * len(pages))].extras.append(self._addon(kind, rng))
                actions.add(kind)
        if rng.random() < self.traffic.actions.goal and self._goals:
            pages[int(rng.random() * len(pages))].extras.append(self._goal_hit(self._goals.pick(rng), rng))
            actions.add("goal")
        actions |= self._shop(rng, pages, number, scripted)
        self._arrive(pages[0], channel, rng)
        hits = self._hits(pages, rng)
        if rng.random() < self.traffic.actions.ping:
            hits.append(
                Hit(
                    "ping",
                    {"ping": "1", "pv_id": pages[-1].params["pv_id"], "url": pages[-1].page.url},
                    self._dwell_time(rng),
                )
            )
            actions.add("ping")
        if visitor.returning:
            hits[0].params["new_visit"] = "1"  # a pooled visitor may still have a visit open
        return PlannedVisit(
            number, visitor, channel, tuple(hits), journey.name if journey else None, frozenset(actions)
        )

    def _bot_visit(self, number: int, rng: random.Random) -> PlannedVisit:
        bot = rng.choice(catalog.BOTS)
        visitor = Visitor(
            cid=f"{rng.getrandbits(64):016x}",
            user_agent=bot.user_agent,
            language="en-US,en;q=0.5",
            resolution="",
            country="US",
            ip="",
            bot=True,
        )
        pages = self._free_pages(rng, rng.randint(*self._pageviews), None)
        hits = self._hits(pages, rng)
        if self.traffic.bots_param:
            hits[0].params["bots"] = "1"
        return PlannedVisit(number, visitor, "direct", tuple(hits))

    # -- who ----------------------------------------------------------------------------------

    def _visitor(self, rng: random.Random) -> Visitor:
        returning = rng.random() < self.traffic.visitors.returning
        logged_in = rng.random() < self.traffic.visitors.logged_in
        if returning:
            visitor = self._pool_visitor(rng.randrange(self.traffic.visitors.pool_size))
            visit_count = 2 + int(rng.random() * 11)
        else:
            visitor, visit_count = self._identity(rng), 1
        if not logged_in and visit_count == 1:
            return visitor
        cid, user_agent, language, resolution, country, ip, uadata, uid, _, _, bot = visitor
        uid = f"user-{cid[:10]}" if logged_in else uid
        return Visitor(cid, user_agent, language, resolution, country, ip, uadata, uid, returning, visit_count, bot)

    def _ticket_visitor(self, ticket: VisitorTicket) -> Visitor:
        """Visitor ``ticket.index``: the same cid, device, language, country and login on every visit.

        Logging in belongs to the person, not the visit: Matomo takes a logged-in visitor's id from
        the ``uid`` (``core/Tracker/Request.php``), so a visitor who logged in only sometimes would
        be two visitors to Matomo and never return as one.
        """
        rng = self._pool_rng
        _seed_core(rng, self.visitor_salt | (VISITOR_STREAM << 128) | (ticket.index & _NUMBER_MASK))
        cid, user_agent, language, resolution, country, ip, uadata, _, _, _, bot = self._identity(rng)
        uid = f"user-{cid[:10]}" if rng.random() < self.traffic.visitors.logged_in else None
        visit_count = ticket.visits_before + 1
        return Visitor(
            cid, user_agent, language, resolution, country, ip, uadata, uid, ticket.returning, visit_count, bot
        )

    def _pool_visitor(self, index: int) -> Visitor:
        """Returning visitor ``index``: same cid, device, language and country on every visit."""
        visitor = self._pool.get(index)
        if visitor is None:
            visitor = self._pool[index] = self._identity(self._reseeded(self._pool_rng, index, 1), returning=True)
        return visitor

    def _identity(self, rng: random.Random, returning: bool = False) -> Visitor:
        device = self._devices[self._device_kinds.pick(rng)].pick(rng)
        country = self._countries.pick(rng)
        cid = f"{rng.getrandbits(64):016x}"
        language = self._languages.pick(rng)
        return Visitor(
            cid,
            device.user_agent,
            language,
            device.resolution,
            country,
            catalog.random_ip(country, rng),
            device.uadata,
            None,
            returning,
        )

    # -- where from ---------------------------------------------------------------------------

    def _arrive(self, landing: _Page, channel: str, rng: random.Random) -> None:
        """Set the landing page's referrer (or campaign) for the visit's channel."""
        params = landing.params
        if channel == "search":
            params["urlref"] = self._engines.pick(rng).url.replace(
                "{query}", _QUOTED_TERMS[int(rng.random() * len(_QUOTED_TERMS))]
            )
        elif channel == "social":
            params["urlref"] = self._socials.pick(rng).url
        elif channel == "ai":
            params["urlref"] = self._assistants.pick(rng).url
        elif channel == "website":
            params["urlref"] = self._websites.pick(rng).url if self._websites else rng.choice(catalog.WEBSITES)
        elif channel == "campaign":
            url = params["url"]
            if self._chosen_campaigns:
                query = self._chosen_campaigns.pick(rng).url
            else:
                query = self._campaign_queries[self._campaigns.pick(rng)]
            params["url"] = f"{url}{'&' if '?' in url else '?'}{query}"

    # -- what ---------------------------------------------------------------------------------

    def _journey(self, rng: random.Random) -> Journey | None:
        draw = rng.random()
        for journey, bound in zip(self.traffic.journeys, self._journey_bounds):
            if draw < bound:
                return journey
        return None

    def _journey_pages(self, journey: Journey, rng: random.Random, number: int) -> list[_Page]:
        pages: list[_Page] = []
        for step in journey.steps:
            if step.type == "pageview":
                pages.append(self._new_page(self._step_pages[step.url or ""], rng, wait=_draw(step.delay, rng)))
                continue
            if not pages:  # an action needs a page to happen on: the home page
                pages.append(self._new_page(self._pages.items[0], rng))
            pages[-1].extras.append(self._step_hit(step, rng, number))
        return pages

    def _free_pages(self, rng: random.Random, count: int, after: Page | None) -> list[_Page]:
        """``count`` pages: Zipf-popular, mostly staying in the current section. (Hot loop: inlined.)"""
        pages = []
        current = after
        random_, bits = rng.random, rng.getrandbits
        stickiness, in_section, everywhere = self._stickiness, self._next_in_section, self._pages
        for _ in range(count):
            table = (
                in_section.get(current.url) if current is not None and random_() < stickiness else None
            ) or everywhere
            current = table.items[bisect_left(table.cumulative, random_() * table.total)]  # Weighted.pick, inlined
            pages.append(
                _new_tuple(
                    _Page,
                    (current, {"url": current.url, "action_name": current.title, "pv_id": f"{bits(24):06x}"}, [], None),
                )
            )
        return pages

    def _new_page(self, page: Page, rng: random.Random, wait: float | None = None) -> _Page:
        pv_id = f"{rng.getrandbits(24):06x}"  # 6 alphanumerics, as Matomo wants
        return _new_tuple(_Page, (page, {"url": page.url, "action_name": page.title, "pv_id": pv_id}, [], wait))

    def _addon(self, kind: str, rng: random.Random) -> Hit:
        """An add-on action on a page (its ``pv_id`` and ``url`` are filled in by ``_hits``)."""
        if kind == "search":
            if self._keywords:
                keyword = self._keywords.pick(rng)
                term, quoted = keyword.name, keyword.url
                count = 0 if keyword.no_result else rng.choice((1, 3, 8, 24))
            else:
                index = int(rng.random() * len(_QUOTED_TERMS))
                term, quoted = catalog.SEARCH_TERMS[index], _QUOTED_TERMS[index]
                count = rng.choice((0, 1, 3, 8, 24))
            params = {"search": term, "search_count": str(count), "url": f"{self._site_url}/search?q={quoted}"}
            category = rng.choice(_SEARCH_CATEGORIES)
            if category:
                params["search_cat"] = category
            return Hit("search", params, self._action_wait(rng))
        if kind == "outlink":
            link = self._outlinks.pick(rng).url if self._outlinks else rng.choice(catalog.OUTLINKS)
            return Hit("outlink", {"link": link, "ca": "1"}, self._action_wait(rng))
        if kind == "download":
            file = self._downloads.pick(rng).url if self._downloads else self._site_url + rng.choice(catalog.DOWNLOADS)
            return Hit("download", {"download": file, "ca": "1"}, self._action_wait(rng))
        return self._event_hit(self._events.pick(rng), rng)

    def _event_hit(self, event: Any, rng: random.Random) -> Hit:
        params = {"e_c": event.category, "e_a": event.action, "ca": "1"}
        if event.name:
            params["e_n"] = event.name
        if event.value is not None:
            params["e_v"] = _number(rng.uniform(event.value.min, event.value.max))
        return Hit("event", params, self._action_wait(rng))

    def _goal_hit(self, goal: Any, rng: random.Random) -> Hit:
        # No ca=1: a goal conversion is not an action, so no action type claims it and Matomo's
        # Action::factory() refuses the whole request ("meant for a plugin which is no longer activated").
        params = {"idgoal": str(goal.id)}
        if goal.revenue is not None:
            params["revenue"] = f"{rng.uniform(goal.revenue.min, goal.revenue.max):.2f}"
        return Hit("goal", params, self._action_wait(rng))

    def _step_hit(self, step: Step, rng: random.Random, number: int) -> Hit:
        wait = _draw(step.delay, rng)
        if step.type == "search":
            hit = Hit(
                "search",
                {
                    "search": step.term or "",
                    "search_count": "1",
                    "url": f"{self._site_url}/search?q={quote_plus(step.term or '')}",
                },
                0,
            )
        elif step.type == "event":
            params = {"e_c": step.category or "", "e_a": step.action or "", "ca": "1"}
            if step.name:
                params["e_n"] = step.name
            if step.value is not None:
                params["e_v"] = _number(step.value)
            hit = Hit("event", params, 0)
        elif step.type == "outlink":
            hit = Hit("outlink", {"link": step.url or "", "ca": "1"}, 0)
        elif step.type == "download":
            hit = Hit("download", {"download": step.url or "", "ca": "1"}, 0)
        elif step.type == "goal":
            hit = Hit(
                "goal",
                {
                    "idgoal": str(step.id),  # no ca=1, as in _goal_hit
                    **({"revenue": f"{step.revenue:.2f}"} if step.revenue is not None else {}),
                },
                0,
            )
        elif step.type == "cart":
            hit = self._cart_hit(self._basket(rng), rng)
        else:
            hit = self._order_hit(self._basket(rng), rng, self._order_ref(number))
        return Hit(hit.kind, hit.params, wait if wait is not None else self._action_wait(rng))

    # -- shop ---------------------------------------------------------------------------------

    def _shop(self, rng: random.Random, pages: list[_Page], number: int, scripted: int = 0) -> set[str]:
        """Add the visit's free shop draws around its journey's own cart and order steps.

        A visit shops in Matomo's order: product views, then cart updates, then at most one order,
        and no cart update after the order (Matomo books a cart updated after the order as an
        abandoned cart, ``VisitGoalBuyer`` "ordered then abandoned"). The journey's steps (on its
        ``scripted`` pages, already in order: the config refuses a cart step after an order step)
        keep their places; the free draws fit around them: product pages before the journey's first
        cart or order, the free cart update before the journey's order, and no free order when the
        journey orders (its order is the visit's one order).
        """
        shop = self.traffic.ecommerce
        done: set[str] = set()
        steps = [(page, hit) for page in pages[:scripted] for hit in page.extras if hit.kind in _SHOP_STEPS]
        first_step = steps[0][0] if steps else None
        journey_order = next((page for page, hit in steps if hit.kind == "order"), None)
        if rng.random() < shop.product_view:
            for product in _sample(rng, shop.products, min(len(shop.products), _between(rng, 1, 2))):
                viewed = self._new_page(self._product_pages[product.sku], rng)
                viewed.params.update(self._product_view_params[product.sku])
                if first_step is None:  # after the journey's pages (a product page never replaces its landing)
                    at = _between(rng, max(1, scripted), len(pages)) if pages else 0
                else:  # before the page of the journey's first cart or order
                    before = _index(pages, first_step)
                    at = _between(rng, min(1, before), before)
                pages.insert(at, viewed)
            done.add("product_view")
        draw = rng.random()
        if draw < max(shop.cart, shop.order) and pages:
            basket = self._basket(rng)
            cart = self._cart_hit(basket, rng)
            viewed_last = max((i for i, page in enumerate(pages) if "_pks" in page.params), default=0)
            if journey_order is not None:  # on or after the last product page, before the journey's order
                ordered = _index(pages, journey_order)
                at = viewed_last + int(rng.random() * (ordered - viewed_last + 1))
                extras = pages[at].extras
                if at == ordered:
                    extras.insert(next(i for i, hit in enumerate(extras) if hit.kind == "order"), cart)
                else:
                    extras.append(cart)
            else:
                low = max(viewed_last, scripted - 1, 0)
                at = low + int(rng.random() * (len(pages) - low))
                pages[at].extras.append(cart)
            done.add("cart")
            if draw < shop.order:
                if journey_order is None:  # the checkout page follows the last cart update, free or scripted
                    last_cart = max([at] + [_index(pages, page) for page, hit in steps if hit.kind == "cart"])
                    checkout = self._new_page(self._checkout, rng)
                    checkout.extras.append(self._order_hit(basket, rng, self._order_ref(number)))
                    pages.insert(last_cart + 1, checkout)
                done.add("order")
        return done

    def _order_ref(self, number: int) -> str:
        """The order id of visit ``number`` (a visit orders at most once); ``tracking`` prefixes the run."""
        return f"{self._key}-{number:x}"

    def _basket(self, rng: random.Random) -> list[tuple[Any, int]]:
        shop = self.traffic.ecommerce
        count = min(len(shop.products), _between(rng, int(shop.items.min), int(shop.items.max)))
        low, high = int(shop.quantity.min), int(shop.quantity.max)
        return [(product, _between(rng, low, high)) for product in _sample(rng, shop.products, count)]

    def _cart_hit(self, basket: list[tuple[Any, int]], rng: random.Random) -> Hit:
        subtotal = _cents(sum(product.price * quantity for product, quantity in basket))
        return Hit(
            "cart",
            {"idgoal": "0", "ec_items": self._items(basket), "revenue": _money(subtotal)},
            self._action_wait(rng),
        )

    def _order_hit(self, basket: list[tuple[Any, int]], rng: random.Random, order_ref: str) -> Hit:
        """An order: money in whole cents, so revenue = subtotal + tax + shipping - discount exactly."""
        shop = self.traffic.ecommerce
        subtotal = _cents(sum(product.price * quantity for product, quantity in basket))
        discount = round(subtotal * shop.discount_rate) if rng.random() < shop.discount_share else 0
        tax = round((subtotal - discount) * shop.tax_rate)
        shipping = _cents(rng.choice(shop.shipping))
        revenue = subtotal + tax + shipping - discount
        params = {
            "idgoal": "0",
            "ec_id": order_ref,
            "ec_items": self._items(basket),
            "revenue": _money(revenue),
            "ec_st": _money(subtotal),
            "ec_tx": _money(tax),
            "ec_sh": _money(shipping),
            "ec_dt": _money(discount),
        }
        return Hit("order", params, self._action_wait(rng))

    def _items(self, basket: list[tuple[Any, int]]) -> str:
        """``ec_items`` JSON: ``[[sku, name, category, price, quantity], ...]`` from per-product fragments."""
        return "[" + ",".join(f"{self._item_json[product.sku]},{quantity}]" for product, quantity in basket) + "]"

    # -- when ---------------------------------------------------------------------------------

    def _hits(self, pages: list[_Page], rng: random.Random) -> list[Hit]:
        """Flatten pages into hits in time order; ``urlref`` chains, actions reuse their page's ``pv_id``."""
        hits: list[Hit] = []
        previous_url = ""
        low, span, random_ = self._dwell_low, self._dwell_span, rng.random
        for page in pages:
            params = page.params
            params.setdefault("urlref", previous_url)
            if not hits:
                wait = 0.0
            else:
                wait = page.wait if page.wait is not None else low + span * random_()
            hits.append(_new_tuple(Hit, ("pageview", params, wait)))
            url = page.page.url
            for extra in page.extras:
                extra.params.setdefault("url", url)
                extra.params["pv_id"] = params["pv_id"]
                hits.append(extra)
            previous_url = url
        return hits

    def _dwell_time(self, rng: random.Random) -> float:
        return self._dwell_low + self._dwell_span * rng.random()

    def _action_wait(self, rng: random.Random) -> float:
        return self._dwell[1] * rng.random() / 2


# ---------------------------------------------------------------------------------------------


def _between(rng: random.Random, low: int, high: int) -> int:
    """``randint`` for small ranges, without its call overhead."""
    return low + int(rng.random() * (high - low + 1))


def _weighted(choices: Sequence[Any]) -> Weighted:
    """A table of catalogue entries or config choices, each by its ``weight``."""
    return Weighted(choices, [choice.weight for choice in choices])


def browser_weights(devices: Mapping[str, float], browsers: Mapping[str, float]) -> dict[str, dict[str, float]]:
    """Per device kind, a factor per browser family for the catalogue's shares, so that the browsers'
    shares over all visits are ``browsers`` while each kind keeps its share of ``devices``.

    Iterative proportional fitting of the (kind x browser) table, started from the catalogue's own table
    (Safari mostly on iPhones, Samsung Internet only on phones): rows scaled to the kinds' shares, columns
    to the browsers', in turns, ending with the rows. A browser the catalogue lacks for a kind stays 0 there;
    a kind with none of the listed browsers keeps its catalogue browsers (factor 1).
    """
    kinds = [kind for kind, weight in devices.items() if weight > 0 and kind in catalog.DEVICES_BY_KIND]
    kind_total = sum(devices[kind] for kind in kinds) or 1.0
    seed = {
        kind: {
            name: sum(d.share for d in catalog.DEVICES_BY_KIND[kind] if d.browser == name)
            for name, weight in browsers.items()
            if weight > 0
        }
        for kind in kinds
    }
    fitted = [kind for kind in kinds if sum(seed[kind].values()) > 0]
    rows = {kind: devices[kind] / kind_total for kind in fitted}
    browser_total = sum(weight for weight in browsers.values() if weight > 0)
    columns = {name: sum(rows.values()) * weight / browser_total for name, weight in browsers.items() if weight > 0}
    table = {kind: {name: share * rows[kind] for name, share in seed[kind].items()} for kind in fitted}
    for _ in range(200):
        for name, target in columns.items():
            total = sum(table[kind][name] for kind in fitted)
            if total > 0:
                for kind in fitted:
                    table[kind][name] *= target / total
        for kind in fitted:
            total = sum(table[kind].values())
            for name in table[kind]:
                table[kind][name] *= rows[kind] / total
    factors: dict[str, dict[str, float]] = {}
    for kind in kinds:
        if kind not in table:
            factors[kind] = {device.browser: 1.0 for device in catalog.DEVICES_BY_KIND[kind]}
            continue
        row_total = sum(table[kind].values())
        # the table holds each browser's share of the kind; divide by the catalogue's, which the draw multiplies in
        factors[kind] = {
            name: table[kind][name] / row_total / seed[kind][name] for name in table[kind] if seed[kind][name] > 0
        }
    return factors


def _page_table(pages: Sequence[Page], exponent: float) -> Weighted:
    """Zipf-like popularity: the k-th listed page is chosen with weight 1/k^s, or its own ``weight`` when given."""
    return Weighted(
        pages,
        [page.weight if page.weight is not None else 1.0 / (rank**exponent) for rank, page in enumerate(pages, 1)],
    )


def _section(url: str) -> str:
    path = urlsplit(url).path.strip("/")
    return path.split("/", 1)[0] if path else ""


def _section_tables(pages: Sequence[Page], exponent: float) -> dict[str, Weighted]:
    grouped: dict[str, list[Page]] = {}
    for page in pages:
        grouped.setdefault(_section(page.url), []).append(page)
    return {name: _page_table(members, exponent) for name, members in grouped.items() if len(members) > 1}


def _draw(span: Span | None, rng: random.Random) -> float | None:
    return None if span is None else round(rng.uniform(span.min, span.max), 3)


def _cents(amount: float) -> int:
    return round(amount * 100)


def _money(cents: int) -> str:
    return f"{cents // 100}.{cents % 100:02d}"


def _number(value: float) -> str:
    return f"{value:.2f}".rstrip("0").rstrip(".")


def _item_prefix(product: Any) -> str:
    """``[sku,name,category,price`` of one ``ec_items`` entry, as ``json.dumps`` writes it (quantity follows)."""
    return json.dumps([product.sku, product.name, product.category, round(product.price, 2)], separators=(",", ":"))[
        :-1
    ]


def _index(pages: list[_Page], page: _Page) -> int:
    """The position of ``page`` itself in ``pages`` (by identity: two planned pages may be equal)."""
    return next(i for i, candidate in enumerate(pages) if candidate is page)


def _sample(rng: random.Random, population: Sequence[T], count: int) -> list[T]:
    """``count`` distinct items in random order (``rng.sample`` without its set-up cost, for small counts)."""
    pool = list(population)
    for i in range(count):
        j = i + int(rng.random() * (len(pool) - i))
        pool[i], pool[j] = pool[j], pool[i]
    return pool[:count]
