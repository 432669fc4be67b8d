"""The visit planner (pure, seeded) and the tracking encoder."""

import re
import statistics
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path
from urllib.parse import parse_qs, parse_qsl, urlsplit

import pytest

from trafficinator_locust.core.config import load_config
from trafficinator_locust.core.protocol import check_hit, classify
from trafficinator_locust.core.tracking import FORM_CONTENT_TYPE, TrackingEncoder
from trafficinator_locust.core.visitors import VisitorTicket
from trafficinator_locust.core.visits import VisitPlanner

CONFIG_DIR = Path(__file__).resolve().parents[2] / "config"
TOKEN = "tok-0a7c55e1-planner"
SEED = 20240611
ACTION_KINDS = ("search", "outlink", "download", "event")
PV_ID = re.compile(r"\A[0-9A-Za-z]{6}\Z")
CID = re.compile(r"\A[0-9a-f]{16}\Z")


def make_target(write_yaml, traffic="", name="Shop", extra=""):
    path = write_yaml(
        f"""\
        targets:
          - name: {name}
            url: https://m.example/matomo.php
            site_id: 3
            timezone: Asia/Tokyo
        {extra}
            traffic:
              site_url: https://shop.example
              pageviews: {{min: 2, max: 5}}
              dwell_seconds: {{min: 4, max: 12}}
              channels: {{direct: 1}}
              visitors: {{returning: 0}}
        {traffic}
        """,
        name=f"{name}.yaml",
    )
    return load_config(path, env={"TOK": TOKEN}).targets[0]


@pytest.fixture
def target(write_yaml):
    return make_target(write_yaml)


@pytest.fixture
def shares_target(write_yaml):
    return make_target(
        write_yaml, "      actions: {search: 0.3, outlink: 0.1, download: 0, event: 0.55}", name="Shares"
    )


def pageviews(visit):
    return [hit for hit in visit.hits if hit.kind == "pageview"]


# --- determinism --------------------------------------------------------------------------------


def test_same_seed_target_and_number_give_the_same_visit(target):
    first, again = VisitPlanner(target, SEED), VisitPlanner(target, SEED)
    for number in (0, 1, 7, 12345, 2**40 + 3):
        assert first.plan(number) == again.plan(number)
        assert first.plan(number) == first.plan(number)


def test_plan_does_not_depend_on_the_order_of_calls(target):
    planner = VisitPlanner(target, SEED)
    forward = [planner.plan(n) for n in range(50)]
    backward = [VisitPlanner(target, SEED).plan(n) for n in reversed(range(50))][::-1]
    assert forward == backward


def test_different_seeds_give_different_visits(target):
    a, b = VisitPlanner(target, SEED), VisitPlanner(target, SEED + 1)
    assert [a.plan(n).visitor.cid for n in range(20)] != [b.plan(n).visitor.cid for n in range(20)]


def test_different_targets_with_the_same_seed_give_different_visitors(write_yaml):
    one, two = make_target(write_yaml, name="One"), make_target(write_yaml, name="Two")
    cids_one = {VisitPlanner(one, SEED).plan(n).visitor.cid for n in range(200)}
    cids_two = {VisitPlanner(two, SEED).plan(n).visitor.cid for n in range(200)}
    assert not cids_one & cids_two


def test_different_numbers_give_different_cids(target):
    planner = VisitPlanner(target, SEED)
    cids = [planner.plan(n).visitor.cid for n in range(10000)]
    assert len(set(cids)) == len(cids)


def test_cid_is_16_lowercase_hex(target):
    planner = VisitPlanner(target, SEED)
    for n in range(2000):
        assert CID.match(planner.plan(n).visitor.cid)


def test_unseeded_planners_differ(target):
    assert VisitPlanner(target).plan(0).visitor.cid != VisitPlanner(target).plan(0).visitor.cid


# --- structure of a visit -----------------------------------------------------------------------


def test_pageviews_per_visit_cover_the_range_with_the_midpoint_mean(target):
    planner = VisitPlanner(target, SEED)
    counts = [len(pageviews(planner.plan(n))) for n in range(5000)]
    assert set(counts) == {2, 3, 4, 5}
    # uniform on 2..5: mean 3.5, sd sqrt((4**2 - 1) / 12) = 1.118; over 5000 visits the standard
    # error is 0.0158, so 0.08 is five standard errors (a fair planner fails with p < 1e-6)
    assert statistics.mean(counts) == pytest.approx(3.5, abs=0.08)
    # and no value is starved: each of the 4 values expects 1250 (sd ~31)
    assert min(Counter(counts).values()) > 1100


