"""Preflight: is every target reachable, a Matomo, and is its token allowed to track its site?

Why: a run against a wrong URL, site id or token fails late and loudly (thousands of 400s, or
Matomo blocking the generator's IP after ~20 failed token checks in an hour) or silently (visits
counted in the wrong time zone). Checking each target once, before a run, catches these in seconds.

Per target, in order, stopping at the first failure (later steps would only repeat it):

``dns`` host resolves; ``tcp`` a connection opens; ``tls`` (https only) the handshake and the
certificate check pass; ``tracker`` a GET of the tracker URL without parameters answers Matomo's
"This resource is part of Matomo" page; ``api`` the Reporting API (``<instance>/index.php``)
answers ``API.getMatomoVersion``; with a token: ``token`` Matomo accepts it
(``SitesManager.getSitesIdWithAtLeastViewAccess``), ``site`` the site exists for it
(``SitesManager.getSiteFromId``), ``access`` it has write or admin access to the site
(``SitesManager.getSitesIdWithAdminAccess``, then ``...WithWriteAccess``; docs/adr/009-preflight.md);
``probe`` (only with ``probe=True``) one test hit is accepted. The site's time zone, currency and
ecommerce flag are compared with the config: a difference is a warning, not a failure.

Targets are checked concurrently, one thread each (OS threads from the command line, green ones
where gevent has patched the process, as in Locust's web UI); each has ``timeout`` seconds for all
its steps, and :func:`preflight` returns within ``timeout`` (+ a short grace) whatever a server
does. Nothing is tracked unless ``probe`` is set. The token travels only in POST bodies and is
masked in every detail. HTTP goes through :mod:`.tracker_http` (the tracker page, the test hit)
and :mod:`.reporting_api` (every API call), the package's one HTTP stack outside Locust.
"""

from __future__ import annotations

import http.client
import socket
import ssl
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, NoReturn
from urllib.parse import urlencode, urlsplit

from trafficinator_locust.core.config import Target
from trafficinator_locust.core.masking import mask_secrets
from trafficinator_locust.core.table import render_table
from trafficinator_locust.ops.reporting_api import ReportingApi, api_url, matomo_error
from trafficinator_locust.ops.tracker_http import FORM_CONTENT_TYPE, Endpoint, HttpAnswer, display_url

__all__ = [
    "DEFAULT_TIMEOUT",
    "PROBE_ACTION",
    "PROBE_CID",
    "STEP_NAMES",
    "Step",
    "TargetResult",
    "preflight",
    "render_results",
    "site_warnings",
]

DEFAULT_TIMEOUT = 10.0
STEP_NAMES = ("dns", "tcp", "tls", "tracker", "api", "token", "site", "access", "probe")
"""Every step in the order it runs; a result lists those that ran (``tls`` only for https)."""
PROBE_ACTION = "trafficinator preflight probe"
PROBE_CID = "707265666c696768"
"""The probe's visitor id: "prefligh" in ASCII hex, easy to find (and delete) in Matomo."""
PROBE_PATH = "/trafficinator-preflight-probe"
PROBE_USER_AGENT = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0"
"""A browser's: Matomo drops hits from bot-like user agents silently, which would fake a pass."""
TRACKER_PAGE_MARKERS = (b"This resource is part of Matomo", b"This resource is part of Piwik")
GRACE_SECONDS = 0.5
"""How long past the timeout :func:`preflight` waits for a target to report its own timeout."""
MAX_BODY = 1 << 20
USER_AGENT = "trafficinator-preflight"


@dataclass(frozen=True)
class Step:
    """One check of a target: ``("tcp", False, "connection refused on 127.0.0.1:9 ...")``."""

    name: str
    ok: bool
    detail: str


