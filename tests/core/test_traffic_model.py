"""The traffic model, statistically: every configured share holds over many planned visits.

Pure planner, fixed seed, >= 50,000 visits. With n = 50,000 the standard error of a share p is at
most 0.22 percentage points, so a 1-point tolerance is more than 4 standard errors: a real bias of
one point fails, noise does not.
"""

from __future__ import annotations

import json
from collections import Counter
from datetime import datetime, timezone
from urllib.parse import parse_qs, urlsplit

import pytest

from trafficinator_locust.core import catalog
from trafficinator_locust.core.config import load_config
from trafficinator_locust.core.protocol import bot_user_agent, check_hit
from trafficinator_locust.core.tracking import TrackingEncoder
from trafficinator_locust.core.visits import VisitPlanner

N = 50_000
SEED = 7
TOLERANCE = 0.01

TRAFFIC = """
targets:
  - name: Stats
    url: https://m.example/matomo.php
    site_id: 4
    token_auth: secret-token-for-stats
    timezone: Europe/Berlin
    traffic:
      site_url: https://stats.example
      urls:
        - {url: /, title: Home}
        - {url: /a/1, title: A1}
        - {url: /a/2, title: A2}
        - {url: /a/3, title: A3}
        - {url: /b/1, title: B1}
        - {url: /b/2, title: B2}
      pageviews: {min: 2, max: 6}
      dwell_seconds: {min: 1, max: 3}
      visitors: {returning: 0.4, pool_size: 500, logged_in: 0.2}
      devices: {desktop: 55, smartphone: 40, tablet: 5}
      languages: {de-DE: 60, en-US: 30, fr-FR: 10}
      countries: {DE: 50, US: 30, FR: 20}
      channels: {direct: 20, search: 40, social: 10, website: 20, campaign: 10}
      actions: {search: 0.2, outlink: 0.1, download: 0.05, event: 0.3, goal: 0.15, ping: 0.9}
      goals: [{id: 4, revenue: {min: 10, max: 20}}, {id: 5, weight: 3}]
      ecommerce: {product_view: 0.25, cart: 0.12, order: 0.04, currency: EUR}
      funnels:
        - name: Signup
          share: 0.08
          steps:
            - {type: pageview, url: /pricing, title: Pricing}
            - {type: event, category: CTA, action: Click, name: Signup}
            - {type: pageview, url: /signup, title: Signup, delay: {min: 5, max: 6}}
            - {type: goal, id: 5}
        - name: Docs
          share: 0.12
          continue_browsing: true
          steps:
            - {type: pageview, url: /docs, title: Docs}
            - {type: download, url: /files/manual.pdf}
        - name: Checkout
          share: 0.05
          continue_browsing: true
          steps:
            - {type: pageview, url: /basket, title: Basket}
            - {type: cart}
            - {type: pageview, url: /pay, title: Pay}
            - {type: order}
"""


@pytest.fixture(scope="module")
def target(tmp_path_factory):
    path = tmp_path_factory.mktemp("model") / "traffic.yaml"
    path.write_text(TRAFFIC, encoding="utf-8")
    return load_config(path, env={}).targets[0]


@pytest.fixture(scope="module")
def visits(target):
    planner = VisitPlanner(target, SEED)
    return [planner.plan(n) for n in range(N)]


def share(count: int) -> float:
    return count / N


def normalised(weights: dict[str, float]) -> dict[str, float]:
    total = sum(weights.values())
    return {key: value / total for key, value in weights.items()}


def test_channel_shares(visits, target):
    counts = Counter(v.channel for v in visits)
    for channel, expected in normalised(target.traffic.channels).items():
        assert abs(share(counts[channel]) - expected) < TOLERANCE, (channel, share(counts[channel]), expected)


