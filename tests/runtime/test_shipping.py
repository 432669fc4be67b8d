"""The config travels from the master to workers (``-f -``), and a staged config replaces the classes.

The end-to-end proof (workers started as ``locust -f - --worker`` store the caps exactly) is in
test_e2e_caps.py; these tests pin the pieces: the payload round trip, a worker adopting it, the
master refusing only a worker that claims the same generation with another config, and a staged
config swapping classes and budgets while each target's count for its day carries over.
"""

from __future__ import annotations

import locust  # noqa: F401  (first: gevent monkey-patching)
from locust.env import Environment

import argparse
import time
from pathlib import Path
from types import SimpleNamespace

from trafficinator_locust.core.config import load_config
from trafficinator_locust.plugin import Plugin, awaits_shipped_config
from trafficinator_locust.runtime.config_shipping import PAYLOAD_OPTION, pack, received, unpack
from trafficinator_locust.runtime.users import AwaitingConfig, build_user_classes

TWO = """
targets:
  - {name: Alpha, url: 'http://127.0.0.1:9/a/matomo.php', site_id: 1, token_auth: secret-alpha-token,
      visits_per_day: 100}
  - {name: Beta, url: 'http://127.0.0.1:9/b/matomo.php', site_id: 2, visits_per_day: 50}
"""
THREE = TWO + "  - {name: Gamma, url: 'http://127.0.0.1:9/c/matomo.php', site_id: 3, visits_per_day: 10}\n"


def _config(write_yaml, text: str, name: str = "traffic.yaml"):
    return load_config(write_yaml(text, name=name))


def test_the_payload_round_trips_the_resolved_config(write_yaml):
    config = _config(write_yaml, TWO)
    shipment = unpack(pack(config, 3))
    assert shipment.generation == 3
    assert shipment.config.fingerprint() == config.fingerprint()
    assert [t.class_name for t in shipment.config.enabled_targets] == ["Target_Alpha", "Target_Beta"]
    assert "secret-alpha-token" not in pack(config, 0)  # compressed and encoded, never plain in a message


def test_only_a_worker_given_no_config_waits_for_the_masters():
    assert awaits_shipped_config(["-f", "-", "--worker"], env={})
    assert awaits_shipped_config([], env={"LOCUST_MODE_WORKER": "true"})
    assert not awaits_shipped_config(["--worker", "--traffic-config", "x.yaml"], env={})
    assert not awaits_shipped_config(["--worker"], env={"TRAFFICINATOR_CONFIG": "x.yaml"})
    assert not awaits_shipped_config(
        ["--worker"], env={"MATOMO_URL": "http://127.0.0.1:9/matomo.php", "MATOMO_SITE_ID": "1"}
    )
    assert not awaits_shipped_config(["--headless"], env={})


class FakeWorker:
    def __init__(self) -> None:
        self.sent: list[tuple[str, dict]] = []

    def send_message(self, msg_type: str, data: dict, client_id: str | None = None) -> None:
        self.sent.append((msg_type, data))


def test_a_worker_without_config_adopts_the_shipped_one_and_says_hello(write_yaml):
    config = _config(write_yaml, TWO)
    environment = SimpleNamespace(
        user_classes=[AwaitingConfig], runner=FakeWorker(), parsed_options=argparse.Namespace()
    )
    plugin = Plugin(config=None, user_classes={AwaitingConfig.__name__: AwaitingConfig})
    setattr(environment.parsed_options, PAYLOAD_OPTION, pack(config, 0))
    plugin._adopt_shipped(environment)  # type: ignore[arg-type]
    assert [cls.__name__ for cls in environment.user_classes] == ["Target_Alpha", "Target_Beta"]
    assert plugin.config is not None and plugin.config.fingerprint() == config.fingerprint()
    ((kind, hello),) = environment.runner.sent
    assert kind == "trafficinator:hello" and hello == plugin.identity() and hello["generation"] == 0


