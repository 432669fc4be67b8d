"""The receiver's small user-agent parser knows every user agent of the catalogue, and the config id
(Matomo's fingerprint) hashes what Matomo's does."""

from datetime import date

import pytest

from trafficinator_locust.core import catalog
from trafficinator_locust.receiver.devices import PLUGIN_FLAGS, Device, config_id, parse_user_agent

KINDS = {"desktop": "Desktop", "smartphone": "Smartphone", "tablet": "Tablet"}
DAY = date(2026, 11, 25)


def _catalogue():
    import json
    from importlib import resources

    text = resources.files(catalog).joinpath("devices.json").read_text(encoding="utf-8")
    return json.loads(text)


def test_every_catalogue_user_agent_parses_as_declared():
    devices = _catalogue()["devices"]
    assert len(devices) > 100
    wrong = [
        (entry["user_agent"], parse_user_agent(entry["user_agent"]))
        for entry in devices
        if parse_user_agent(entry["user_agent"])
        != (entry["os"], entry["browser"], entry["browser_version"], KINDS[entry["kind"]])
    ]
    assert not wrong


def test_bots_and_unknown_user_agents_are_device_type_unknown():
    for bot in _catalogue()["bots"]:
        assert parse_user_agent(bot["user_agent"]).device_type == "Unknown"
    assert parse_user_agent("Browser A") == Device("", "", "", "Unknown")


@pytest.mark.parametrize("flag", PLUGIN_FLAGS)
def test_the_config_id_hashes_each_plugin_flag_as_sent(flag):
    device = parse_user_agent("Mozilla/5.0 (Windows NT 10.0) Chrome/131.0.0.0 Safari/537.36")
    base = config_id({}, device, "10.0.0.1", "en-US", 1, DAY)
    assert config_id({flag: "0"}, device, "10.0.0.1", "en-US", 1, DAY) == base  # unsent counts as 0
    assert config_id({flag: "1"}, device, "10.0.0.1", "en-US", 1, DAY) != base


def test_dir_and_gears_are_not_hashed_any_more():
    device = parse_user_agent("Mozilla/5.0 (Windows NT 10.0) Chrome/131.0.0.0 Safari/537.36")
    base = config_id({}, device, "10.0.0.1", "en-US", 1, DAY)
    assert config_id({"dir": "1", "gears": "1"}, device, "10.0.0.1", "en-US", 1, DAY) == base


def test_the_config_id_hashes_device_ip_language_site_and_day_not_the_rest():
    device = parse_user_agent("Mozilla/5.0 (Windows NT 10.0) Chrome/131.0.0.0 Safari/537.36")
    base = config_id({"res": "1920x1080", "_id": "0123456789abcdef"}, device, "10.0.0.1", "en-US", 1, DAY)
    assert len(base) == 16 and int(base, 16) >= 0
    assert config_id({}, device, "10.0.0.1", "EN-us", 1, DAY) == base
    others = {
        config_id({}, device._replace(version="130.0.0.0"), "10.0.0.1", "en-US", 1, DAY),
        config_id({}, device._replace(os="Linux"), "10.0.0.1", "en-US", 1, DAY),
        config_id({}, device, "10.0.0.2", "en-US", 1, DAY),
        config_id({}, device, "10.0.0.1", "de-DE", 1, DAY),
        config_id({}, device, "10.0.0.1", "en-US", 2, DAY),
        config_id({}, device, "10.0.0.1", "en-US", 1, date(2026, 11, 26)),
    }
    assert len(others) == 6 and base not in others