def test_channel_shapes_the_landing_hit_only(visits):
    engines = tuple(urlsplit(e.url).netloc for e in catalog.SEARCH_ENGINES)
    for visit in visits[:5000]:
        first = visit.hits[0].params
        if visit.channel == "direct":
            assert first["urlref"] == "" and "mtm_campaign" not in first["url"]
        elif visit.channel == "search":
            assert urlsplit(first["urlref"]).netloc in engines
        elif visit.channel == "campaign":
            query = parse_qs(urlsplit(first["url"]).query)
            assert {"mtm_campaign", "mtm_source", "mtm_medium"} <= set(query)
        later = [h for h in visit.hits[1:] if h.kind == "pageview"]
        assert all("mtm_campaign" not in h.params["url"] for h in later), "the channel must not change mid-visit"


def test_device_kind_shares(visits, target):
    kinds = {d.user_agent: d.kind for d in catalog.DEVICES}
    counts = Counter(kinds[v.visitor.user_agent] for v in visits)
    for kind, expected in normalised(target.traffic.devices).items():
        assert abs(share(counts[kind]) - expected) < TOLERANCE, (kind, share(counts[kind]), expected)


def test_devices_follow_their_shares_within_a_kind(visits):
    """Within a kind, browsers come in the catalogue's shares (new visitors: the returning pool is a sample)."""
    kinds = {d.user_agent: d for d in catalog.DEVICES}
    desktop = [kinds[v.visitor.user_agent] for v in visits if not v.visitor.returning]
    desktop = [d for d in desktop if d.kind == "desktop"]
    drawn = Counter(d.browser for d in desktop)
    expected: Counter[str] = Counter()
    for device in catalog.DEVICES_BY_KIND["desktop"]:
        expected[device.browser] += device.share
    total = sum(expected.values())
    assert len(desktop) > 5_000
    for browser, weight in expected.items():
        assert abs(drawn[browser] / len(desktop) - weight / total) < 0.02, browser


def test_language_and_country_shares(visits, target):
    accept = {lang.accept_language: lang.tag for lang in catalog.LANGUAGE_SHARES}
    languages = Counter(accept[v.visitor.language] for v in visits)
    countries = Counter(v.visitor.country for v in visits)
    # returning visitors come from a pool of 500: their attributes are a sample of 500, so the
    # tables hold over new visitors exactly and over all visits within the pool's own noise
    new = [v for v in visits if not v.visitor.returning]
    new_languages = Counter(accept[v.visitor.language] for v in new)
    new_countries = Counter(v.visitor.country for v in new)
    for tag, expected in normalised(target.traffic.languages).items():
        assert abs(new_languages[tag] / len(new) - expected) < TOLERANCE
        assert abs(share(languages[tag]) - expected) < 0.03
    for code, expected in normalised(target.traffic.countries).items():
        assert abs(new_countries[code] / len(new) - expected) < TOLERANCE
        assert abs(share(countries[code]) - expected) < 0.03


def test_every_visitor_ip_lies_in_its_country(visits):
    import ipaddress

    for visit in visits[:3000]:
        ip = int(ipaddress.IPv4Address(visit.visitor.ip))
        ranges = catalog.COUNTRIES_BY_CODE[visit.visitor.country].ranges
        assert any(r.first <= ip <= r.last for r in ranges)


def test_returning_and_logged_in_shares(visits):
    returning = [v for v in visits if v.visitor.returning]
    assert abs(share(len(returning)) - 0.4) < TOLERANCE
    assert abs(share(sum(1 for v in visits if v.visitor.uid)) - 0.2) < TOLERANCE
    assert len({v.visitor.cid for v in returning}) <= 500
    by_cid: dict[str, set[tuple[str, str, str]]] = {}
    for visit in returning:
        by_cid.setdefault(visit.visitor.cid, set()).add(
            (visit.visitor.user_agent, visit.visitor.language, visit.visitor.country)
        )
    assert all(len(identities) == 1 for identities in by_cid.values()), (
        "a returning visitor keeps device, language and country"
    )
    new_cids = [v.visitor.cid for v in visits if not v.visitor.returning]
    assert len(set(new_cids)) == len(new_cids), "every new visitor has its own cid"