def test_a_worker_with_its_own_yaml_keeps_it_for_generation_0_and_adopts_a_later_one(write_yaml):
    own, staged = _config(write_yaml, TWO), _config(write_yaml, THREE, name="three.yaml")
    environment = SimpleNamespace(user_classes=[], runner=FakeWorker(), parsed_options=argparse.Namespace())
    plugin = Plugin(config=own, user_classes=build_user_classes(own, Plugin(config=own, user_classes={}).tally))
    environment.user_classes[:] = list(plugin.user_classes.values())
    setattr(environment.parsed_options, PAYLOAD_OPTION, pack(own, 0))
    plugin._adopt_shipped(environment)  # type: ignore[arg-type]
    assert environment.runner.sent == [] and plugin.generation == 0
    setattr(environment.parsed_options, PAYLOAD_OPTION, pack(staged, 1))
    plugin._adopt_shipped(environment)  # type: ignore[arg-type]
    assert [cls.__name__ for cls in environment.user_classes] == ["Target_Alpha", "Target_Beta", "Target_Gamma"]
    assert plugin.generation == 1 and environment.runner.sent[-1][1]["generation"] == 1


def _refused(plugin: Plugin, data: dict, monkeypatch) -> bool:
    """Whether the master refuses (exit code 2, quit spawned) a worker that says ``data`` in its hello."""
    import trafficinator_locust.plugin as module

    spawned: list[object] = []
    monkeypatch.setattr(module.gevent, "spawn", lambda *args, **kwargs: spawned.append(args))
    environment = SimpleNamespace(runner=None, process_exit_code=None)
    plugin._on_hello(environment, SimpleNamespace(data=data, node_id="w1"))  # type: ignore[arg-type]
    return bool(spawned) and environment.process_exit_code == 2


def test_the_master_refuses_only_a_different_config_of_the_same_generation(write_yaml, monkeypatch):
    two, three = _config(write_yaml, TWO), _config(write_yaml, THREE, name="three.yaml")
    master = Plugin(config=two, user_classes=build_user_classes(two, Plugin(config=two, user_classes={}).tally))
    other = Plugin(config=three, user_classes=build_user_classes(three, master.tally))
    assert not _refused(master, {"pending": True}, monkeypatch)
    assert not _refused(master, master.identity(), monkeypatch)
    assert _refused(master, other.identity(), monkeypatch)
    master.generation = 1  # the master staged a new config: an older worker adopts it at the next start
    assert not _refused(master, other.identity(), monkeypatch)


def test_a_staged_config_swaps_classes_and_budgets_and_keeps_the_days_counts(write_yaml, tmp_path: Path):
    two, three = _config(write_yaml, TWO), _config(write_yaml, THREE, name="three.yaml")
    plugin = Plugin(config=two, user_classes={})
    plugin.user_classes = build_user_classes(two, plugin.tally)
    options = argparse.Namespace(
        traffic_state=str(tmp_path / "state.json"),
        traffic_pacing="stress",
        traffic_shape=False,
        traffic_check=None,
        num_users=10,
    )
    environment = Environment(user_classes=list(plugin.user_classes.values()), parsed_options=options)
    environment.create_local_runner()
    plugin.register(environment)
    assert plugin.broker is not None
    assert unpack(getattr(options, PAYLOAD_OPTION)).generation == 0
    plugin.broker.ledger.lease("local", "Alpha", 30, time.time(), 30.0)

    plugin.stage_config(three)  # no test runs: applied at once

    assert [cls.__name__ for cls in environment.user_classes] == ["Target_Alpha", "Target_Beta", "Target_Gamma"]
    assert set(plugin.broker.ledger.targets) == {"Alpha", "Beta", "Gamma"}
    assert plugin.broker.ledger.budget("Alpha").granted_today(time.time()) == 30
    shipment = received(options)
    assert shipment is not None and shipment.generation == 1 and plugin.generation == 1
    assert plugin.permits is not None
    assert all(cls.permits is plugin.permits for cls in environment.user_classes)
    environment.runner.quit()


def test_the_end_of_run_grace_restarts_when_budgets_come_back(write_yaml, tmp_path: Path):
    config = _config(write_yaml, TWO)
    plugin = Plugin(config=config, user_classes={})
    plugin.user_classes = build_user_classes(config, plugin.tally)
    options = argparse.Namespace(
        traffic_state="", traffic_pacing="stress", traffic_shape=False, traffic_check=None, num_users=10
    )
    environment = Environment(user_classes=list(plugin.user_classes.values()), parsed_options=options)
    runner = environment.create_local_runner()
    plugin.register(environment)
    plugin._spent_since = 0.0  # a spend seen long ago ...
    plugin._upkeep(environment, runner)  # ... but Alpha and Beta have visits left today
    assert plugin._spent_since is None
    runner.quit()
