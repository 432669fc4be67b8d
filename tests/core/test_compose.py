"""docker-compose.yml, checked without Docker (no engine here): structure, paths, no secrets.

The compose file is what users scale with (`--scale worker=N`); a typo in a path or a token pasted
into it would only show on their machine, so its structure is pinned here.
"""

import re
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]
COMPOSE = yaml.safe_load((REPO / "docker-compose.yml").read_text())
DEFAULT = re.compile(r"\$\{(\w+):-([^}]*)\}")


def _expand_defaults(text: str) -> str:
    return DEFAULT.sub(lambda match: match.group(2), text)


def test_master_and_scalable_worker_share_one_image_and_config():
    services = COMPOSE["services"]
    assert {"master", "worker"} <= set(services)
    master, worker = services["master"], services["worker"]
    assert master["build"] == worker["build"] == "."
    assert (
        "--master" in master["command"]
        and "--worker" in worker["command"]
        and "--master-host master" in worker["command"]
    )
    assert "ports" not in worker and "container_name" not in worker, "a scaled service must not pin a port or a name"
    assert master["environment"]["TRAFFICINATOR_CONFIG"] == worker["environment"]["TRAFFICINATOR_CONFIG"]


def test_the_locustfile_and_mounted_config_exist_in_the_repository():
    dockerfile = (REPO / "Dockerfile").read_text()
    assert "COPY locustfiles /opt/trafficinator/locustfiles" in dockerfile
    for service in (COMPOSE["services"]["master"], COMPOSE["services"]["worker"]):
        locustfile = service["command"].split("-f ", 1)[1].split()[0]
        assert (
            locustfile.startswith("/opt/trafficinator/")
            and (REPO / locustfile.removeprefix("/opt/trafficinator/")).is_file()
        )
        source, target, mode = _expand_defaults(service["volumes"][0]).split(":")
        assert (REPO / source).is_dir() and target == "/config" and mode == "ro"
        config = _expand_defaults(service["environment"]["TRAFFICINATOR_CONFIG"]).removeprefix("/config/")
        assert (REPO / source / config).is_file()


def test_no_secret_in_compose_or_env_example():
    text = (REPO / "docker-compose.yml").read_text()
    assert "token_auth" not in text.lower() and not re.search(r"TOKEN\w*\s*[:=]\s*\S", text)
    for line in (REPO / ".env.example").read_text().splitlines():
        if "TOKEN" in line and not line.startswith("#"):
            assert line.split("=", 1)[1].strip() == "", f".env.example must not carry a token: {line.split('=')[0]}"
    assert ".env" in (REPO / ".gitignore").read_text().split()


def test_the_matomo_profile_brings_a_local_matomo_the_compose_config_aims_at(tmp_path):
    services = COMPOSE["services"]
    matomo, mariadb = services["matomo"], services["mariadb"]
    assert matomo["profiles"] == mariadb["profiles"] == ["matomo"], "Matomo only starts when asked for"
    assert matomo["image"].startswith("matomo:") and mariadb["image"].startswith("mariadb:")
    assert all(port.startswith("127.0.0.1:") for port in matomo["ports"]), "the local Matomo listens on loopback only"
    assert matomo["environment"]["MATOMO_DATABASE_HOST"] == "mariadb"
    assert _expand_defaults(matomo["environment"]["MATOMO_DATABASE_PASSWORD"]) == _expand_defaults(
        mariadb["environment"]["MARIADB_PASSWORD"]
    )
    env_example = dict(
        line.split("=", 1)
        for line in (REPO / ".env.example").read_text().splitlines()
        if "=" in line and not line.startswith("#")
    )
    config_file = REPO / "config" / env_example["TRAFFIC_CONFIG_FILE"].strip()
    assert config_file.is_file() and "MATOMO_TOKEN" in env_example
    from trafficinator_locust.core.config import load_config

    config = load_config(config_file, env={"MATOMO_TOKEN": "filled-in-by-the-user"})
    assert {target.url for target in config.enabled_targets} == {"http://matomo/matomo.php"}, (
        "containers reach the profile's Matomo by its service name"
    )
    assert all(target.has_token for target in config.enabled_targets)