@dataclass(frozen=True)
class TargetResult:
    """What preflight found for one target; ``ok`` when every step that ran passed."""

    target: str
    ok: bool
    steps: tuple[Step, ...]
    warnings: tuple[str, ...]
    seconds: float

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready; details and warnings were masked when made, so no token is in here."""
        return {
            "target": self.target,
            "ok": self.ok,
            "steps": [{"name": s.name, "ok": s.ok, "detail": s.detail} for s in self.steps],
            "warnings": list(self.warnings),
            "seconds": round(self.seconds, 3),
        }

    @property
    def failure(self) -> Step | None:
        """The step that failed, if one did."""
        return next((step for step in self.steps if not step.ok), None)


def preflight(
    targets: Sequence[Target], *, timeout: float = DEFAULT_TIMEOUT, probe: bool = False
) -> list[TargetResult]:
    """Check every target given (enabled or not: choosing them is the caller's job), concurrently.

    Returns one result per target, in the order given, within ``timeout`` + a short grace: a target
    still busy then fails at the step it was in with "timed out after N s".
    """
    if not timeout > 0:
        raise ValueError("timeout must be > 0 seconds")
    checks = [_Check(target, timeout, probe) for target in targets]
    threads = [
        threading.Thread(target=check.run, name=f"preflight-{check.target.name}", daemon=True) for check in checks
    ]
    for thread in threads:
        thread.start()
    give_up = time.monotonic() + timeout + GRACE_SECONDS
    for thread in threads:
        thread.join(max(0.0, give_up - time.monotonic()))
    return [check.result() for check in checks]


# =============================================================================================
# One target


class _Failed(Exception):
    """Ends a target's checks: the current step failed with this (masked) detail."""


class _Check:
    """Runs the steps of one target in its own thread and keeps what it found so far."""

    def __init__(self, target: Target, timeout: float, probe: bool):
        self.target = target
        self.timeout = timeout
        self.probe = probe
        self.parts = urlsplit(target.url)
        self.https = self.parts.scheme == "https"
        self.host = self.parts.hostname or ""
        self.port = self.parts.port or (443 if self.https else 80)
        self.api = api_url(target.url)
        self._token = target.report_token or ""  # the Reporting API's; the tracker's is target.token
        self._lock = threading.Lock()
        self._steps: list[Step] = []
        self._warnings: list[str] = []
        self._current = STEP_NAMES[0]
        self._started = time.monotonic()
        self._deadline = self._started + timeout
        self._seconds: float | None = None
        self._context: ssl.SSLContext | None = None
        self._api: ReportingApi | None = None
        self._write_api: ReportingApi | None = None  # asked with token_auth when report_token_auth is set

    # -- bookkeeping ----------------------------------------------------------------------------
    def result(self) -> TargetResult:
        """What was found; a check still running has timed out in its current step."""
        with self._lock:
            steps = list(self._steps)
            seconds = self._seconds
            if seconds is None:
                steps.append(Step(self._current, False, f"timed out after {self.timeout:g} s ({self._current} step)"))
                seconds = time.monotonic() - self._started
            warnings = tuple(self._warnings)
        return TargetResult(self.target.name, all(s.ok for s in steps), tuple(steps), warnings, seconds)

    def _begin(self, name: str) -> None:
        with self._lock:
            self._current = name

    def _passed(self, detail: str) -> None:
        with self._lock:
            self._steps.append(Step(self._current, True, self._mask(detail)))

    def _warn(self, text: str) -> None:
        with self._lock:
            self._warnings.append(self._mask(text))

    def _mask(self, text: str) -> str:
        return mask_secrets(text, self.target.secrets)

    def _quote(self, text: str, limit: int = 300) -> str:
        """A server's words, masked before they are cut (a cut token would escape the mask)."""
        masked = self._mask(text)
        return masked if len(masked) <= limit else masked[:limit] + "..."

    def _remaining(self) -> float:
        left = self._deadline - time.monotonic()
        if left <= 0:
            self._timed_out("")
        return left

    def _timed_out(self, waiting_for: str) -> NoReturn:
        raise _Failed(f"timed out after {self.timeout:g} s" + (f" waiting for {waiting_for}" if waiting_for else ""))

    # -- the run ----------------------------------------------------------------------------------
    def run(self) -> None:
        try:
            self._run_steps()
        except _Failed as failed:
            with self._lock:
                self._steps.append(Step(self._current, False, self._mask(str(failed))))
        except Exception as exc:  # a bug must not hang the answer or leak a traceback with a token
            with self._lock:
                self._steps.append(
                    Step(self._current, False, self._mask(f"unexpected error: {exc.__class__.__name__}: {exc}"))
                )
        with self._lock:
            self._seconds = time.monotonic() - self._started

    def _run_steps(self) -> None:
        addresses = self._step_dns()
        self._step_tcp_and_tls(addresses)
        self._step_tracker()
        self._step_api()
        if self._token:
            visible = self._step_token()
            site = self._step_site(visible)
            if self.target.token is not None:
                self._step_access()
            else:
                self._warn(
                    "no token_auth: hits are tracked without a token (report_token_auth is used for the "
                    "Reporting API only); Matomo rejects hits with cip, geo or a cdt older than 24 h"
                )
            self._compare_site(site)
        else:
            self._warn(
                "no token_auth: the site, the token's access, the time zone and the currency were not checked "
                "(Matomo rejects hits with cip, geo or a cdt older than 24 h without a token)"
            )
        if self.probe:
            self._step_probe()

    # -- reachability ---------------------------------------------------------------------------
    def _step_dns(self) -> list[tuple[Any, ...]]:
        self._begin("dns")
        if not self.host:
            raise _Failed(f"the URL {display_url(self.target.url)} names no host")
        try:
            infos = socket.getaddrinfo(self.host, self.port, type=socket.SOCK_STREAM)
        except socket.gaierror as exc:
            raise _Failed(f"cannot resolve {self.host}: {exc.strerror or exc}") from None
        addresses = list(dict.fromkeys(info[4][0] for info in infos))
        self._passed(
            f"{self.host} is {', '.join(addresses[:4])}"
            if addresses != [self.host]
            else f"{self.host} (an address, no lookup)"
        )
        return infos

    def _step_tcp_and_tls(self, infos: list[tuple[Any, ...]]) -> None:
        self._begin("tcp")
        connection = self._connect(infos)
        try:
            self._passed(f"connected to {_endpoint(connection.getpeername())}")
            if self.https:
                self._begin("tls")
                self._handshake(connection)
        finally:
            connection.close()

    def _connect(self, infos: list[tuple[Any, ...]]) -> socket.socket:
        problems = []
        for family, kind, proto, _, address in infos:
            sock = socket.socket(family, kind, proto)
            sock.settimeout(self._remaining())
            try:
                sock.connect(address)
                return sock
            except TimeoutError:
                sock.close()
                self._timed_out(f"a connection to {_endpoint(address)}")
            except ConnectionRefusedError:
                sock.close()
                problems.append(f"connection refused on {_endpoint(address)} (nothing listens on that port)")
            except OSError as exc:
                sock.close()
                problems.append(f"cannot connect to {_endpoint(address)}: {exc.strerror or exc}")
        raise _Failed("; ".join(problems) or f"no address to connect to for {self.host}")

    def _handshake(self, sock: socket.socket) -> None:
        sock.settimeout(self._remaining())
        try:
            with self._tls_context().wrap_socket(sock, server_hostname=self.host) as tls:
                version = tls.version() or "TLS"
        except TimeoutError:
            self._timed_out(f"the TLS handshake with {self.host}:{self.port}")
        except ssl.SSLCertVerificationError as exc:
            raise _Failed(
                f"the certificate of {self.host} is not trusted: {exc.verify_message or exc.reason}"
            ) from None
        except (ssl.SSLError, OSError) as exc:
            reason = getattr(exc, "reason", None) or exc.strerror or str(exc)
            raise _Failed(
                f"TLS handshake with {self.host}:{self.port} failed ({reason}): is it an https port?"
            ) from None
        self._passed(f"{version}, certificate valid for {self.host}")

    def _tls_context(self) -> ssl.SSLContext:
        if self._context is None:
            self._context = ssl.create_default_context()
        return self._context

    # -- Matomo ---------------------------------------------------------------------------------
    def _step_tracker(self) -> None:
        self._begin("tracker")
        url = display_url(self.target.url)
        answer = self._http("GET", self.target.url, None, f"GET {url}")
        if 300 <= answer.status < 400:
            raise _Failed(
                f"GET {url} answered HTTP {answer.status}, a redirect to {display_url(answer.location) or '?'}: "
                "put the final URL in the config (tracking POSTs are not redirected)"
            )
        if answer.status == 200 and any(marker in answer.body for marker in TRACKER_PAGE_MARKERS):
            self._passed(f"GET {url} answered Matomo's tracker page")
            return
        if answer.status == 404:
            raise _Failed(
                f"GET {url} answered HTTP 404: no Matomo tracker at this path "
                "(the URL should be the instance's matomo.php, e.g. https://host/matomo/matomo.php)"
            )
        raise _Failed(
            f"GET {url} answered HTTP {answer.status} without Matomo's tracker page "
            "('This resource is part of Matomo'): another application answers there"
        )

    def _step_api(self) -> None:
        self._begin("api")
        answer = self._api_call("API.getMatomoVersion")
        where = display_url(self.api)
        if isinstance(answer, dict) and "value" in answer:
            self._passed(f"Matomo {answer['value']} at {where}")
        elif matomo_error(answer) is None:
            raise _Failed(
                f"API.getMatomoVersion at {where} answered JSON that is not Matomo's: not Matomo's Reporting API"
            )
        elif self._token:  # a Matomo that refuses the token: the token step says why
            self._passed(f"the Reporting API answers at {where}")
        else:
            self._passed(f"the Reporting API answers at {where} (the version is not shown without a token)")

    def _step_token(self) -> set[int]:
        self._begin("token")
        answer = self._api_call(
            "SitesManager.getSitesIdWithAtLeastViewAccess",
            rejected="token_auth rejected (wrong, expired, or without access to any site)",
        )
        visible = _site_ids(answer, "SitesManager.getSitesIdWithAtLeastViewAccess")
        self._passed(f"accepted; it can see {len(visible)} site(s)")
        return visible

    def _step_site(self, visible: set[int]) -> dict[str, Any]:
        self._begin("site")
        site_id = self.target.site_id
        answer = self._api_call("SitesManager.getSiteFromId", idSite=str(site_id))
        if not isinstance(answer, dict) or str(answer.get("idsite")) != str(site_id):
            error = matomo_error(answer)
            said = f": Matomo says: {self._quote(error)}" if error else ""
            if site_id not in visible:
                shown = (
                    ", ".join(map(str, sorted(visible)[:10])) + (" ..." if len(visible) > 10 else "")
                    if visible
                    else "none"
                )
                raise _Failed(f"site {site_id} not found or not visible to this token (it sees sites: {shown}){said}")
            raise _Failed(f"SitesManager.getSiteFromId gave no site {site_id}{said}")
        self._passed(
            f"site {site_id} '{answer.get('name', '')}' ({answer.get('timezone', '?')}, {answer.get('currency', '?')})"
        )
        return answer

    def _step_access(self) -> None:
        self._begin("access")
        site_id = self.target.site_id
        write = self.target.report_token_auth is not None  # ask with token_auth, not the report token
        if site_id in _site_ids(
            self._api_call("SitesManager.getSitesIdWithAdminAccess", write=write),
            "SitesManager.getSitesIdWithAdminAccess",
        ):
            self._passed(f"admin access to site {site_id}")
            return
        if site_id in _site_ids(
            self._api_call("SitesManager.getSitesIdWithWriteAccess", write=write),
            "SitesManager.getSitesIdWithWriteAccess",
        ):
            self._passed(f"write access to site {site_id}")
            return
        raise _Failed(
            f"the token has only view access to site {site_id}; tracking needs write or admin access "
            "(Matomo rejects hits with cip, geo or a cdt older than 24 h with this token)"
        )

    def _compare_site(self, site: dict[str, Any]) -> None:
        for warning in site_warnings(self.target, site):
            self._warn(warning)

    def _step_probe(self) -> None:
        self._begin("probe")
        form = {
            "idsite": str(self.target.site_id),
            "rec": "1",
            "apiv": "1",
            "send_image": "0",
            "new_visit": "1",
            "action_name": PROBE_ACTION,
            "url": self.target.traffic.site_url.rstrip("/") + PROBE_PATH,
            "cid": PROBE_CID,
            "_id": PROBE_CID,
            "ua": PROBE_USER_AGENT,
        }
        if self.target.token:
            form["token_auth"] = self.target.token
        answer = self._http("POST", self.target.url, urlencode(form).encode(), "the test hit's answer")
        if answer.status in (200, 204):
            self._passed(f"1 test hit accepted (HTTP {answer.status}): action '{PROBE_ACTION}', visitor id {PROBE_CID}")
            return
        text = self._quote(answer.body.decode("utf-8", "replace").strip())
        raise _Failed(f"the test hit was refused: HTTP {answer.status}" + (f": {text}" if text else ""))

    # -- HTTP -------------------------------------------------------------------------------------
    def _api_call(self, method: str, rejected: str = "", *, write: bool = False, **params: str) -> Any:
        """A Reporting API answer (token in the POST body; ``write``: token_auth's, else the report
        token's); Matomo's error JSON fails with ``rejected`` when given, else is returned for the
        caller to read."""
        where = display_url(self.api)
        with self._transport(f"{method} at {where}"):
            answer = self._reporting_api(write).answer(method, params, timeout=self._remaining())
        if answer.error is not None and rejected:
            raise _Failed(f"{rejected}: Matomo says: {self._quote(answer.error)}")
        if answer.data is None or (answer.status != 200 and answer.error is None):
            raise _Failed(
                f"POST {where} ({method}) answered HTTP {answer.status} "
                f"{'with JSON that is not Matomo' if answer.data is not None else 'without JSON'}: "
                "not Matomo's Reporting API"
            )
        return answer.data

    def _reporting_api(self, write: bool = False) -> ReportingApi:
        if write:
            if self._write_api is None:
                context = self._tls_context() if self.https else None
                self._write_api = ReportingApi(
                    self.target, user_agent=USER_AGENT, context=context, max_body=MAX_BODY, token=self.target.token
                )
            return self._write_api
        if self._api is None:
            context = self._tls_context() if self.https else None
            self._api = ReportingApi(self.target, user_agent=USER_AGENT, context=context, max_body=MAX_BODY)
        return self._api

    def _http(self, method: str, url: str, body: bytes | None, waiting_for: str) -> HttpAnswer:
        headers = {"User-Agent": USER_AGENT, "Accept": "*/*"}
        if body is not None:
            headers["Content-Type"] = FORM_CONTENT_TYPE
        endpoint = Endpoint(url, context=self._tls_context() if self.https else None)
        with self._transport(waiting_for):
            return endpoint.exchange(method, body, headers=headers, timeout=self._remaining(), max_body=MAX_BODY)

    @contextmanager
    def _transport(self, waiting_for: str) -> Iterator[None]:
        """Network failures of one request as this step's failure, naming what it waited for."""
        try:
            yield
        except TimeoutError:
            self._timed_out(waiting_for)
        except ConnectionRefusedError:
            raise _Failed(f"connection refused on {self.host}:{self.port} ({waiting_for})") from None
        except (OSError, http.client.HTTPException) as exc:
            raise _Failed(f"{waiting_for} failed: {getattr(exc, 'strerror', None) or exc.__class__.__name__}") from None


# =============================================================================================
# Pure helpers


def render_results(results: Sequence[TargetResult], *, timeout: float, probe: bool) -> str:
    """The CLI's view: one row per target (each step ok / FAIL / - when it did not run), then the
    failed step's detail and the warnings of each target, then a verdict line."""

    steps = [name for name in STEP_NAMES if probe or name != "probe"]
    rows = []
    for result in results:
        by_name = {step.name: step for step in result.steps}
        cells = ["-" if name not in by_name else ("ok" if by_name[name].ok else "FAIL") for name in steps]
        rows.append([result.target, *cells, "ok" if result.ok else "FAIL", f"{result.seconds:.2f}"])
    sent = f"one test hit per target ('{PROBE_ACTION}')" if probe else "no tracking data sent"
    lines = [
        f"Preflight of {len(results)} target(s), {timeout:g} s each, {sent}:",
        render_table(["target", *steps, "result", "seconds"], rows),
    ]
    for result in results:
        failure = result.failure
        if failure is not None:
            lines.append(f"{result.target}: {failure.name} FAILED: {failure.detail}")
        lines.extend(f"{result.target}: warning: {warning}" for warning in result.warnings)
    failed = [result.target for result in results if not result.ok]
    if failed:
        lines.append(f"preflight: {len(failed)} of {len(results)} target(s) failed: {', '.join(failed)}")
    else:
        lines.append(f"preflight: all {len(results)} target(s) passed")
    return "\n".join(lines)


def site_warnings(target: Target, site: dict[str, Any]) -> list[str]:
    """Where the site in Matomo differs from the config in ways that skew what the run shows."""
    warnings = []
    site_id = target.site_id
    zone = str(site.get("timezone") or "")
    if zone and zone != target.timezone:
        warnings.append(
            f"site {site_id} is in time zone {zone} in Matomo, the config says {target.timezone}: "
            "Matomo's days will not match the target's daily cap and hours"
        )
    ecommerce = target.traffic.ecommerce
    sends_money = ecommerce.cart > 0 or ecommerce.order > 0 or any(goal.revenue for goal in target.traffic.goals)
    currency = str(site.get("currency") or "")
    if sends_money and currency and currency != ecommerce.currency:
        warnings.append(f"site {site_id} reports money in {currency} in Matomo, the config says {ecommerce.currency}")
    sends_ecommerce = ecommerce.cart > 0 or ecommerce.order > 0 or ecommerce.product_view > 0
    if sends_ecommerce and str(site.get("ecommerce", "1")) in ("0", "False", "false"):
        warnings.append(
            f"site {site_id} is not an ecommerce site in Matomo: its ecommerce hits will not show in reports"
        )
    return warnings


def _site_ids(data: Any, method: str) -> set[int]:
    if not isinstance(data, list):
        raise _Failed(f"{method} answered {matomo_error(data) or 'something that is not a list of site ids'}")
    try:
        return {int(str(value)) for value in data}
    except ValueError:
        raise _Failed(f"{method} answered something that is not a list of site ids") from None


def _endpoint(address: Any) -> str:
    host, port = address[0], address[1]
    return f"[{host}]:{port}" if ":" in str(host) else f"{host}:{port}"
