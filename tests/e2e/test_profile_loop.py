"""End to end, the closed loop of ``trafficinator profile``: a known traffic model runs into instance A
of the receiver; ``trafficinator profile`` learns a model from A's Reporting API; the learned model
runs into instance B for the same number of visits; A's and B's reports agree.

The receiver stores and reports as Matomo 5 does, so the loop proves what a production -> staging
copy would give: within 3 points on channel, device, browser, language, country and returning shares,
on the search engines', social networks', websites' and campaigns' shares of visits and the
keywords' shares of site searches, within
10 % on pageviews per visit and on each of A's top-10 pages' share of pageviews, and event, search,
goal and order rates per visit within 10 % or 3 points. Both runs use stress pacing with a daily cap
(the run ends when the cap is reached), bulk transport and near-zero dwell times, so each takes
well under a minute.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time
from collections import Counter
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
import yaml
from harness import locust_command, receiver_for

from trafficinator_locust.core.config import load_config
from trafficinator_locust.ops.reporting_api import ReportingApi

VISITS = 10000
TOKEN_A, TOKEN_B = "e2e-loop-tok-a", "e2e-loop-tok-b"
KNOWN = """\
zipf_exponent: 0.5
pageviews: {min: 1, max: 5}
dwell_seconds: {min: 0.01, max: 0.03}
visitors: {returning: 0.3, pool_size: 400, logged_in: 0}
devices: {desktop: 55, smartphone: 35, tablet: 10}
languages: {de-DE: 50, en-US: 30, fr-FR: 20}
countries: {DE: 45, US: 35, FR: 20}
channels: {direct: 35, search: 30, social: 10, website: 10, ai: 0, campaign: 15}
referrers:
  search_engines: {Google: 70, Bing: 20, Qwant: 10}
  socials: {Facebook: 60, LinkedIn: 30, Bluesky: 10}
  websites: {blog.example.org: 2, news.example.com: 1}
  campaigns: {winter-sale: 3, newsletter: 1}
browsers: {Chrome: 60, Safari: 25, Firefox: 10, Edge: 5}
site_search: {keywords: {shoes: 5, red shoes: 2, boots: 2}, no_result_keywords: {xyzzy: 1}}
outlinks: {"https://partner.example/deal": 3, "https://other.example/": 1}
actions: {search: 0.2, outlink: 0.1, download: 0.05, event: 0.4, goal: 0.15, ping: 1}
events:
  - {category: Video, action: Play, value: {min: 1, max: 60}, weight: 3}
  - {category: Newsletter, action: Subscribe, weight: 1}
goals: [{id: 1, weight: 2}, {id: 2, revenue: {min: 10, max: 30}, weight: 1}]
ecommerce: {cart: 0.12, order: 0.06}
"""
RECEIVER = """
targets:
  - name: A
    url: "http://127.0.0.1:{port}/a/matomo.php"
    site_id: 1
    token_auth: e2e-loop-tok-a
    timezone: UTC
    traffic:
      goals: [{{id: 1}}, {{id: 2}}]
  - name: B
    url: "http://127.0.0.1:{port}/b/matomo.php"
    site_id: 1
    token_auth: e2e-loop-tok-b
    timezone: UTC
    traffic:
      goals: [{{id: 1}}, {{id: 2}}]