def test_single_pageview_range(write_yaml):
    target = make_target(
        write_yaml, "      actions: {search: 1, outlink: 1, download: 1, event: 1}", name="One", extra=""
    )
    target = target.model_copy(
        update={
            "traffic": target.traffic.model_copy(update={"pageviews": type(target.traffic.pageviews)(min=1, max=1)})
        }
    )
    planner = VisitPlanner(target, SEED)
    for n in range(200):
        visit = planner.plan(n)
        assert len(pageviews(visit)) == 1
        assert {hit.kind for hit in visit.hits} == {"pageview", "ping", *ACTION_KINDS}


def test_first_hit_starts_a_visit_and_pages_chain_their_referrers(target):
    planner = VisitPlanner(target, SEED)
    page_urls = {p.url: p.title for p in target.traffic.pages}
    for n in range(3000):
        visit = planner.plan(n)
        first = visit.hits[0]
        assert first.kind == "pageview"
        assert first.params["urlref"] == ""
        assert first.wait_before == 0
        # ADR 002 (revised): a unique cid separates visitors; new_visit=1 is not sent because it
        # would hide a visitor collapse. No hit of a visit may carry it.
        assert all("new_visit" not in hit.params for hit in visit.hits)
        pages = pageviews(visit)
        for previous, page in zip(pages, pages[1:]):
            assert page.params["urlref"] == previous.params["url"]
        for page in pages:
            assert page_urls[page.params["url"]] == page.params["action_name"]
            assert PV_ID.match(page.params["pv_id"])


def test_add_on_actions_reuse_the_pv_id_of_an_earlier_pageview(shares_target):
    planner = VisitPlanner(shares_target, SEED)
    seen_actions = Counter()
    for n in range(3000):
        earlier: dict[str, str] = {}  # pv_id -> page url of pageviews sent so far
        for hit in planner.plan(n).hits:
            if hit.kind == "pageview":
                earlier[hit.params["pv_id"]] = hit.params["url"]
            elif hit.kind in ACTION_KINDS:
                seen_actions[hit.kind] += 1
                assert hit.params["pv_id"] in earlier
                if hit.kind != "search":
                    assert hit.params["url"] == earlier[hit.params["pv_id"]]
                    assert hit.params["ca"] == "1"
    assert set(seen_actions) == {"search", "outlink", "event"}


def test_pv_ids_are_unique_within_a_visit(target):
    planner = VisitPlanner(target, SEED)
    for n in range(2000):
        ids = [hit.params["pv_id"] for hit in pageviews(planner.plan(n))]
        assert len(set(ids)) == len(ids)


def test_visit_ends_with_a_ping_on_the_last_page(shares_target):
    planner = VisitPlanner(shares_target, SEED)
    for n in range(2000):
        visit = planner.plan(n)
        last = visit.hits[-1]
        assert last.kind == "ping"
        assert last.params["ping"] == "1"
        final_page = pageviews(visit)[-1]
        assert last.params["pv_id"] == final_page.params["pv_id"]
        assert [hit.kind for hit in visit.hits].count("ping") == 1


def test_waits_stay_within_the_dwell_range(shares_target):
    planner = VisitPlanner(shares_target, SEED)
    low, high = shares_target.traffic.dwell_seconds.min, shares_target.traffic.dwell_seconds.max
    for n in range(3000):
        visit = planner.plan(n)
        for index, hit in enumerate(visit.hits):
            if index == 0:
                assert hit.wait_before == 0
            elif hit.kind in ("pageview", "ping"):
                assert low <= hit.wait_before <= high
            else:  # an action happens while the reader is on the page
                assert 0 <= hit.wait_before <= high
        assert visit.duration == pytest.approx(sum(hit.wait_before for hit in visit.hits))
        # consecutive hits never leave Matomo's 30-minute gap
        assert max(hit.wait_before for hit in visit.hits) < 1800


