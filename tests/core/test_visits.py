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


@pytest.mark.parametrize("token", [False, True])
def test_every_planned_hit_passes_the_protocol_check(write_yaml, token):
    target = make_target(
        write_yaml,
        "      actions: {search: 0.4, outlink: 0.3, download: 0.3, event: 0.5}",
        name="Check",
        extra="    token_auth: ${TOK}" if token else "",
    )
    planner, encoder = VisitPlanner(target, SEED), TrackingEncoder(target)
    now = datetime.now(timezone.utc)
    kinds = Counter()
    for n in range(2000):
        visit = planner.plan(n)
        for hit in visit.hits:
            params = decode(encoder.body(hit, visit.visitor, now))
            rejection = check_hit(
                params, site_exists=True, token_valid=token, token_given=token, goal_ids=set(), now_utc=now
            )
            assert rejection is None, (hit, rejection)
            assert classify(params) == hit.kind
            kinds[hit.kind] += 1
    assert set(kinds) == {"pageview", "ping", *ACTION_KINDS}
