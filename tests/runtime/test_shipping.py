"""The config travels from the master to workers (``-f -``), and a staged config replaces the classes.

The end-to-end proof (workers started as ``locust -f - --worker`` store the caps exactly) is in
test_e2e_caps.py; these tests pin the pieces: the payload round trip, a worker adopting it, the
master refusing only a worker that claims the same generation with another config, and a staged
config swapping classes and budgets while each target's count for its day carries over.
"""

from __future__ import annotations

import locust  # noqa: F401  (first: gevent monkey-patching)
from locust.env import Environment
from locust.runners import WorkerRunner

from gevent.pool import Group

import argparse
import time
from pathlib import Path
from types import SimpleNamespace

from trafficinator_locust.core.config import load_config
from trafficinator_locust.plugin import Plugin, awaits_shipped_config
from trafficinator_locust.runtime.config_shipping import PAYLOAD_OPTION, pack, received, unpack
from trafficinator_locust.runtime.deployment import Deployment, refusal
from trafficinator_locust.runtime.sender import Sender

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


class FakeWorker(WorkerRunner):
    """A worker runner with no master: it records what it sends."""

    def __init__(self) -> None:  # no connection, no greenlets of Locust's own
        self.sent: list[tuple[str, dict]] = []
        self.greenlet = Group()
        self.worker_index = 0

    def register_message(self, msg_type: str, listener, concurrent: bool = False) -> None:
        pass

    def send_message(self, msg_type: str, data: dict | None = None, client_id: str | None = None) -> None:
        self.sent.append((msg_type, data))


def _worker(deployment: Deployment) -> tuple[Sender, SimpleNamespace]:
    environment = SimpleNamespace(
        user_classes=list(deployment.user_classes.values()), runner=FakeWorker(), parsed_options=argparse.Namespace()
    )
    return Sender(deployment, environment), environment  # type: ignore[arg-type]


def test_a_worker_without_config_adopts_the_shipped_one_and_says_hello(write_yaml):
    config = _config(write_yaml, TWO)
    deployment = Deployment.awaiting()
    sender, environment = _worker(deployment)
    assert environment.runner.sent == [("trafficinator:hello", {"pending": True})]
    setattr(environment.parsed_options, PAYLOAD_OPTION, pack(config, 0))
    sender.adopt_shipped()
    assert [cls.__name__ for cls in environment.user_classes] == ["Target_Alpha", "Target_Beta"]
    assert deployment.config is not None and deployment.config.fingerprint() == config.fingerprint()
    kind, hello = environment.runner.sent[-1]
    assert kind == "trafficinator:hello" and hello == deployment.identity() and hello["generation"] == 0
    assert all(cls.permits is sender.permits for cls in environment.user_classes), "new classes, current permits"
    environment.runner.greenlet.kill()


def test_a_worker_with_its_own_yaml_keeps_it_for_generation_0_and_adopts_a_later_one(write_yaml):
    own, staged = _config(write_yaml, TWO), _config(write_yaml, THREE, name="three.yaml")
    deployment = Deployment.of(own)
    sender, environment = _worker(deployment)
    said = len(environment.runner.sent)
    setattr(environment.parsed_options, PAYLOAD_OPTION, pack(own, 0))
    sender.adopt_shipped()
    assert len(environment.runner.sent) == said and deployment.generation == 0
    setattr(environment.parsed_options, PAYLOAD_OPTION, pack(staged, 1))
    sender.adopt_shipped()
    assert [cls.__name__ for cls in environment.user_classes] == ["Target_Alpha", "Target_Beta", "Target_Gamma"]
    assert deployment.generation == 1 and environment.runner.sent[-1][1]["generation"] == 1
    environment.runner.greenlet.kill()


def test_the_master_refuses_only_a_different_config_of_the_same_generation(write_yaml):
    two, three = _config(write_yaml, TWO), _config(write_yaml, THREE, name="three.yaml")
    master, other = Deployment.of(two), Deployment.of(three)
    assert refusal({"pending": True}, master.identity(), 0) is None
    assert refusal(master.identity(), master.identity(), 0) is None
    reason = refusal(other.identity(), master.identity(), 0)
    assert reason is not None and "Target_Gamma" in reason
    # the master staged a new config: an older worker adopts it at the next start
    assert refusal(other.identity(), master.identity(), 1) is None


def _local(deployment: Deployment, options: argparse.Namespace) -> tuple[Plugin, Environment]:
    environment = Environment(user_classes=list(deployment.user_classes.values()), parsed_options=options)
    environment.create_local_runner()
    plugin = Plugin(deployment)
    plugin.register(environment)
    return plugin, environment


def test_a_staged_config_swaps_classes_and_budgets_and_keeps_the_days_counts(write_yaml, tmp_path: Path):
    two, three = _config(write_yaml, TWO), _config(write_yaml, THREE, name="three.yaml")
    options = argparse.Namespace(
        traffic_state=str(tmp_path / "state.json"),
        traffic_pacing="stress",
        traffic_shape=False,
        traffic_check=None,
        num_users=10,
    )
    plugin, environment = _local(Deployment.of(two), options)
    coordinator, sender = plugin.coordinator, plugin.sender
    assert coordinator is not None and coordinator.broker is not None and sender is not None
    assert unpack(getattr(options, PAYLOAD_OPTION)).generation == 0
    coordinator.broker.ledger.lease("local", "Alpha", 30, time.time(), 30.0)

    coordinator.stage_config(three)  # no test runs: applied at once

    assert [cls.__name__ for cls in environment.user_classes] == ["Target_Alpha", "Target_Beta", "Target_Gamma"]
    assert set(coordinator.broker.ledger.targets) == {"Alpha", "Beta", "Gamma"}
    assert coordinator.broker.ledger.budget("Alpha").granted_today(time.time()) == 30
    shipment = received(options)
    assert shipment is not None and shipment.generation == 1 and plugin.deployment.generation == 1
    assert sender.permits is not None
    assert all(cls.permits is sender.permits for cls in environment.user_classes)
    environment.runner.quit()


def test_the_end_of_run_grace_restarts_when_budgets_come_back(write_yaml, tmp_path: Path):
    options = argparse.Namespace(
        traffic_state="", traffic_pacing="stress", traffic_shape=False, traffic_check=None, num_users=10
    )
    plugin, environment = _local(Deployment.of(_config(write_yaml, TWO)), options)
    coordinator = plugin.coordinator
    assert coordinator is not None
    coordinator._spent_since = 0.0  # a spend seen long ago ...
    coordinator._upkeep()  # ... but Alpha and Beta have visits left today
    assert coordinator._spent_since is None
    environment.runner.quit()