"""


def _run_config(port: int, name: str, token: str, traffic: str) -> str:
    """A config with one target, ``visits_per_day`` capped at :data:`VISITS`, its traffic model ``traffic``."""
    return (
        "seed: 5\n"
        "defaults:\n"
        "  transport: bulk\n"
        "  bulk_size: 25\n"
        "  traffic:\n"
        "    pause_between_visits: {min: 0, max: 0.01}\n"
        "    dwell_seconds: {min: 0.01, max: 0.03}\n"
        "targets:\n"
        f"  - name: {name}\n"
        f"    url: http://127.0.0.1:{port}/{name.lower()}/matomo.php\n"
        "    site_id: 1\n"
        f"    token_auth: {token}\n"
        "    timezone: UTC\n"
        f"    visits_per_day: {VISITS}\n"
        "    traffic:\n" + textwrap.indent(traffic, "      ")
    )


def _run(folder: Path, config: str, name: str, env: dict[str, str]) -> float:
    path = folder / f"run-{name}.yaml"
    path.write_text(config, encoding="utf-8")
    command = locust_command(
        *("--traffic-config", str(path), "--headless", "--traffic-pacing", "stress", "-u", "40", "-r", "40"),
        *("-t", "100s", "--only-summary", "--traffic-state", str(folder / f"budget-{name}.json")),
    )
    started = time.monotonic()
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=150, cwd=folder)
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    return time.monotonic() - started


def _days() -> tuple[str, str]:
    today = datetime.now(timezone.utc).date()
    return (today - timedelta(days=1)).isoformat(), today.isoformat()


def _figures(api: ReportingApi) -> dict[str, Any]:
    """A's or B's reports, read as a user of Matomo would: shares of visits, of pageviews, rates per visit."""
    first, last = _days()
    base = {"idSite": "1", "period": "day", "date": f"{first},{last}", "filter_limit": "-1"}
    wanted = {
        "summary": ("VisitsSummary.get", {}),
        "actions": ("Actions.get", {}),
        "frequency": ("VisitFrequency.get", {}),
        "channel": ("Referrers.getReferrerType", {}),
        "device": ("DevicesDetection.getType", {}),
        "browser": ("DevicesDetection.getBrowsers", {}),
        "engine": ("Referrers.getSearchEngines", {}),
        "social": ("Referrers.getSocials", {}),
        "website": ("Referrers.getWebsites", {}),
        "campaign": ("Referrers.getCampaigns", {}),
        "keywords": ("Actions.getSiteSearchKeywords", {}),
        "language": ("UserLanguage.getLanguageCode", {}),
        "country": ("UserCountry.getCountry", {}),
        "pages": ("Actions.getPageUrls", {"flat": "1"}),
        "events": ("Events.getCategory", {}),
        "goal 1": ("Goals.get", {"idGoal": "1"}),
        "goal 2": ("Goals.get", {"idGoal": "2"}),
        "orders": ("Goals.get", {"idGoal": "ecommerceOrder"}),
    }
    answers = dict(zip(wanted, api.bulk([(method, {**base, **extra}) for method, extra in wanted.values()])))
    days = {key: [value for value in answer.values() if value] for key, answer in answers.items()}

    def total(key: str, metric: str) -> float:
        return sum(float(day.get(metric, 0) or 0) for day in days[key] if isinstance(day, dict))

    def by_label(key: str, metric: str = "nb_visits", label: str = "label") -> Counter:
        counts: Counter = Counter()
        for day in days[key]:
            for row in day:
                counts[str(row.get(label) or row.get("label"))] += float(row.get(metric, 0) or 0)
        return counts

    visits = total("summary", "nb_visits")
    assert visits > 0, answers
    figures: dict[str, Any] = {"visits": visits}
    for key in ("channel", "device", "browser", "engine", "social", "website", "campaign", "language", "country"):
        counts = by_label(key)
        figures[key] = {label: 100 * count / visits for label, count in counts.items()}
    searches = by_label("keywords", "nb_hits")
    figures["keyword"] = {label: 100 * count / sum(searches.values()) for label, count in searches.items()}
    figures["returning"] = 100 * total("frequency", "nb_visits_returning") / visits
    figures["pageviews per visit"] = total("actions", "nb_pageviews") / visits
    pages = by_label("pages", "nb_hits", "url")
    pageviews = sum(pages.values())
    figures["pages"] = {url: 100 * hits / pageviews for url, hits in pages.most_common()}
    figures["rates"] = {
        "events": sum(by_label("events", "nb_events").values()) / visits,
        "searches": total("actions", "nb_searches") / visits,
        "goals": (total("goal 1", "nb_conversions") + total("goal 2", "nb_conversions")) / visits,
        "orders": total("orders", "nb_conversions") / visits,
    }
    return figures


@pytest.fixture(scope="module")
def loop(tmp_path_factory):
    folder = tmp_path_factory.mktemp("profile-loop")
    started = time.monotonic()
    with receiver_for(folder, RECEIVER) as (port, config_path, env, _):
        seconds_a = _run(folder, _run_config(port, "A", TOKEN_A, KNOWN), "A", env)
        first, last = _days()
        learned = subprocess.run(
            [sys.executable, "-m", "trafficinator_locust.cli", "profile", str(config_path), "--target", "A"]
            + ["--from", first, "--to", last],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert learned.returncode == 0, learned.stderr
        (folder / "learned.yaml").write_text(learned.stdout, encoding="utf-8")
        seconds_b = _run(folder, _run_config(port, "B", TOKEN_B, learned.stdout), "B", env)
        targets = {t.name: t for t in load_config(config_path, env=env).targets}
        figures = {name: _figures(ReportingApi(targets[name], timeout=60)) for name in ("A", "B")}
    timing = {"A run": seconds_a, "B run": seconds_b, "total": time.monotonic() - started}
    return learned.stdout, figures, timing


def test_the_learned_model_is_the_known_one_read_back(loop):
    text, _, _ = loop
    model = yaml.safe_load(text)
    assert TOKEN_A not in text and TOKEN_B not in text
    assert model["channels"]["campaign"] == pytest.approx(15, abs=3)
    assert model["actions"]["event"] == pytest.approx(0.4, abs=0.04)
    assert {(e["category"], e["action"]) for e in model["events"]} == {("Video", "Play"), ("Newsletter", "Subscribe")}
    assert sorted(goal["id"] for goal in model["goals"]) == [1, 2]
    assert "# visits_per_day:" in text
    chosen = model["referrers"]
    assert set(chosen["search_engines"]) == {"Google", "Bing", "Qwant"}
    assert chosen["socials"]["Facebook"] == pytest.approx(60, abs=6)
    assert set(chosen["websites"]) == {"blog.example.org", "news.example.com"}
    assert set(chosen["campaigns"]) == {"winter-sale", "newsletter"}
    assert model["browsers"]["Chrome"] == pytest.approx(60, abs=4)
    assert set(model["site_search"]["keywords"]) == {"shoes", "red shoes", "boots"}
    assert set(model["site_search"]["no_result_keywords"]) == {"xyzzy"}
    assert set(model["outlinks"]) == {"https://partner.example/deal", "https://other.example/"}


def test_b_reports_what_a_reports(loop):
    _, figures, timing = loop
    a, b = figures["A"], figures["B"]
    print("\nclosed loop, A vs B:", timing)
    assert b["visits"] == pytest.approx(a["visits"], rel=0.02)
    problems = []
    compared = ("channel", "device", "browser", "engine", "social", "website", "campaign", "language", "country")
    for key in (*compared, "keyword"):
        for label in set(a[key]) | set(b[key]):
            one, other = a[key].get(label, 0.0), b[key].get(label, 0.0)
            print(f"  {key:9} {label:40} A {one:6.2f} %  B {other:6.2f} %")
            if abs(one - other) > 3:
                problems.append((key, label, one, other))
    print(f"  returning share A {a['returning']:.2f} %  B {b['returning']:.2f} %")
    if abs(a["returning"] - b["returning"]) > 3:
        problems.append(("returning", a["returning"], b["returning"]))
    one, other = a["pageviews per visit"], b["pageviews per visit"]
    print(f"  pageviews per visit A {one:.3f}  B {other:.3f}")
    if abs(one - other) > 0.1 * one:
        problems.append(("pageviews per visit", one, other))
    for url, share in list(a["pages"].items())[:10]:
        theirs = b["pages"].get(url, 0.0)
        print(f"  page {url:50} A {share:6.2f} %  B {theirs:6.2f} %")
        if abs(share - theirs) > 0.1 * share:
            problems.append(("page share", url, share, theirs))
    for key, rate in a["rates"].items():
        theirs = b["rates"][key]
        print(f"  {key} per visit A {rate:.4f}  B {theirs:.4f}")
        if abs(rate - theirs) > max(0.1 * rate, 0.03):
            problems.append((key, rate, theirs))
    assert not problems, problems
    assert a["engine"] and a["social"] and a["keyword"] and a["browser"]
    assert a["rates"]["orders"] > 0 and a["rates"]["goals"] > 0 and a["rates"]["searches"] > 0  # none is vacuous