def test_returning_visits_start_a_new_visit_and_count_visits(visits, target):
    encoder = TrackingEncoder(target)
    now = datetime(2026, 11, 25, 12, tzinfo=timezone.utc)
    for visit in visits[:3000]:
        first = encoder.params(visit.hits[0], visit.visitor, now)
        if visit.visitor.returning:
            assert first["new_visit"] == "1" and int(first["_idvc"]) >= 2
        else:
            assert "new_visit" not in first and "_idvc" not in first
        assert all("new_visit" not in hit.params for hit in visit.hits[1:]), "one visit never restarts mid-way"


def test_action_shares_are_independent(visits, target):
    expected = {"search": 0.2, "outlink": 0.1, "download": 0.05, "event": 0.3, "goal": 0.15, "ping": 0.9}
    free = [v for v in visits if v.journey is None]  # journeys add their own steps on top
    counts = Counter(kind for v in free for kind in v.actions)
    for kind, value in expected.items():
        assert abs(counts[kind] / len(free) - value) < TOLERANCE, (kind, counts[kind] / len(free), value)
    both = sum(1 for v in free if {"search", "event"} <= v.actions) / len(free)
    assert abs(both - 0.2 * 0.3) < TOLERANCE, "drawing one action must not crowd out another"
    assert any({"search", "outlink", "download", "event", "goal"} <= v.actions for v in free)


def test_site_searches_carry_counts_including_zero_and_often_a_category(visits):
    searches = [h.params for v in visits for h in v.hits if h.kind == "search"]
    assert len(searches) > 5000
    counts = Counter(params["search_count"] for params in searches)
    assert counts["0"] > 0.1 * len(searches), "searches without results exist (Matomo's 'no result' report)"
    with_category = sum(1 for params in searches if params.get("search_cat")) / len(searches)
    assert abs(with_category - 0.5) < 0.02
    assert all(params["search"] and params["url"].startswith("https://") for params in searches)


def test_ecommerce_shares_and_nesting(visits):
    counts = Counter(kind for v in visits for kind in v.actions)
    assert abs(share(counts["product_view"]) - 0.25) < TOLERANCE
    assert abs(share(counts["cart"]) - 0.12) < TOLERANCE
    assert abs(share(counts["order"]) - 0.04) < TOLERANCE
    assert all("cart" in v.actions for v in visits if "order" in v.actions), "an order starts with a cart"


def test_each_visit_orders_at_most_once_and_abandons_a_cart_only_without_ordering(visits):
    """What Matomo books per visit: one order at most (a journey's order and the free draw make one), and an
    abandoned cart only when the visit's last ecommerce hit is a cart update (never a cart after an order)."""
    orders = abandoned = 0
    for visit in visits:
        marks = [h.kind for h in visit.hits if h.kind in ("cart", "order")]
        assert marks.count("order") <= 1, marks
        assert "order" not in marks or marks[-1] == "order", marks
        orders += "order" in marks
        abandoned += bool(marks) and marks[-1] == "cart"
    journey = 0.05  # the Checkout journey orders; the free draws come on top of it
    assert abs(share(orders) - (0.04 + journey * (1 - 0.04))) < TOLERANCE
    assert abs(share(abandoned) - (0.12 - 0.04) * (1 - journey)) < TOLERANCE, "abandoned carts = cart - order"


def test_orders_add_up_to_the_cent(visits, target):
    orders = [h.params for v in visits for h in v.hits if h.kind == "order"]
    assert len(orders) > 1000
    for params in orders:
        cents = {key: round(float(params[key]) * 100) for key in ("revenue", "ec_st", "ec_tx", "ec_sh", "ec_dt")}
        assert all(len(params[key].split(".")[1]) == 2 for key in cents), params
        assert cents["revenue"] == cents["ec_st"] + cents["ec_tx"] + cents["ec_sh"] - cents["ec_dt"]
        items = json.loads(params["ec_items"])
        assert round(sum(price * qty for _, _, _, price, qty in items) * 100) == cents["ec_st"]