def test_action_shares_match_the_config(shares_target):
    planner = VisitPlanner(shares_target, SEED)
    visits = 20000
    with_kind = Counter()
    for n in range(visits):
        for kind in {hit.kind for hit in planner.plan(n).hits}:
            with_kind[kind] += 1
    expected = {"search": 0.3, "outlink": 0.1, "download": 0.0, "event": 0.55}
    for kind, share in expected.items():
        # binomial standard error <= 0.0036 for 20,000 visits: 1 point is ~3 standard errors or more
        assert abs(with_kind[kind] / visits - share) < 0.01, (kind, with_kind[kind] / visits)
    assert with_kind["download"] == 0
    assert with_kind["pageview"] == with_kind["ping"] == visits


def test_pages_follow_the_configured_list(write_yaml):
    target = make_target(write_yaml, "      urls: [/a, /b, {url: /c, title: Cee}]", name="Pages")
    planner = VisitPlanner(target, SEED)
    seen = Counter(hit.params["url"] for n in range(2000) for hit in pageviews(planner.plan(n)))
    assert set(seen) == {"https://shop.example/a", "https://shop.example/b", "https://shop.example/c"}


def test_visitor_fields(target):
    planner = VisitPlanner(target, SEED)
    visitors = [planner.plan(n).visitor for n in range(2000)]
    assert all(re.fullmatch(r"\d{3,4}x\d{3,4}", v.resolution) for v in visitors)
    assert all(v.user_agent.startswith("Mozilla/5.0") for v in visitors)
    assert all(v.language for v in visitors)
    assert len({v.user_agent for v in visitors}) > 1 and len({v.language for v in visitors}) > 1


def test_search_page_url_is_a_valid_url(shares_target):
    planner = VisitPlanner(shares_target, SEED)
    searches = [hit for n in range(2000) for hit in planner.plan(n).hits if hit.kind == "search"]
    assert searches
    for hit in searches:
        assert " " not in hit.params["url"]
        assert parse_qs(urlsplit(hit.params["url"]).query)["q"] == [hit.params["search"]]


# --- tracking encoder ---------------------------------------------------------------------------


def decode(body):
    pairs = parse_qsl(body, keep_blank_values=True, strict_parsing=True)
    keys = [key for key, _ in pairs]
    assert len(keys) == len(set(keys)), keys
    return dict(pairs)


NOON_UTC = datetime(2024, 1, 15, 12, 0, 30, tzinfo=timezone.utc)


def test_body_is_exactly_urlencode_of_the_params_token_last(target, write_yaml):
    from urllib.parse import urlencode

    encoder = TrackingEncoder(target)
    planner = VisitPlanner(target, SEED)
    token = target.token_auth.get_secret_value() if target.token_auth else None
    for number in range(300):
        visit = planner.plan(number)
        for hit in visit.hits:
            expected = urlencode(
                {
                    "idsite": str(target.site_id),
                    "rec": "1",
                    "apiv": "1",
                    "send_image": "0",
                    **encoder.params(hit, visit.visitor, NOON_UTC),
                }
            )
            assert encoder.body(hit, visit.visitor, NOON_UTC) == expected + (
                f"&{urlencode({'token_auth': token})}" if token else ""
            )


def test_body_is_form_encoded_with_fixed_visitor_and_time_params(target):
    planner = VisitPlanner(target, SEED)
    visit = planner.plan(5)
    body = TrackingEncoder(target).body(visit.hits[0], visit.visitor, NOON_UTC)
    assert " " not in body and "\n" not in body
    params = decode(body)
    assert params["idsite"] == "3"
    assert params["rec"] == "1"
    assert params["send_image"] == "0"
    assert params["cid"] == visit.visitor.cid
    assert params["ua"] == visit.visitor.user_agent
    assert params["lang"] == visit.visitor.language
    assert params["res"] == visit.visitor.resolution
    assert (params["h"], params["m"], params["s"]) == ("21", "0", "30")  # Asia/Tokyo is UTC+9
    for key, value in visit.hits[0].params.items():
        assert params[key] == value
    assert "token_auth" not in params
    assert FORM_CONTENT_TYPE == "application/x-www-form-urlencoded"


