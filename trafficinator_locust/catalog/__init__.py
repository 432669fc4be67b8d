"""Packaged reference data for realistic visitors: devices (user agent + screen), languages.

Kept as plain tuples so the planner can draw from them without any I/O.
"""

from __future__ import annotations

from typing import NamedTuple


class Device(NamedTuple):
    """A browser on a device: what Matomo reads from ``ua`` and ``res``."""

    kind: str  # desktop | smartphone | tablet
    user_agent: str
    resolution: str


DEVICES: tuple[Device, ...] = (
    Device("desktop", "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36", "1920x1080"),
    Device("desktop", "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.1 Safari/605.1.15", "1440x900"),
    Device("desktop", "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:133.0) Gecko/20100101 Firefox/133.0", "1366x768"),
    Device("desktop", "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36 Edg/131.0.0.0", "2560x1440"),
    Device("smartphone", "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.1 Mobile/15E148 Safari/604.1", "390x844"),
    Device("smartphone", "Mozilla/5.0 (Linux; Android 14; SM-S921B) AppleWebKit/537.36 (KHTML, like Gecko) SamsungBrowser/26.0 Chrome/122.0.0.0 Mobile Safari/537.36", "360x780"),
    Device("smartphone", "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Mobile Safari/537.36", "412x915"),
    Device("tablet", "Mozilla/5.0 (iPad; CPU OS 18_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.1 Mobile/15E148 Safari/604.1", "820x1180"),
)

LANGUAGES: tuple[str, ...] = ("en-US,en;q=0.9", "en-GB,en;q=0.8", "de-DE,de;q=0.9", "fr-FR,fr;q=0.9", "sv-SE,sv;q=0.9", "es-ES,es;q=0.9", "ja-JP,ja;q=0.9")

SEARCH_TERMS: tuple[str, ...] = ("pricing", "widgets", "contact", "shipping", "returns", "gadget review", "opening hours", "discount code")

OUTLINKS: tuple[str, ...] = ("https://github.com/", "https://en.wikipedia.org/wiki/Web_analytics", "https://matomo.org/", "https://www.youtube.com/")

DOWNLOADS: tuple[str, ...] = ("/files/brochure.pdf", "/files/price-list.xlsx", "/files/manual.pdf", "/files/whitepaper.pdf")

EVENTS: tuple[tuple[str, str, str], ...] = (
    ("Video", "Play", "Product tour"),
    ("CTA", "Click", "Start free trial"),
    ("Form", "Submit", "Newsletter"),
    ("Navigation", "Click", "Main menu"),
)
