"""Matomo Tracking API parameters for planned hits (pure).

Every hit is a form-encoded POST body: Matomo merges the body with the query string, the token stays
out of URLs and access logs, and "secure only" tokens are accepted only there (ADR 001). The parts
that never change for a target (``idsite``, ``rec``, ``token_auth``...) are encoded once.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from datetime import datetime, timezone
from functools import lru_cache
from types import MappingProxyType
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

from trafficinator_locust.core import catalog
from trafficinator_locust.core.bulk import form_encode
from trafficinator_locust.core.config import Target
from trafficinator_locust.core.visits import Hit, Visitor

FORM_CONTENT_TYPE = "application/x-www-form-urlencoded"

# The browser features Matomo's JavaScript tracker (4.x, 5.x) sends. It looks up pdf, qt, realp, wma,
# fla, java and ag in ``navigator.mimeTypes``, which today's browsers hard-code (HTML's "PDF viewing
# support"): with the built-in PDF viewer on they list only the PDF types, so the tracker sends pdf=1
# and 0 for the others; without one (mobile Chrome, or the viewer turned off) the list is empty and
# it sends only ``cookie``. Matomo reads a missing flag as 0 (``Request::getPlugins``).
PDF_VIEWER_ON: Mapping[str, str] = MappingProxyType(
    {"pdf": "1", "qt": "0", "realp": "0", "wma": "0", "fla": "0", "java": "0", "ag": "0", "cookie": "1"}
)
PDF_VIEWER_OFF: Mapping[str, str] = MappingProxyType({"cookie": "1"})
_NO_FLAGS: Mapping[str, str] = MappingProxyType({})
_DESKTOP_AGENTS = frozenset(device.user_agent for device in catalog.DEVICES if device.kind == "desktop")


def browser_features(visitor: Visitor, with_token: bool) -> Mapping[str, str]:
    """The plugin flags of ``visitor``'s browser: part of the fingerprint (config id) Matomo matches visits by.

    Desktop browsers show PDFs inline, phones and tablets mostly do not. Without a token every hit
    comes from the generator's IP, and Matomo looks a ``uid`` whose visitor id it has not seen up by
    fingerprint (OS, browser and version, plugin flags, IP, language, site), within 30 minutes,
    among visits whose user id is empty or the same: a logged-in visitor could take over the visit
    of a concurrent anonymous visitor on the same browser and language. So, without a token, a
    logged-in visit has the other PDF viewer setting than its device's default, which no anonymous
    visit on a browser of that fingerprint has. (Logged-in visits never match each other: their
    user ids differ.) With a token each visitor sends its own ``cip``, and the IP keeps fingerprints
    apart. Bots run no JavaScript and send no flags.
    """
    if visitor.bot:
        return _NO_FLAGS
    viewer = visitor.user_agent in _DESKTOP_AGENTS
    if visitor.uid and not with_token:
        viewer = not viewer
    return PDF_VIEWER_ON if viewer else PDF_VIEWER_OFF


class TrackingEncoder:
    """Turns a target's planned hits into request bodies. One per target and process, reused for every hit.

    ``run_id`` prefixes order ids (``ec_id``): Matomo rejects a repeated order id for a site, and
    seeded plans repeat across runs, so each run (each encoder) gets its own prefix.
    """

    def __init__(self, target: Target, run_id: str | None = None):
        self._zone = ZoneInfo(target.timezone)
        self._with_token = target.token_auth is not None
        self.run_id = run_id or secrets.token_hex(4)
        fixed = {"idsite": str(target.site_id), "rec": "1", "apiv": "1", "send_image": "0"}
        self._prefix = urlencode(fixed)
        self._token_suffix = "&" + urlencode({"token_auth": target.token}) if target.token else ""
        self._encoded_visitor = lru_cache(maxsize=8192)(lambda visitor: form_encode(self._visitor_params(visitor)))

    def params(self, hit: Hit, visitor: Visitor, sent_at: datetime) -> dict[str, str]:
        """All parameters of one hit except the fixed ones and the token (for tests and reports)."""
        local = sent_at.astimezone(self._zone)
        params = {
            **self._hit_params(hit),
            **self._visitor_params(visitor),
            "h": str(local.hour),
            "m": str(local.minute),
            "s": str(local.second),
        }
        return params

    def body(self, hit: Hit, visitor: Visitor, sent_at: datetime | None = None) -> str:
        """The form-encoded POST body of one hit, token included.

        Equal to encoding :meth:`params` (tests check it), but the visitor's part (user agent,
        client hints, ids: the long strings) is encoded once per visitor, not once per hit.
        """
        return self._encoded(hit, visitor, sent_at or datetime.now(timezone.utc)) + self._token_suffix

    def item(self, hit: Hit, visitor: Visitor, sent_at: datetime | None = None) -> str:
        """One bulk item (``?idsite=...``) of the hit, stamped with ``cdt`` (unix seconds); no token.

        A hit waits in a batch before it travels, so Matomo must date it by ``cdt``, not by the
        bulk request's arrival. The token goes once, at the top of the bulk body (``bulk.build_payload``).
        """
        sent_at = sent_at or datetime.now(timezone.utc)
        return f"?{self._encoded(hit, visitor, sent_at)}&cdt={int(sent_at.timestamp())}"

    def _encoded(self, hit: Hit, visitor: Visitor, sent_at: datetime) -> str:
        local = sent_at.astimezone(self._zone)
        return (
            f"{self._prefix}&{form_encode(self._hit_params(hit))}&{self._encoded_visitor(visitor)}"
            f"&h={local.hour}&m={local.minute}&s={local.second}"
        )

    def _hit_params(self, hit: Hit) -> dict[str, str]:
        if "ec_id" not in hit.params:
            return hit.params
        return {**hit.params, "ec_id": f"{self.run_id}-{hit.params['ec_id']}"}

    def _visitor_params(self, visitor: Visitor) -> dict[str, str]:
        params = {"_id": visitor.cid, "cid": visitor.cid, "ua": visitor.user_agent, "lang": visitor.language}
        if visitor.resolution:
            params["res"] = visitor.resolution
        if visitor.uadata:
            params["uadata"] = visitor.uadata
        if visitor.uid:
            params["uid"] = visitor.uid
        if visitor.returning:
            params["_idvc"] = str(visitor.visit_count)
        if self._with_token and visitor.ip:
            params["cip"] = visitor.ip  # overriding the IP needs a token with write access
        params.update(browser_features(visitor, self._with_token))
        return params