@pytest.mark.parametrize(
    ("zone", "moment", "hms"),
    [
        ("UTC", NOON_UTC, ("12", "0", "30")),
        ("Asia/Tokyo", datetime(2024, 1, 15, 20, 5, 0, tzinfo=timezone.utc), ("5", "5", "0")),  # next day 05:05
        ("America/New_York", NOON_UTC, ("7", "0", "30")),  # EST, UTC-5
        ("America/New_York", datetime(2024, 7, 15, 12, 0, 30, tzinfo=timezone.utc), ("8", "0", "30")),  # EDT, UTC-4
        ("Asia/Kolkata", NOON_UTC, ("17", "30", "30")),  # UTC+5:30
    ],
)
def test_visitor_local_time_is_in_the_target_time_zone(target, zone, moment, hms):
    zoned = target.model_copy(update={"timezone": zone})
    visit = VisitPlanner(zoned, SEED).plan(0)
    params = decode(TrackingEncoder(zoned).body(visit.hits[0], visit.visitor, moment))
    assert (params["h"], params["m"], params["s"]) == hms


def test_local_time_uses_the_sending_moment_in_any_zone(target):
    visit = VisitPlanner(target, SEED).plan(0)
    from zoneinfo import ZoneInfo

    sent = datetime(2024, 3, 1, 9, 15, 45, tzinfo=ZoneInfo("Europe/Berlin"))  # 08:15:45 UTC
    params = decode(TrackingEncoder(target).body(visit.hits[0], visit.visitor, sent))
    assert (params["h"], params["m"], params["s"]) == ("17", "15", "45")


def test_token_only_when_the_target_has_one(write_yaml):
    with_token = make_target(write_yaml, name="Tok", extra="    token_auth: ${TOK}")
    without = make_target(write_yaml, name="NoTok")
    assert with_token.has_token and not without.has_token
    visit = VisitPlanner(with_token, SEED).plan(0)
    for hit in visit.hits:
        assert decode(TrackingEncoder(with_token).body(hit, visit.visitor, NOON_UTC))["token_auth"] == TOKEN
        body = TrackingEncoder(without).body(hit, visit.visitor, NOON_UTC)
        assert "token_auth" not in decode(body)
        assert TOKEN not in body


def test_token_with_special_characters_is_encoded(write_yaml):
    target = make_target(write_yaml, name="Odd", extra="    token_auth: ${TOK}")
    odd = target.model_copy(update={"token_auth": type(target.token_auth)("a&b=c+d %e")})
    visit = VisitPlanner(odd, SEED).plan(0)
    params = decode(TrackingEncoder(odd).body(visit.hits[0], visit.visitor, NOON_UTC))
    assert params["token_auth"] == "a&b=c+d %e"
    assert params["idsite"] == "3"


SHOP_TRAFFIC = """\
    targets:
      - name: Mall
        url: https://m.example/matomo.php
        site_id: 3
        {token}
        traffic:
          site_url: https://shop.example
          pageviews: {{min: 1, max: 4}}
          dwell_seconds: {{min: 4, max: 12}}
          visitors: {{returning: 0.3, pool_size: 300, logged_in: 0.3}}
          actions: {{search: 0.4, outlink: 0.3, download: 0.3, event: 0.5, goal: 0.4}}
          goals: [{{id: 1}}, {{id: 2, revenue: {{min: 5, max: 9}}}}]
          ecommerce: {{product_view: 0.6, cart: 0.5, order: 0.3}}
          funnels:
            - name: Checkout
              share: 0.2
              continue_browsing: true
              steps:
                - {{type: pageview, url: /basket}}
                - {{type: cart}}
                - {{type: pageview, url: /pay}}
                - {{type: order}}
            - name: Buy now
              share: 0.1
              steps:
                - {{type: order}}
                - {{type: goal, id: 2, revenue: 3}}
            - name: Browse
              share: 0.1
              continue_browsing: true
              steps:
                - {{type: search, term: shoes}}
                - {{type: cart}}
                - {{type: event, category: Cart, action: Add}}
                - {{type: outlink, url: https://partner.example/}}
                - {{type: download, url: /files/sizes.pdf}}
    """
SHOP_GOALS = {1, 2}


def shop_target(write_yaml, token: bool = False, name: str = "mall.yaml"):
    text = SHOP_TRAFFIC.format(token="token_auth: ${TOK}" if token else "")
    return load_config(write_yaml(text, name=name), env={"TOK": TOKEN}).targets[0]


def claimed_by_an_action(params) -> bool:
    """Whether an action type of a core Matomo 5 claims a ``ca=1`` request (core/Tracker/Action.php::factory).

    Kept apart from ``protocol`` on purpose: ActionEvent (e_c and e_a), ActionClickUrl (link),
    ActionDownloadUrl (download), ActionContent (c_n), ActionSiteSearch (search). Goal
    conversions, ecommerce and pings have no action class; pageviews refuse ca=1.
    """
    if params.get("e_c") and params.get("e_a"):
        return True
    return any(params.get(key) for key in ("link", "download", "c_n", "search"))


