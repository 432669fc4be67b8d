"""What the receiver serves: instances learned from a config's targets, the demo's defaults, token roles."""

from types import SimpleNamespace

import pytest
from pydantic import SecretStr
from receiver_client import FakeClock
from werkzeug.test import Client

from trafficinator_locust.receiver.app import ReceiverApp
from trafficinator_locust.receiver.instances import (
    ReceiverInstance,
    ReceiverSite,
    default_instances,
    instances_from_targets,
)


def test_an_unknown_role_is_refused_with_its_name():
    with pytest.raises(ValueError, match="'owner' is not one of view, write, admin"):
        ReceiverApp([ReceiverInstance("/dev", {1: ReceiverSite(1)}, roles={"t": "owner"})])


def target(name, url, site_id, tz="UTC", token=None):
    return SimpleNamespace(name=name, url=url, site_id=site_id, timezone=tz, token_auth=token)


def test_instances_from_targets_groups_loopback_targets_by_prefix():
    targets = [
        target("Dev A", "http://127.0.0.1:8765/dev/matomo.php", 1, "Asia/Tokyo", "t1"),
        target("Dev B", "http://localhost:8765/dev/matomo.php", 2, "UTC", SecretStr("t2")),
        target("Prod", "http://127.0.0.1:8765/prod/piwik.php", 1, "Europe/Stockholm"),
        target("Root", "http://127.0.0.1:8765/matomo.php", 3),
        target("Remote", "https://analytics.example.com/dev/matomo.php", 1, token="t9"),
        target("Other port", "http://127.0.0.1:9999/other/matomo.php", 1),
    ]
    instances = {i.prefix: i for i in instances_from_targets(targets, port=8765)}
    assert set(instances) == {"/dev", "/prod", ""}
    dev = instances["/dev"]
    assert set(dev.sites) == {1, 2} and dev.tokens == {"t1", "t2"}
    assert dev.sites[1].timezone == "Asia/Tokyo" and dev.sites[1].name == "Dev A"
    assert instances["/prod"].tokens == set() and instances[""].sites[3].site_id == 3
    any_port = {i.prefix for i in instances_from_targets(targets)}
    assert any_port == {"/dev", "/prod", "", "/other"}
    assert {i.prefix for i in instances_from_targets(targets, port=0)} == any_port


def test_default_instances_match_the_demo_config():
    instances = {i.prefix: i for i in default_instances()}
    assert set(instances) == {"/dev", "/staging", "/prod"}
    assert instances["/prod"].sites[1].timezone == "Asia/Tokyo"
    assert all(len(i.tokens) == 1 for i in instances.values())


def test_root_instance_serves_matomo_php_at_the_root():
    app = ReceiverApp(
        instances_from_targets([target("Root", "http://127.0.0.1:8765/matomo.php", 1)]), clock=FakeClock()
    )
    client = Client(app)
    assert client.get("/matomo.php?idsite=1&rec=1").status_code == 200
    assert client.get("/sink/stats").json[""]["sites"]["1"]["hits"] == 1