def test_order_ids_unique_across_targets_and_runs(visits, target, tmp_path):
    first, second = TrackingEncoder(target), TrackingEncoder(target)
    now = datetime.now(timezone.utc)
    ids = [
        enc.params(h, v.visitor, now)["ec_id"]
        for enc in (first, second)
        for v in visits
        for h in v.hits
        if h.kind == "order"
    ]
    assert len(ids) == len(set(ids)), "two runs of the same seeded plan must not repeat an order id"
    other = target.model_copy(update={"name": "Other", "slug": "Other"})
    other_ids = {
        h.params["ec_id"] for n in range(N) for h in VisitPlanner(other, SEED).plan(n).hits if h.kind == "order"
    }
    assert not other_ids & {h.params["ec_id"] for v in visits for h in v.hits if h.kind == "order"}


def test_journey_shares_and_steps(visits):
    counts = Counter(v.journey for v in visits)
    assert abs(share(counts["Signup"]) - 0.08) < TOLERANCE
    assert abs(share(counts["Docs"]) - 0.12) < TOLERANCE
    for visit in visits:
        if visit.journey == "Signup":
            marks = [
                h.params["url"].split("?")[0] if h.kind == "pageview" else h.kind
                for h in visit.hits
                if h.kind == "pageview"
                or (h.kind == "event" and h.params.get("e_n") == "Signup" and h.params["e_c"] == "CTA")
                or (h.kind == "goal" and h.params["idgoal"] == "5")
            ]
            steps = ["https://stats.example/pricing", "event", "https://stats.example/signup", "goal"]
            remaining = iter(marks)
            assert all(step in remaining for step in steps), marks  # the steps, in order (add-ons may sit between)
            assert marks[0] == steps[0] and [m for m in marks if m.startswith("http")][:2] == [steps[0], steps[2]]
            pages = [h for h in visit.hits if h.kind == "pageview"]
            assert [p.params["url"].split("?")[0] for p in pages[:2]] == [
                "https://stats.example/pricing",
                "https://stats.example/signup",
            ]
            assert 5 <= pages[1].wait_before <= 6
            shop_pages = sum(1 for h in pages if h.params.get("_pks") or h.params["url"].endswith("/checkout"))
            assert len(pages) == 2 + shop_pages, "Signup does not continue browsing"
        if visit.journey == "Docs":
            assert visit.hits[0].params["url"].startswith("https://stats.example/docs")
            assert visit.hits[1].kind == "download"


def test_pageviews_per_visit(visits, target):
    free = [v for v in visits if v.journey is None]
    counts = [
        sum(1 for h in v.hits if h.kind == "pageview" and "_pks" not in h.params and "/checkout" not in h.params["url"])
        for v in free
    ]
    assert set(counts) == {2, 3, 4, 5, 6}
    assert abs(sum(counts) / len(counts) - 4.0) < 0.05


def test_pages_follow_zipf_and_sections(target, visits):
    landing = Counter(v.hits[0].params["url"].split("?")[0] for v in visits if v.journey is None)
    ranked = [landing[p.url] for p in target.traffic.pages]
    assert ranked == sorted(ranked, reverse=True), "earlier pages in the list are more popular"
    assert 1.8 < ranked[0] / ranked[1] < 2.2, "exponent 1: page 1 is about twice as popular as page 2"
    planner = VisitPlanner(
        target.model_copy(update={"traffic": target.traffic.model_copy(update={"section_stickiness": 1.0})}), SEED
    )
    for n in range(2000):
        pages = [
            h.params["url"].split("?")[0]
            for h in planner.plan(n).hits
            if h.kind == "pageview" and "/products/" not in h.params["url"] and "/checkout" not in h.params["url"]
        ]
        sections = [urlsplit(u).path.strip("/").split("/")[0] for u in pages]
        if sections and sections[0] in ("a", "b"):
            assert set(sections) == {sections[0]}, "with stickiness 1 a visit stays in its section"