@pytest.mark.parametrize("token", [False, True])
def test_every_planned_hit_passes_the_protocol_check(write_yaml, token):
    target = shop_target(write_yaml, token)
    planner, encoder = VisitPlanner(target, SEED), TrackingEncoder(target)
    now = datetime.now(timezone.utc)
    kinds = Counter()
    for n in range(3000):
        visit = planner.plan(n)
        for hit in visit.hits:
            params = decode(encoder.body(hit, visit.visitor, now))
            rejection = check_hit(
                params, site_exists=True, token_valid=token, token_given=token, goal_ids=SHOP_GOALS, now_utc=now
            )
            assert rejection is None, (hit, rejection)
            kind = classify(params)
            assert kind == ("product_view" if "_pks" in params else hit.kind), (
                kind,
                hit,
            )  # a product page is a pageview
            kinds[kind] += 1
    assert set(kinds) == {"pageview", "product_view", "ping", "goal", "cart", "order", *ACTION_KINDS}


def test_ca_only_on_hits_an_action_type_claims(write_yaml):
    """Matomo refuses a ``ca=1`` request no action type claims (400 alone, the whole batch in bulk).

    Goal conversions (idgoal>0), ecommerce (idgoal=0: orders, cart updates), pings and pageviews,
    product views included, never carry it; events, outlinks and downloads always do (as matomo.js
    sends them); site searches do not (matomo.js sends none, and without site search enabled for the
    site ``ca=1`` would make Matomo refuse them instead of storing a pageview).
    """
    target = shop_target(write_yaml)
    planner = VisitPlanner(target, SEED)
    with_ca, without_ca = Counter(), Counter()
    for n in range(3000):
        for hit in planner.plan(n).hits:
            if hit.params.get("ca") == "1":
                assert claimed_by_an_action(hit.params), hit
                with_ca[hit.kind] += 1
            else:
                assert "ca" not in hit.params, hit
                without_ca[hit.kind] += 1
    assert set(with_ca) == {"event", "outlink", "download"}
    assert set(without_ca) == {"pageview", "search", "goal", "cart", "order", "ping"}
    product_views = sum(1 for n in range(500) for h in planner.plan(n).hits if "_pks" in h.params)
    assert product_views > 0


# --- ecommerce within a visit -------------------------------------------------------------------


def shop_sequence(visit) -> list[str]:
    """The visit's shop hits in sending order: ``view`` (a product page), ``cart``, ``order``."""
    marks = []
    for hit in visit.hits:
        if hit.kind == "pageview" and "_pks" in hit.params:
            marks.append("view")
        elif hit.kind in ("cart", "order"):
            marks.append(hit.kind)
    return marks


def test_a_visit_shops_in_order_and_orders_at_most_once(write_yaml):
    """Product views, then cart updates, then at most one order, and no cart update after it.

    Matomo books a cart updated after the order as an abandoned cart (its ``ecommerce-cart-after-order``
    case), and a visit's journey order plus its free ``ecommerce.order`` draw used to make two orders.
    """
    target = shop_target(write_yaml)
    planner = VisitPlanner(target, SEED)
    rank = {"view": 0, "cart": 1, "order": 2}
    seen = Counter()
    order_ids = []
    for n in range(20_000):
        visit = planner.plan(n)
        marks = shop_sequence(visit)
        assert marks.count("order") <= 1, marks
        assert [rank[m] for m in marks] == sorted(rank[m] for m in marks), (visit.journey, marks)
        order_ids += [h.params["ec_id"] for h in visit.hits if h.kind == "order"]
        journey_orders = visit.journey in ("Checkout", "Buy now")
        seen["order"] += "order" in marks
        seen["both"] += journey_orders and "order" in visit.actions
        if journey_orders or "order" in visit.actions:
            assert marks.count("order") == 1, (visit.journey, visit.actions, marks)
        if "order" in visit.actions and journey_orders:
            assert marks[-1] == "order" and "cart" in marks, marks  # the free cart comes before the journey's order
        if not journey_orders:  # free visits and the Browse journey (carts only) order when drawn to
            assert marks.count("order") == ("order" in visit.actions), marks
    assert len(order_ids) == len(set(order_ids))
    assert seen["both"] > 500, "visits whose journey orders also drew a free order: the case to check"
    # ecommerce.order keeps its meaning (the share of visits drawn to order); journeys' orders come on
    # top, except that a visit drawn to order whose journey orders orders once: 0.3 + 0.3 * (1 - 0.3)
    assert seen["order"] / 20_000 == pytest.approx(0.3 + 0.3 * 0.7, abs=0.015)


