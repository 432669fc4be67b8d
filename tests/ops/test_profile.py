"""``trafficinator profile`` against a stand-in Matomo: the YAML it prints validates, and every failure
is one line, exit 2, no traceback and never the token."""

from __future__ import annotations

import json
import textwrap
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qsl

import pytest
import yaml
from harness import cli_in_fresh_interpreter, small_site_day

from trafficinator_locust.receiver.process import free_port

TOKEN = "view-tok-5b1e-never-print"
DAYS = ("2026-11-02", "2026-11-03")


class StandIn(BaseHTTPRequestHandler):
    error: str | None = None
    seen: list[str] = []

    def log_message(self, *args: object) -> None:
        pass

    def do_POST(self) -> None:  # noqa: N802 (http.server's name)
        body = self.rfile.read(int(self.headers["Content-Length"])).decode()
        form = dict(parse_qsl(body))
        StandIn.seen.append(self.path)
        if form.get("token_auth") != TOKEN:
            answer: object = {
                "result": "error",
                "message": "You can't access this resource as it requires 'view' access",
            }
        elif StandIn.error:
            answer = {"result": "error", "message": StandIn.error}
        elif form["method"] == "Goals.getGoals":
            answer = {"1": {"idgoal": "1", "name": "Signup", "allow_multiple": "0"}}
        elif form["method"] == "API.getBulkRequest":
            answer = []
            for index in range(len(form)):
                url = form.get(f"urls[{index}]")
                if url is None:
                    break
                params = dict(parse_qsl(url))
                answer.append({day: small_site_day(params["method"], params) for day in DAYS})
        else:
            answer = {"result": "error", "message": "unknown method"}
        data = json.dumps(answer).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


@pytest.fixture
def matomo() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), StandIn)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    StandIn.error, StandIn.seen = None, []
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def _config(tmp_path: Path, url: str, token: str | None = "${PROD_VIEW_TOKEN}") -> Path:
    key = f"\n    report_token_auth: {token}" if token else ""
    path = tmp_path / "prod.yaml"
    path.write_text(f"targets:\n  - name: Prod\n    url: {url}/matomo.php\n    site_id: 4{key}\n", encoding="utf-8")
    return path


def _profile(run_cli, *args: str, env: dict[str, str] | None = None):
    return run_cli("profile", *args, "--from", DAYS[0], "--to", DAYS[1], env=env)


def test_profile_prints_a_model_that_validates_as_a_staging_target(run_cli, matomo, tmp_path):
    result = _profile(run_cli, str(_config(tmp_path, matomo)), "--target", "prod", env={"PROD_VIEW_TOKEN": TOKEN})
    assert result.returncode == 0, result.stderr
    model = yaml.safe_load(result.stdout)
    assert model["urls"] == [{"url": "/", "weight": 66.667}, {"url": "/pricing", "weight": 33.333}]
    assert model["channels"]["search"] == 40.0 and model["visitors"] == {"returning": 0.2}
    assert model["goals"] == [{"id": 1, "weight": 100.0, "revenue": {"min": 2.5, "max": 7.5}}]
    assert all(path == "/index.php" for path in StandIn.seen) and len(StandIn.seen) == 2  # two calls, token in bodies
    staging = tmp_path / "staging.yaml"
    staging.write_text(
        "targets:\n  - name: Staging\n    url: https://staging.example/matomo.php\n    site_id: 1\n    traffic:\n"
        + textwrap.indent(result.stdout, "      "),
        encoding="utf-8",
    )
    checked = run_cli("validate", str(staging))
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_profile_by_url_reads_the_token_from_the_environment(run_cli, matomo):
    result = _profile(run_cli, "--url", matomo + "/", "--site-id", "4", "--top", "1", env={"MATOMO_TOKEN_AUTH": TOKEN})
    assert result.returncode == 0, result.stderr
    assert [entry["url"] for entry in yaml.safe_load(result.stdout)["urls"]] == ["/"]
    assert TOKEN not in result.stdout + result.stderr


def test_anonymized_profile_names_neither_paths_nor_the_matomo(run_cli, matomo):
    result = _profile(run_cli, "--url", matomo, "--site-id", "4", "--anonymize-urls", env={"MATOMO_TOKEN_AUTH": TOKEN})
    assert result.returncode == 0, result.stderr
    assert "pricing" not in result.stdout and "prod.example" not in result.stdout and "127.0.0.1" not in result.stdout
    assert [entry["url"] for entry in yaml.safe_load(result.stdout)["urls"]] == ["/", "/section-1"]


@pytest.mark.parametrize(
    "case, message",
    [
        ("reversed-dates", "is before --from"),
        ("unknown-target", "no target named 'Stage'"),
        ("no-token", "no token"),
        ("matomo-error", "Matomo says: SQL error near token_auth=***"),
        ("wrong-token", "requires 'view' access"),
        ("unreachable", "cannot reach"),
        ("both-forms", "not both"),
    ],
)
def test_profile_failures_exit_2_in_one_line_without_the_token(run_cli, matomo, tmp_path, case, message):
    env = {"PROD_VIEW_TOKEN": TOKEN}
    config = str(_config(tmp_path, matomo))
    args = [config, "--target", "Prod", "--from", DAYS[0], "--to", DAYS[1]]
    if case == "reversed-dates":
        args[-3], args[-1] = DAYS[1], DAYS[0]
    elif case == "unknown-target":
        args[2] = "Stage"
    elif case == "no-token":
        args[0] = str(_config(tmp_path, matomo, token=None))
    elif case == "matomo-error":
        StandIn.error = f"SQL error near token_auth={TOKEN}: {TOKEN}"
    elif case == "wrong-token":
        env = {"PROD_VIEW_TOKEN": "some-other-token"}
    elif case == "unreachable":
        args[0] = str(_config(tmp_path, f"http://127.0.0.1:{free_port()}"))
    elif case == "both-forms":
        args += ["--url", matomo, "--site-id", "1"]
    result = run_cli("profile", *args, env=env)
    output = result.stdout + result.stderr
    assert result.returncode == 2, output
    assert message in result.stderr and "Traceback" not in output and TOKEN not in output
    assert result.stdout == ""


def test_a_bad_date_is_a_usage_error(run_cli, matomo, tmp_path):
    result = run_cli("profile", str(_config(tmp_path, matomo)), "--target", "Prod", "--from", "2026-13-01", "--to", "x")
    assert result.returncode == 2 and "is not a date like" in result.stderr and "Traceback" not in result.stderr


def test_profile_loads_no_locust_gevent_or_flask():
    """The command stays light (OS threads, standard library HTTP), like validate and verify."""
    argv = ["profile", "--url", "http://127.0.0.1:9/", "--site-id", "1", "--from", "2026-11-02", "--to", "2026-11-03"]
    stderr = cli_in_fresh_interpreter([*argv, "--timeout", "2"], {"PATH": "/usr/bin:/bin", "MATOMO_TOKEN_AUTH": TOKEN})
    assert "cannot reach" in stderr and stderr.strip().endswith("[]"), stderr[-2000:]
