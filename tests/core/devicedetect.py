"""Classify user agents with Matomo's own DeviceDetector (the ``device-detector`` port), cached.

Shared by the catalogue tests and the traffic-model tests: what Matomo will report for a visitor.
"""

import json

from device_detector import DeviceDetector
from device_detector.parser.settings import FAMILY_FROM_OS

DD_DEVICE_TYPES = {"desktop": "desktop", "smartphone": "smartphone", "phablet": "smartphone", "tablet": "tablet"}


def _hints(uadata):
    """Matomo's uadata JSON as the client hints device_detector reads."""
    data = json.loads(uadata)
    return {
        "fullVersionList": data["fullVersionList"],
        "platform": data["platform"],
        "platformVersion": data["platformVersion"],
        "model": data["model"],
        "mobile": "?1" if data["mobile"] else "?0",
    }


_CLASSIFIED: dict = {}


def classify(user_agent, uadata=None):
    """(device type, browser name, OS family, is bot) by DeviceDetector; cached per UA (+ hints)."""
    key = (user_agent, uadata)
    if key not in _CLASSIFIED:
        if uadata:
            detected = DeviceDetector(user_agent, headers=_hints(uadata)).parse()
        else:
            detected = DeviceDetector(user_agent).parse()
        short = detected.all_details.get("os", {}).get("short_name", "")
        _CLASSIFIED[key] = (
            DD_DEVICE_TYPES.get(str(detected.device_type()), str(detected.device_type())),
            detected.client_name(),
            FAMILY_FROM_OS.get(short, ""),
            detected.is_bot(),
        )
    return _CLASSIFIED[key]