def test_product_views_come_before_the_journeys_first_cart_and_never_replace_a_free_landing(write_yaml):
    target = shop_target(write_yaml)
    planner = VisitPlanner(target, SEED)
    checked = 0
    for n in range(5000):
        visit = planner.plan(n)
        if visit.journey is None and "product_view" in visit.actions:
            assert "_pks" not in visit.hits[0].params, "a free visit lands on a free page"
        if visit.journey == "Checkout" and "product_view" in visit.actions:
            urls = [h.params["url"] for h in visit.hits if h.kind == "pageview"]
            assert urls.index("https://shop.example/basket") < urls.index("https://shop.example/pay")
            checked += 1
    assert checked > 100


@pytest.mark.parametrize(
    ("steps", "message"),
    [
        ("[{type: order}, {type: pageview, url: /again}, {type: order}]", "at most one order step"),
        ("[{type: cart}, {type: order}, {type: cart}]", "no cart step after the order step"),
    ],
)
def test_a_journey_orders_once_and_updates_no_cart_after_its_order(write_yaml, steps, message):
    from trafficinator_locust.core.errors import ConfigError

    path = write_yaml(
        f"""\
        targets:
          - name: Shop
            url: https://m.example/matomo.php
            site_id: 3
            traffic:
              funnels:
                - {{name: Twice, share: 0.1, steps: {steps}}}
        """,
        name="twice.yaml",
    )
    with pytest.raises(ConfigError) as error:
        load_config(path, env={})
    assert message in str(error.value)


# --- fingerprints (Matomo's config id) ----------------------------------------------------------


def matomo_fingerprint(params) -> tuple:
    """What Matomo's config id hashes from a hit, but the IP and salts (core/Tracker/Settings.php::getConfigId).

    OS and browser (short names) and browser version as Matomo's DeviceDetector reads them from
    ``ua`` and the client hints ``uadata``; the plugin flags fla, java, qt, realp, pdf, wma, ag, cookie
    (Request::getPlugins: a missing flag is 0); the first 20 characters of ``lang``.
    """
    from device_detector import DeviceDetector
    from devicedetect import _hints

    key = (params["ua"], params.get("uadata"))
    if key not in _DEVICES_SEEN:
        uadata = params.get("uadata")
        detector = DeviceDetector(key[0], headers=_hints(uadata)) if uadata else DeviceDetector(key[0])
        details = detector.parse().all_details
        _DEVICES_SEEN[key] = (
            details.get("os", {}).get("short_name", ""),
            details.get("client", {}).get("short_name", ""),
            details.get("client", {}).get("version", ""),
        )
    flags = tuple(int(params.get(flag, "0")) for flag in ("fla", "java", "qt", "realp", "pdf", "wma", "ag", "cookie"))
    return (*_DEVICES_SEEN[key], flags, params["lang"][:20])


_DEVICES_SEEN: dict = {}


def fingerprints(target, visits: int = 20_000):
    """The fingerprints of a target's anonymous and of its logged-in visits, from their encoded first hits."""
    planner, encoder = VisitPlanner(target, SEED), TrackingEncoder(target)
    anonymous, logged_in = set(), set()
    for n in range(visits):
        visit = planner.plan(n)
        params = decode(encoder.body(visit.hits[0], visit.visitor, NOON_UTC))
        (logged_in if "uid" in params else anonymous).add(matomo_fingerprint(params))
    return anonymous, logged_in


