"""Serving over real sockets: keep-alive without Nagle's delay, loopback only, and ``trafficinator sink``
(ready file, the listening line, SIGTERM, a bad --loss)."""

import json
import os
import signal
import subprocess
import urllib.error
import urllib.parse
import urllib.request

import pytest
from receiver_client import CID_A, CID_B, TOKEN

from trafficinator_locust.core import protocol as p
from trafficinator_locust.receiver.app import ReceiverApp
from trafficinator_locust.receiver.instances import ReceiverInstance, ReceiverSite
from trafficinator_locust.receiver.process import receiver_command, wait_until_listening
from trafficinator_locust.receiver.server import serve
from trafficinator_locust.receiver.tracker import GIF


def test_real_server_on_loopback_with_keep_alive_answers():
    app = ReceiverApp([ReceiverInstance("/dev", {1: ReceiverSite(1)}, {TOKEN})])
    server, port = serve(app, "127.0.0.1", 0)
    try:
        base = f"http://127.0.0.1:{port}/dev"
        form = urllib.parse.urlencode({"idsite": 1, "rec": 1, "cid": CID_A, "token_auth": TOKEN}).encode()
        with urllib.request.urlopen(urllib.request.Request(f"{base}/matomo.php", data=form)) as response:
            assert response.status == 200 and response.read() == GIF
        with urllib.request.urlopen(f"{base}/matomo.php?idsite=1&rec=1&cid={CID_B}&send_image=0") as response:
            assert response.status == 204
        bulk = json.dumps({"requests": [f"?idsite=1&rec=1&cid={CID_A}", "?idsite=1&rec=1&cid=x"]}).encode()
        request = urllib.request.Request(f"{base}/matomo.php", data=bulk, headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request) as response:
            assert json.load(response) == {"status": "success", "tracked": 1, "invalid": 1}
        with pytest.raises(urllib.error.HTTPError) as rejected:
            urllib.request.urlopen(f"{base}/matomo.php?idsite=1&rec=1&cid=nothex")
        assert rejected.value.code == 400 and TOKEN.encode() not in rejected.value.read()
        with urllib.request.urlopen(f"{base}/sink/stats") as response:
            site = json.load(response)["sites"]["1"]
        assert (site["visits"], site["hits"], site["invalid"]) == (2, 3, {p.BAD_CID: 2})
    finally:
        server.stop()


def test_serve_refuses_non_loopback_hosts():
    with pytest.raises(ValueError):
        serve(ReceiverApp([]), "0.0.0.0", 0)


def test_standalone_sink_writes_ready_file_and_stops_on_sigterm(tmp_path):
    ready = tmp_path / "port"
    process = subprocess.Popen(
        receiver_command(
            "--port", "0", "--ready-file", str(ready), "--instance", "/dev", "--instance", "/prod", "--token", TOKEN
        ),
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        line = wait_until_listening(process)
        port = int(ready.read_text())
        assert line.strip() == f"sink listening on http://127.0.0.1:{port} (instances: /dev, /prod)"
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/prod/matomo.php?idsite=1&rec=1") as response:
            assert response.status == 200
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=20) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        process.stdout.close()


def test_json_answers_on_a_keep_alive_connection_are_not_held_back_by_nagle():
    import http.client
    import time as _time

    app = ReceiverApp([ReceiverInstance("/dev", {1: ReceiverSite(1)}, {TOKEN})])
    server, port = serve(app, "127.0.0.1", 0)
    try:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        body = json.dumps({"requests": [f"?idsite=1&rec=1&cid={CID_A}"], "token_auth": TOKEN}).encode()
        started = _time.perf_counter()
        for _ in range(10):
            connection.request("POST", "/dev/matomo.php", body=body, headers={"Content-Type": "application/json"})
            assert json.loads(connection.getresponse().read())["tracked"] == 1
        assert (_time.perf_counter() - started) / 10 < 0.02  # ~40 ms each with Nagle + delayed ACK
        connection.close()
    finally:
        server.stop()


def test_sink_command_refuses_a_loss_outside_0_to_1():
    result = subprocess.run(
        receiver_command("--loss", "1.5", "--port", "0"),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2 and "--loss" in result.stderr and "Traceback" not in result.stderr


def test_sink_command_fails_bulk_requests_with_fail_batches(tmp_path):
    ready = tmp_path / "port"
    process = subprocess.Popen(
        receiver_command(
            "--port",
            "0",
            "--ready-file",
            str(ready),
            "--instance",
            "/dev",
            "--token",
            TOKEN,
            "--fail-batches",
            "1",
            "--fail-seed",
            "7",
        ),
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        wait_until_listening(process)
        base = f"http://127.0.0.1:{int(ready.read_text())}/dev"
        bulk = json.dumps({"requests": [f"?idsite=1&rec=1&cid={CID_A}"], "token_auth": TOKEN}).encode()
        request = urllib.request.Request(f"{base}/matomo.php", data=bulk, headers={"Content-Type": "application/json"})
        with pytest.raises(urllib.error.HTTPError) as failed:
            urllib.request.urlopen(request)
        assert failed.value.code == 500 and json.loads(failed.value.read()) == {"status": "error", "tracked": 0}
        with urllib.request.urlopen(f"{base}/matomo.php?idsite=1&rec=1&cid={CID_B}") as response:
            assert response.status == 200  # single hits are never failed
        with urllib.request.urlopen(f"{base}/sink/stats") as response:
            stats = json.load(response)
        assert stats["failed_batches"] == 1 and stats["sites"]["1"]["visits"] == 1
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=20)
        process.stdout.close()


def test_sink_command_refuses_a_fail_batches_outside_0_to_1():
    result = subprocess.run(
        receiver_command("--fail-batches", "1.5", "--port", "0"), capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 2 and "--fail-batches" in result.stderr and "Traceback" not in result.stderr
