"""What Matomo reads from a visitor's device: OS, browser and version, device type; the config id.

Matomo recognises a visitor without a usable visitor id by its *config id*, a hash of the device
and the network (core/Tracker/Settings.php, ``getConfigId``/``getConfigHash``): OS, browser name
and version (from DeviceDetector), eight plugin flags as the JavaScript tracker sends them
(``fla``, ``java``, ``qt``, ``realp``, ``pdf``, ``wma``, ``ag``, ``cookie``, read by
``Request::getPlugins``; Matomo 5 puts a constant ``0`` where ``dir`` and ``gears`` used to be, so
those two never count), the IP address, the browser language (first 20 characters), a per-site
salt for the site-local day and the site id. Two user agents that name the same OS, browser and
version therefore share a fingerprint, as in Matomo; the resolution, ``_id`` and the device model
do not count.

The parser here is small and made for the user agents of the packaged catalogue
(``core/catalog/devices.json``: Chrome, Safari, Firefox, Edge, Opera, Samsung Internet on
Windows, macOS, Linux, Chrome OS, Android, iOS); ``tests/receiver/test_devices.py`` checks it
against every one of them. It is not DeviceDetector: other user agents get "" for what it cannot
tell, which still gives a stable fingerprint. Client hints (``uadata``) are not read.

Example::

    device = parse_user_agent("Mozilla/5.0 (iPhone; CPU iPhone OS 18_3_1 like Mac OS X) ... Version/18.3 ...")
    device  # Device(os='iOS', browser='Safari', version='18.3', device_type='Smartphone')
    config_id({"lang": "en-US"}, device, "10.0.0.1", "en-US", 1, date(2026, 11, 25))  # 16 hex digits
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from datetime import date
from functools import lru_cache
from typing import NamedTuple

__all__ = ["PLUGIN_FLAGS", "Device", "parse_user_agent", "config_id"]

PLUGIN_FLAGS: tuple[str, ...] = ("fla", "java", "qt", "realp", "pdf", "wma", "ag", "cookie")
"""The plugin flags Matomo's config id hashes, in its order (``Request::getPlugins``); an unsent flag is 0."""


class Device(NamedTuple):
    """What a user agent says: OS family, browser, browser version, Matomo's device type.

    Names are the catalogue's (``macOS``, ``Linux``, ``Samsung Internet``...); the device type is
    Matomo's label (``Desktop``, ``Smartphone``, ``Tablet``, ``Unknown`` for bots and the rest).
    """

    os: str
    browser: str
    version: str
    device_type: str


# Browser tokens, most specific first (Edge, Opera and Samsung Internet also carry "Chrome/").
_BROWSERS: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("Edge", re.compile(r"(?:Edg|EdgA|EdgiOS|Edge)/([\d.]+)")),
    ("Opera", re.compile(r"(?:OPR|OPX|OPT|OPiOS|Opera)/([\d.]+)")),
    ("Samsung Internet", re.compile(r"SamsungBrowser/([\d.]+)")),
    ("Firefox", re.compile(r"(?:Firefox|FxiOS)/([\d.]+)")),
    ("Chrome", re.compile(r"(?:CriOS|Chrome)/([\d.]+)")),
    ("Safari", re.compile(r"Version/([\d.]+)(?:.*?)Safari/")),
)
_BOT_HINT = re.compile(r"bot|crawler|spider|slurp", re.IGNORECASE)


def _os_of(user_agent: str) -> str:
    if "Windows" in user_agent:
        return "Windows"
    if "iPhone" in user_agent or "iPad" in user_agent or "iPod" in user_agent:
        return "iOS"
    if "Android" in user_agent:
        return "Android"
    if "CrOS" in user_agent:
        return "Chrome OS"
    if "Macintosh" in user_agent or "Mac OS X" in user_agent:
        return "macOS"
    if "Linux" in user_agent or "X11" in user_agent:
        return "Linux"
    return ""


def _device_type_of(user_agent: str, os: str) -> str:
    if _BOT_HINT.search(user_agent):
        return "Unknown"
    if "iPad" in user_agent or "Tablet" in user_agent:
        return "Tablet"
    if "iPhone" in user_agent or "iPod" in user_agent:
        return "Smartphone"
    if os == "Android":
        return "Smartphone" if "Mobile" in user_agent else "Tablet"
    if os in ("Windows", "macOS", "Linux", "Chrome OS"):
        return "Desktop"
    return "Unknown"


@lru_cache(maxsize=8192)
def parse_user_agent(user_agent: str) -> Device:
    """The :class:`Device` of a user agent ("" for what the small parser cannot tell)."""
    os = _os_of(user_agent)
    browser = version = ""
    if not _BOT_HINT.search(user_agent):
        for name, pattern in _BROWSERS:
            match = pattern.search(user_agent)
            if match:
                browser, version = name, match.group(1)
                if name == "Opera":  # DeviceDetector keeps three parts of Opera's version
                    version = ".".join(version.split(".")[:3])
                break
    return Device(os, browser, version, _device_type_of(user_agent, os))


def config_id(params: Mapping[str, str], device: Device, ip: str, language: str, site_id: int, local_day: date) -> str:
    """Matomo's config id of a hit (16 hex digits): see the module docstring for what it hashes.

    ``local_day`` is the site-local day of the hit: Matomo salts the hash per site and day when a
    visit ends at midnight (the default), so a fingerprint never matches across midnight.
    """
    flags = "".join(params.get(flag) or "0" for flag in PLUGIN_FLAGS)
    text = "\x00".join(
        (device.os, device.browser, device.version, flags, ip, language.strip().lower()[:20], str(site_id))
    )
    digest = hashlib.blake2b(f"{text}\x00{local_day.isoformat()}".encode(), digest_size=8)
    return digest.hexdigest()
