"""Where a visit came from: its referrer type and name, decided by the hit that starts it.

Matomo classifies the landing hit's referrer (``urlref``) against the page (``url``): campaign,
direct entry, search engine, social network, website (plugins/Referrers/Columns/Base.php,
``getReferrerInformation``, with Matomo's SearchEngines.yml and Socials.yml). The one
implementation of that is :func:`trafficinator_locust.core.referrers.classify`, shared with the
generator's tests; this module only adapts it to a hit's parameters:

- the receiver presents itself as Matomo :data:`~.reporting.MATOMO_VERSION` (5.2), which has no
  AI assistant type (Matomo 5.4 added it), so it classifies with ``ai_assistants=False``: ChatGPT
  is a website there, as in the recorded Matomo 5.1.2;
- a campaign named by the tracking parameter ``_rcn`` (the JavaScript tracker's campaign cookie),
  which ``core.referrers`` does not read, is a campaign of that (lower-cased) name, as
  ``Base::detectReferrerCampaign`` reads it first.

Example::

    referrer_of({"url": "https://c.example/", "urlref": "https://l.facebook.com/"})  # ("social", "Facebook")
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import lru_cache

from trafficinator_locust.core.referrers import TYPES, classify

__all__ = ["AI_ASSISTANTS", "REFERRER_TYPES", "referrer_of", "referrer_info"]

AI_ASSISTANTS = False
"""Whether referrers of AI assistants get their own type (Matomo 5.4+); the receiver is a 5.2."""
REFERRER_TYPES: tuple[str, ...] = TYPES
"""Matomo's referrer types as the receiver's stats name them (campaign, direct, search, social, website, ai)."""


def referrer_of(params: Mapping[str, str]) -> tuple[str, str]:
    """``(type, name)`` of a hit's referrer: one of :data:`REFERRER_TYPES` and the name Matomo shows."""
    kind, name, _keyword = referrer_info(params)
    return kind, name


def referrer_info(params: Mapping[str, str]) -> tuple[str, str, str]:
    """``(type, name, keyword)`` of a hit's referrer; the keyword is a search engine's or a campaign's
    (``_rck``, lower-cased, for a ``_rcn`` campaign), "" when not defined."""
    campaign = (params.get("_rcn") or "").strip()
    if campaign:
        return "campaign", campaign.lower(), (params.get("_rck") or "").strip().lower()
    return _classify(params.get("url", ""), params.get("urlref", ""))


@lru_cache(maxsize=8192)
def _classify(url: str, referrer: str) -> tuple[str, str, str]:
    info = classify(url, referrer, ai_assistants=AI_ASSISTANTS)
    return info.type, info.name, info.keyword or ""
