"""The shared definition of a valid Matomo hit: every receiver rule, cdt parsing, kinds, bots."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import pytest

from trafficinator_locust.core import protocol as p

NOW = datetime(2026, 11, 25, 12, 0, 0, tzinfo=timezone.utc)
TOKEN = "tok-7f3e9a1b2c"


def check(params: dict[str, str], **overrides):
    options = dict(site_exists=True, token_valid=False, token_given=False, goal_ids={1, 2, 3}, now_utc=NOW)
    options.update(overrides)
    return p.check_hit({"idsite": "1", "rec": "1", **params}, **options)


def reason(params: dict[str, str], **overrides) -> str | None:
    outcome = check(params, **overrides)
    return None if outcome is None else outcome.reason


def cdt_text(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%d %H:%M:%S")


# --- identifiers -----------------------------------------------------------------------------------
def test_identifier_patterns():
    assert p.CID_RE.match("0123456789abcdef") and p.CID_RE.match("0123456789ABCDEF")
    assert not p.CID_RE.match("0123456789abcde") and not p.CID_RE.match("0123456789abcdef0")
    assert not p.CID_RE.match("0123456789abcdeg")
    assert not p.CID_RE.match("0123456789abcdef\n")
    assert p.VISITOR_ID_RE.match("fedcba9876543210")
    assert p.PV_ID_RE.match("a1B2c3") and not p.PV_ID_RE.match("a1B2c") and not p.PV_ID_RE.match("a1-2c3")
    assert len(p.HIT_KINDS) == 10 and set(p.ACTION_KINDS) <= set(p.HIT_KINDS)


def test_every_reason_is_known_and_classified_once():
    assert p.IGNORED_REASONS.isdisjoint(p.INVALID_REASONS)
    assert p.DUPLICATE_EC_ID in p.INVALID_REASONS and p.BOT in p.IGNORED_REASONS


# --- the basics ------------------------------------------------------------------------------------
def test_plain_pageview_is_valid():
    assert check({"url": "https://example.org/", "action_name": "Home", "_id": "0123456789abcdef"}) is None


@pytest.mark.parametrize("rec", [None, "", "0"])
def test_missing_rec_is_ignored_not_invalid(rec):
    params = {"idsite": "1"} if rec is None else {"idsite": "1", "rec": rec}
    outcome = p.check_hit(params, site_exists=True, token_valid=False, token_given=False, goal_ids=None, now_utc=NOW)
    assert outcome.reason == p.NO_REC and outcome.ignored and outcome.status == 200


def test_missing_rec_wins_over_other_problems():
    outcome = p.check_hit(
        {"cid": "nope"}, site_exists=False, token_valid=False, token_given=False, goal_ids=None, now_utc=NOW
    )
    assert outcome.reason == p.NO_REC


@pytest.mark.parametrize("idsite", [None, "", "abc", "0", "-1"])
def test_missing_or_malformed_idsite_is_400(idsite):
    params = {"rec": "1"} if idsite is None else {"rec": "1", "idsite": idsite}
    outcome = p.check_hit(params, site_exists=False, token_valid=False, token_given=False, goal_ids=None, now_utc=NOW)
    assert (outcome.reason, outcome.status, outcome.ignored) == (p.MISSING_IDSITE, 400, False)


def test_unknown_site_is_400():
    outcome = check({}, site_exists=False)
    assert (outcome.reason, outcome.status) == (p.UNKNOWN_SITE, 400)


@pytest.mark.parametrize("cid", ["abc", "0123456789abcde", "0123456789abcdef0", "0123456789abcdeg", "zzzzzzzzzzzzzzzz"])
def test_bad_cid_is_400(cid):
    outcome = check({"cid": cid})
    assert (outcome.reason, outcome.status) == (p.BAD_CID, 400)


@pytest.mark.parametrize("cid", ["0123456789abcdef", "0123456789ABCDEF", ""])
def test_good_or_empty_cid_passes(cid):
    assert check({"cid": cid}) is None


# --- events ----------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "params",
    [
        {"e_c": "Video"},
        {"e_a": "Play"},
        {"e_n": "Intro"},
        {"e_v": "3"},
        {"e_c": "", "e_a": "Play"},
        {"e_c": "Video", "e_a": " "},
    ],
)
def test_incomplete_event_is_400(params):
    outcome = check(params)
    assert (outcome.reason, outcome.status) == (p.EVENT_INCOMPLETE, 400)


def test_complete_event_passes():
    assert check({"e_c": "Video", "e_a": "Play", "e_n": "Intro", "e_v": "2.5"}) is None


# --- token-only parameters -------------------------------------------------------------------------
@pytest.mark.parametrize("key", p.OVERRIDE_PARAMS)
def test_overrides_need_a_valid_token(key):
    without = check({key: "1"})
    wrong = check({key: "1", "token_auth": TOKEN}, token_given=True)
    assert (without.reason, without.status) == (p.OVERRIDE_NEEDS_TOKEN, 400)
    assert wrong.reason == p.OVERRIDE_NEEDS_TOKEN and "not valid" in wrong.message
    assert TOKEN not in wrong.message
    assert check({key: "1"}, token_valid=True, token_given=True) is None


def test_recent_cdt_needs_no_token():
    assert check({"cdt": cdt_text(NOW - timedelta(hours=23, minutes=59))}) is None


@pytest.mark.parametrize(
    "value",
    [
        cdt_text(NOW - timedelta(hours=24, seconds=1)),
        str(int((NOW - timedelta(days=3)).timestamp())),
    ],
)
def test_old_cdt_needs_a_token(value):
    outcome = check({"cdt": value})
    assert (outcome.reason, outcome.status) == (p.CDT_NEEDS_TOKEN, 400)
    assert check({"cdt": value}, token_valid=True, token_given=True) is None


def test_future_cdt_is_accepted_as_now():
    assert check({"cdt": cdt_text(NOW + timedelta(days=2))}) is None


@pytest.mark.parametrize("value", ["yesterday", "2026-11-25T10:00:00", "2026-13-01 00:00:00", "12:00"])
def test_unparsable_cdt_is_400(value):
    outcome = check({"cdt": value})
    assert (outcome.reason, outcome.status) == (p.BAD_CDT, 400)


def test_parse_cdt_formats():
    assert p.parse_cdt("2026-11-25 10:30:00", NOW) == datetime(2026, 11, 25, 10, 30, tzinfo=timezone.utc)
    unix = int(datetime(2026, 11, 24, 8, 0, tzinfo=timezone.utc).timestamp())
    assert p.parse_cdt(str(unix), NOW) == datetime(2026, 11, 24, 8, 0, tzinfo=timezone.utc)
    assert p.parse_cdt(f"{unix}.5", NOW).timestamp() == unix + 0.5


def test_parse_cdt_future_becomes_now_and_naive_now_is_utc():
    assert p.parse_cdt("2030-01-01 00:00:00", NOW) == NOW
    naive = NOW.replace(tzinfo=None)
    assert p.parse_cdt("2030-01-01 00:00:00", naive) == NOW
    assert p.parse_cdt("2026-11-25 10:30:00", NOW).tzinfo is not None


def test_parse_cdt_rejects_garbage():
    with pytest.raises(ValueError):
        p.parse_cdt("not a date", NOW)


# --- goals and ecommerce ---------------------------------------------------------------------------
def test_unknown_goal_is_400():
    outcome = check({"idgoal": "7"}, goal_ids={1, 2, 3})
    assert (outcome.reason, outcome.status) == (p.UNKNOWN_GOAL, 400)
    assert reason({"idgoal": "x"}) == p.UNKNOWN_GOAL


def test_known_goal_ecommerce_goal_and_unchecked_goals_pass():
    assert check({"idgoal": "2", "revenue": "9.90"}) is None
    assert check({"idgoal": "0", "ec_id": "A1", "revenue": "10"}) is None
    assert check({"idgoal": "42"}, goal_ids=None) is None


@pytest.mark.parametrize("key", p.MONEY_PARAMS)
@pytest.mark.parametrize("value", ["10.123", "ten", "1e3", "10."])
def test_money_with_more_than_two_decimals_or_not_a_number_is_400(key, value):
    outcome = check({"idgoal": "0", "ec_id": "A1", key: value})
    assert (outcome.reason, outcome.status) == (p.BAD_MONEY, 400)


def order(**money: str) -> dict[str, str]:
    return {"idgoal": "0", "ec_id": "A1", **money}


def test_revenue_must_add_up_when_all_parts_are_given():
    assert check(order(revenue="115.50", ec_st="100.00", ec_tx="20.00", ec_sh="5.50", ec_dt="10.00")) is None
    outcome = check(order(revenue="120.00", ec_st="100.00", ec_tx="20.00", ec_sh="5.50", ec_dt="10.00"))
    assert (outcome.reason, outcome.status) == (p.REVENUE_MISMATCH, 400)


def test_revenue_check_tolerates_one_cent_and_skips_partial_orders():
    assert check(order(revenue="115.51", ec_st="100.00", ec_tx="20.00", ec_sh="5.50", ec_dt="10.00")) is None
    assert (
        reason(order(revenue="115.53", ec_st="100.00", ec_tx="20.00", ec_sh="5.50", ec_dt="10.00"))
        == p.REVENUE_MISMATCH
    )
    assert check(order(revenue="999", ec_st="100")) is None


def items(value) -> dict[str, str]:
    return order(ec_items=value if isinstance(value, str) else json.dumps(value))


@pytest.mark.parametrize(
    "value",
    [
        "not json",
        {"sku": "A"},
        [["SKU1", "Shoe", "Shoes", 10.5]],
        [["SKU1", "Shoe", "Shoes", 10.5, 1, "extra"]],
        [["", "Shoe", "Shoes", 10.5, 1]],
        [["SKU1", "Shoe", "Shoes", "cheap", 1]],
        [["SKU1", "Shoe", "Shoes", 10.5, 1.5]],
        [["SKU1", "Shoe", 3, 10.5, 1]],
        ["SKU1"],
    ],
)
def test_malformed_ec_items_is_400(value):
    outcome = check(items(value))
    assert (outcome.reason, outcome.status) == (p.BAD_EC_ITEMS, 400)


@pytest.mark.parametrize(
    "value",
    [
        [],
        [["SKU1", "Shoe", "Shoes", 10.5, 1], ["SKU2", "Sock", ["Clothes", "Socks"], "2.99", "3"]],
        [["SKU1", "", "", 0, 0]],
    ],
)
def test_well_formed_ec_items_pass(value):
    assert check(items(value)) is None


# --- classification --------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "params, kind",
    [
        ({"url": "https://x/"}, "pageview"),
        ({"ping": "1", "e_c": "a", "e_a": "b", "idgoal": "1"}, "ping"),
        ({"idgoal": "0", "ec_id": "A1", "e_c": "a", "e_a": "b"}, "order"),
        ({"idgoal": "0"}, "cart"),
        ({"idgoal": "0", "ec_id": ""}, "cart"),
        ({"idgoal": "3", "search": "shoes"}, "goal"),
        ({"e_c": "a", "e_a": "b", "search": "q", "link": "https://y/"}, "event"),
        ({"search": "q", "link": "https://y/"}, "search"),
        ({"link": "https://y/", "download": "https://y/f.pdf"}, "outlink"),
        ({"download": "https://y/f.pdf", "_pks": "SKU"}, "download"),
        ({"_pks": "SKU1", "_pkn": "Shoe", "url": "https://x/p"}, "product_view"),
        ({"_pkp": "10.00"}, "product_view"),
        ({"ping": "0"}, "pageview"),
    ],
)
def test_classify_precedence(params, kind):
    assert p.classify(params) == kind
    assert kind in p.HIT_KINDS


# --- bots and campaigns ----------------------------------------------------------------------------
@pytest.mark.parametrize(
    "ua",
    [
        "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
        "Mozilla/5.0 (compatible; bingbot/2.0; +http://www.bing.com/bingbot.htm)",
        "Some Crawler 1.0",
        "friendly-spider",
        "Mozilla/5.0 (compatible; YandexBot/3.0)",
    ],
)
def test_bot_user_agents(ua):
    assert p.bot_user_agent(ua)


@pytest.mark.parametrize(
    "ua",
    [
        "",
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36",
        "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 Mobile/15E148",
    ],
)
def test_browser_user_agents_are_not_bots(ua):
    assert not p.bot_user_agent(ua)


def test_campaign_from_params_or_url():
    assert p.campaign_of({"_rcn": "Spring"}) == "spring"
    assert p.campaign_of({"url": "https://x/?mtm_campaign=Black-Friday&a=1"}) == "black-friday"
    assert p.campaign_of({"url": "https://x/?pk_campaign=news"}) == "news"
    assert p.campaign_of({"url": "https://x/?q=1"}) == ""


@pytest.mark.parametrize(
    "url, path",
    [
        ("http://127.0.0.1:8765/dev/matomo.php", "/dev"),
        ("https://analytics.example.com/matomo.php", ""),
        ("https://x.example/a/b/piwik.php", "/a/b"),
        ("https://x.example/matomo/", "/matomo"),
    ],
)
def test_instance_path_of_a_tracker_url(url, path):
    assert p.instance_path(url) == path