def test_without_a_token_no_logged_in_visit_shares_a_fingerprint_with_an_anonymous_one(write_yaml):
    """Matomo looks a ``uid`` it has not seen up by fingerprint among visits whose user id is empty or
    the same (core/Tracker/Model.php::findVisitor), within 30 minutes: without a token every hit comes
    from the generator's IP, so a shared fingerprint would let a logged-in visit take over an anonymous
    one. Logged-in visits have the other PDF-viewer setting than their device's default."""
    anonymous, logged_in = fingerprints(shop_target(write_yaml))
    assert len(logged_in) > 200 and len(anonymous) > 200
    assert not anonymous & logged_in
    # without the plugin flags they would meet: the test looks where a merge could happen
    assert {f[:3] + f[4:] for f in anonymous} & {f[:3] + f[4:] for f in logged_in}
    # and even ignoring the browser version (whatever precision Matomo's device detector reports)
    assert not {f[:2] + f[3:] for f in anonymous} & {f[:2] + f[3:] for f in logged_in}


def test_the_pdf_viewer_default_is_a_function_of_what_matomo_fingerprints():
    """By construction: no two catalogue browsers with one Matomo (OS, browser, version) differ in default."""
    from trafficinator_locust.core import catalog
    from trafficinator_locust.core.tracking import PDF_VIEWER_ON, browser_features
    from trafficinator_locust.core.visits import Visitor

    defaults: dict[tuple, set[bool]] = {}
    for device in catalog.DEVICES:
        visitor = Visitor("a" * 16, device.user_agent, "en-US", device.resolution, "US", "", device.uadata)
        params = {"ua": device.user_agent, "lang": "en-US", **({"uadata": device.uadata} if device.uadata else {})}
        defaults.setdefault(matomo_fingerprint(params)[:3], set()).add(
            browser_features(visitor, with_token=False) == PDF_VIEWER_ON
        )
    assert all(len(values) == 1 for values in defaults.values())


def test_plugin_flags_as_matomo_js_sends_them(write_yaml):
    """Desktop browsers report their PDF viewer; a logged-in visit flips it only without a token; bots send none."""
    from trafficinator_locust.core import catalog
    from trafficinator_locust.core.tracking import PDF_VIEWER_OFF, PDF_VIEWER_ON

    kinds = {device.user_agent: device.kind for device in catalog.DEVICES}
    for token in (False, True):
        target = shop_target(write_yaml, token, name=f"flags-{token}.yaml")
        planner, encoder = VisitPlanner(target, SEED), TrackingEncoder(target)
        seen = Counter()
        for n in range(3000):
            visit = planner.plan(n)
            params = encoder.params(visit.hits[0], visit.visitor, NOON_UTC)
            flags = {key: params[key] for key in PDF_VIEWER_ON if key in params}
            viewer = kinds[visit.visitor.user_agent] == "desktop"
            if visit.visitor.uid and not token:
                viewer = not viewer
            assert flags == (PDF_VIEWER_ON if viewer else PDF_VIEWER_OFF), (token, visit.visitor)
            seen[(bool(visit.visitor.uid), kinds[visit.visitor.user_agent] == "desktop")] += 1
        assert len(seen) == 4
    bots = shop_target(write_yaml, name="bots.yaml")
    bots = bots.model_copy(update={"traffic": bots.traffic.model_copy(update={"bots": 1.0})})
    visit = VisitPlanner(bots, SEED).plan(1)
    assert not {"pdf", "cookie"} & set(TrackingEncoder(bots).params(visit.hits[0], visit.visitor, NOON_UTC))


def test_a_ticket_is_the_same_person_on_every_visit_and_returning_only_after_a_stored_visit(write_yaml):
    path = write_yaml("""
        targets:
          - name: Shop
            url: http://127.0.0.1:9/matomo.php
            site_id: 1
            traffic: {visitors: {returning: 0.3, logged_in: 0.5}, actions: {goal: 0}}
    """)
    planner = VisitPlanner(load_config(path).targets[0], SEED)
    first = planner.plan(1, VisitorTicket(7, 0))
    again = planner.plan(2, VisitorTicket(7, 3))
    other = planner.plan(3, VisitorTicket(8, 0))
    assert first.visitor.cid == again.visitor.cid != other.visitor.cid
    assert first.visitor.uid == again.visitor.uid, "logging in belongs to the person, not the visit"
    assert (first.visitor.returning, first.visitor.visit_count) == (False, 1)
    assert (again.visitor.returning, again.visitor.visit_count) == (True, 4)
    assert "new_visit" not in first.hits[0].params and again.hits[0].params["new_visit"] == "1"
    logged_in = sum(planner.plan(n, VisitorTicket(n, 0)).visitor.uid is not None for n in range(4000))
    assert abs(logged_in / 4000 - 0.5) < 0.03