def test_bots(target):
    bots = target.traffic.model_copy(update={"bots": 0.1, "bots_param": False})
    planner = VisitPlanner(target.model_copy(update={"traffic": bots}), SEED)
    planned = [planner.plan(n) for n in range(20_000)]
    flagged = [v for v in planned if v.visitor.bot]
    assert abs(len(flagged) / len(planned) - 0.1) < TOLERANCE
    assert all(bot_user_agent(v.visitor.user_agent) for v in flagged)
    assert not any(bot_user_agent(v.visitor.user_agent) for v in planned if not v.visitor.bot)
    assert all(not v.stored_by_matomo and "bots" not in v.hits[0].params for v in flagged)
    with_param = VisitPlanner(target.model_copy(update={"traffic": bots.model_copy(update={"bots_param": True})}), SEED)
    assert all(
        v.hits[0].params["bots"] == "1" and v.stored_by_matomo
        for v in (with_param.plan(n) for n in range(2000))
        if v.visitor.bot
    )


def test_cip_only_with_a_token(target, visits):
    now = datetime.now(timezone.utc)
    with_token = TrackingEncoder(target)
    without = TrackingEncoder(target.model_copy(update={"token_auth": None}))
    for visit in visits[:500]:
        for hit in visit.hits:
            assert with_token.params(hit, visit.visitor, now)["cip"] == visit.visitor.ip
            assert "cip" not in without.params(hit, visit.visitor, now)
            assert "token_auth" not in without.body(hit, visit.visitor, now)


def test_every_hit_is_valid_for_matomo(target, visits):
    now = datetime.now(timezone.utc)
    encoder = TrackingEncoder(target)
    goal_ids = {4, 5}
    for visit in visits[:5000]:
        for hit in visit.hits:
            params = {**encoder.params(hit, visit.visitor, now), "idsite": "4", "rec": "1"}
            assert (
                check_hit(params, site_exists=True, token_valid=True, token_given=True, goal_ids=goal_ids, now_utc=now)
                is None
            ), params


def test_same_seed_same_plans_other_seed_other_plans(target):
    assert [VisitPlanner(target, SEED).plan(n) for n in range(300)] == [
        VisitPlanner(target, SEED).plan(n) for n in range(300)
    ]
    assert [VisitPlanner(target, SEED).plan(n) for n in range(50)] != [
        VisitPlanner(target, SEED + 1).plan(n) for n in range(50)
    ]


def test_the_example_in_docs_traffic_md_loads(tmp_path):
    import re
    from pathlib import Path

    docs = (Path(__file__).resolve().parents[2] / "docs" / "traffic.md").read_text(encoding="utf-8")
    example = re.findall(r"```yaml\n(.*?)```", docs, flags=re.S)[-1]
    (tmp_path / "urls.txt").write_text((Path(__file__).resolve().parents[2] / "config" / "urls.txt").read_text())
    (tmp_path / "traffic.yaml").write_text(example)
    config = load_config(tmp_path / "traffic.yaml", env={"MATOMO_SHOP_TOKEN": "t"})
    blog, shop = config.targets
    assert [j.name for j in blog.traffic.journeys] == ["Newsletter signup"]
    assert [j.name for j in shop.traffic.journeys] == ["Newsletter signup", "Checkout"]
    assert (shop.traffic.actions.search, shop.traffic.actions.event, shop.traffic.actions.goal) == (0.2, 0.3, 0.05)
    assert shop.traffic.ecommerce.currency == "EUR" and blog.traffic.ecommerce.order == 0


def test_planned_devices_classified_by_matomo_device_detector(target, visits):
    """What Matomo will report: device types of the planned visitors within 3 points of the config."""
    from devicedetect import classify

    counts = Counter(classify(v.visitor.user_agent, v.visitor.uadata)[0] for v in visits[:20_000])
    assert not any(classify(v.visitor.user_agent, v.visitor.uadata)[3] for v in visits[:20_000]), (
        "no bot unless the bot share is set"
    )
    for kind, expected in normalised(target.traffic.devices).items():
        assert abs(counts[kind] / 20_000 - expected) < 0.03, (kind, counts[kind] / 20_000, expected)
