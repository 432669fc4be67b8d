"""Driving the receiver in-process for its tests: a fake clock, the WSGI app behind werkzeug's test
client, and helpers that send hits, bulk batches and Reporting API calls (``tests/receiver`` only)."""

import json
from datetime import datetime, timezone

from werkzeug.test import Client

from trafficinator_locust.receiver.app import ReceiverApp
from trafficinator_locust.receiver.instances import ReceiverInstance, ReceiverSite

TOKEN = "sekret-token-4c1d2e"
UA = "Mozilla/5.0 (X11; Linux x86_64; rv:120.0) Gecko/20100101 Firefox/120.0"
T0 = datetime(2026, 11, 25, 10, 0, 0, tzinfo=timezone.utc).timestamp()
CID_A, CID_B = "aaaaaaaaaaaaaaa1", "bbbbbbbbbbbbbbb2"


class FakeClock:
    """A settable clock in unix seconds."""

    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, minutes: float) -> None:
        self.now += minutes * 60


class ReceiverClient:
    """The receiver's WSGI app in-process (a fake clock, sites 1 and 2 of one instance unless
    ``sites`` says otherwise, TOKEN admin, ``options`` for :class:`ReceiverApp`) with a few request
    helpers; every answer body is kept in ``bodies``."""

    def __init__(
        self, tz: str = "UTC", prefix: str = "/dev", sites: dict[int, ReceiverSite] | None = None, **options
    ) -> None:
        self.clock = FakeClock()
        if sites is None:
            sites = {1: ReceiverSite(1, timezone=tz, name="Main"), 2: ReceiverSite(2, goals=frozenset({5}))}
        self.prefix = prefix
        self.app = ReceiverApp([ReceiverInstance(prefix, sites, {TOKEN})], clock=self.clock, **options)
        self.client = Client(self.app)
        self.bodies: list[bytes] = []

    def _keep(self, response):
        self.bodies.append(response.get_data())
        return response

    def hit(self, headers: dict | None = None, remote: str = "10.0.0.1", **params: str):
        """Form-POST one hit (idsite=1, rec=1 unless overridden)."""
        data = {"idsite": "1", "rec": "1", **params}
        data = {k: v for k, v in data.items() if v is not None}
        return self._keep(
            self.client.post(
                f"{self.prefix}/matomo.php",
                data=data,
                headers=self._headers(headers),
                environ_base={"REMOTE_ADDR": remote},
            )
        )

    def get_hit(self, **params: str):
        query = {k: v for k, v in {"idsite": "1", "rec": "1", **params}.items() if v is not None}
        return self._keep(self.client.get(f"{self.prefix}/matomo.php", query_string=query, headers=self._headers(None)))

    def bulk(self, payload, raw: bool = False):
        body = payload if raw else json.dumps(payload)
        return self._keep(
            self.client.post(
                f"{self.prefix}/matomo.php", data=body, content_type="application/json", headers=self._headers(None)
            )
        )

    def api(self, method: str, token: str | None = TOKEN, **params: str):
        data = {"module": "API", "format": "JSON", "method": method, **params}
        if token is not None:
            data["token_auth"] = token
        return self._keep(self.client.post(f"{self.prefix}/index.php", data=data)).json

    def stats(self) -> dict:
        return self._keep(self.client.get(f"{self.prefix}/sink/stats")).json

    def site(self, site_id: int = 1) -> dict:
        return self.stats()["sites"][str(site_id)]

    def visits(self, site_id: int = 1) -> list[dict]:
        """The site's visits (``Live.getLastVisitsDetails``), oldest first."""
        return list(reversed(self.api("Live.getLastVisitsDetails", idSite=str(site_id), filter_limit="-1")))

    @staticmethod
    def _headers(extra: dict | None) -> dict:
        return {"User-Agent": UA, "Accept-Language": "en-US", **(extra or {})}


def old_cdt(hours: float) -> str:
    return datetime.fromtimestamp(T0 - hours * 3600, timezone.utc).strftime("%Y-%m-%d %H:%M:%S")
