"""Presets in SQLite: CRUD, versions, tokens only as references, and two concurrent writers.

The concurrency test runs two real processes against one file: each does read-modify-write
cycles quoting the version it read and retries when the store says it is stale. No update may be
lost and the file must stay intact.
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from trafficinator_locust.core.errors import PresetExists, PresetInvalid, PresetNotFound, StalePreset
from trafficinator_locust.web.presets import PresetStore, check_name, env_reference, strip_tokens

CONFIG = {"targets": [{"name": "A", "url": "http://127.0.0.1:9/a", "site_id": 1, "token_auth": "${A_TOKEN}"}]}


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        self.now += 1
        return self.now


@pytest.fixture()
def store(tmp_path: Path) -> PresetStore:
    return PresetStore(tmp_path / "state" / "presets.sqlite3", clock=Clock())


def test_create_get_list_and_times(store: PresetStore):
    created = store.create("Weekday", CONFIG)
    assert (created.version, created.created == created.updated) == (1, True)
    store.create("alpha", CONFIG)
    assert [p.name for p in store.list()] == ["alpha", "Weekday"]  # case-insensitive order
    got = store.get("weekday")  # names are case-insensitive
    assert got.name == "Weekday" and got.config == CONFIG
    entry = got.as_dict()
    assert entry["created"].endswith("+00:00") and entry["targets"] == ["A"] and entry["config"] == CONFIG
    assert "config" not in got.as_dict(with_config=False)
    with pytest.raises(PresetExists, match="Weekday"):
        store.create("WEEKDAY", CONFIG)


def test_save_creates_or_replaces_and_versions_refuse_stale_writes(store: PresetStore):
    preset, created = store.save("p", CONFIG)
    assert created and preset.version == 1
    changed = {"targets": [{**CONFIG["targets"][0], "site_id": 2}]}
    preset, created = store.save("p", changed, expected_version=1)
    assert not created and preset.version == 2 and preset.updated > preset.created
    with pytest.raises(StalePreset, match="version 2, not 1") as stale:
        store.save("p", CONFIG, expected_version=1)
    assert stale.value.current == 2 and store.get("p").config == changed
    with pytest.raises(PresetNotFound):
        store.save("gone", CONFIG, expected_version=1)
    with pytest.raises(StalePreset):
        store.delete("p", expected_version=1)
    store.delete("p", expected_version=2)
    with pytest.raises(PresetNotFound):
        store.get("p")
    with pytest.raises(PresetNotFound):
        store.delete("p")


def test_tokens_are_stored_only_as_bare_references(store: PresetStore):
    config = {
        "defaults": {"token_auth": "${SHARED:-shared-default-secret}"},
        "targets": [
            {"name": "Ref", "url": "u", "site_id": 1, "token_auth": "${REF_TOKEN}"},
            {"name": "Literal", "url": "u", "site_id": 2, "token_auth": "literal-secret-value"},
            {"name": "Empty", "url": "u", "site_id": 3, "token_auth": ""},
        ],
    }
    clean, warnings = strip_tokens(config)
    assert clean["defaults"]["token_auth"] == "${SHARED}"
    assert [t.get("token_auth") for t in clean["targets"]] == ["${REF_TOKEN}", None, None]
    assert len(warnings) == 1 and "Literal" in warnings[0]
    assert config["targets"][1]["token_auth"] == "literal-secret-value"  # the input is not changed
    store.create("clean", clean)
    for bad in (config, {"targets": [{"name": "x", "token_auth": "${A:-x}"}]}):
        with pytest.raises(PresetInvalid, match="bare"):
            store.create("dirty", bad)
    raw = store.path.read_bytes()
    assert b"literal-secret-value" not in raw and b"shared-default-secret" not in raw


def test_env_reference_and_names():
    assert env_reference("${A_1}") == "A_1" and env_reference("${B:-x}") == "B"
    assert env_reference("x${A}") is None and env_reference(None) is None and env_reference("$A") is None
    assert check_name("Week day 1") == "Week day 1"
    for bad in ("", " lead", "trail ", "a/b", "x" * 101, "tab\there", None, 7):
        with pytest.raises(PresetInvalid):
            check_name(bad)


def test_presets_survive_a_new_store_on_the_same_file(tmp_path: Path):
    path = tmp_path / "presets.sqlite3"
    PresetStore(path).create("kept", CONFIG)
    reopened = PresetStore(path)
    assert reopened.get("kept").config == CONFIG


def test_an_unusable_file_is_a_clear_error(tmp_path: Path):
    path = tmp_path / "not-a-db.sqlite3"
    path.write_text("this is not SQLite " * 100)
    with pytest.raises(Exception, match="presets file"):
        PresetStore(path)


WRITER = textwrap.dedent(
    """
    import json, sys
    from trafficinator_locust.web.presets import PresetStore, StalePreset
    store = PresetStore(sys.argv[1])
    me, rounds = sys.argv[2], int(sys.argv[3])
    retries = 0
    for i in range(rounds):
        while True:
            preset = store.get("shared")
            config = preset.config
            config["targets"][0]["traffic"]["log"].append(f"{me}-{i}")
            try:
                store.save("shared", config, expected_version=preset.version)
                break
            except StalePreset:
                retries += 1
        store.save(f"{me}-{i}", {"targets": []})  # plain writes interleaved with the other process
    print(json.dumps({"retries": retries}))
    """
)


def test_two_concurrent_writers_lose_no_update_and_keep_the_file_intact(tmp_path: Path):
    path = tmp_path / "presets.sqlite3"
    PresetStore(path).create("shared", {"targets": [{"name": "A", "traffic": {"log": []}}]})
    rounds = 100
    writers = [
        subprocess.Popen(
            [sys.executable, "-c", WRITER, str(path), name, str(rounds)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for name in ("one", "two")
    ]
    outputs = [w.communicate(timeout=120) for w in writers]
    for writer, (_out, err) in zip(writers, outputs):
        assert writer.returncode == 0, err
    store = PresetStore(path)
    shared = store.get("shared")
    log = shared.config["targets"][0]["traffic"]["log"]
    assert sorted(log) == sorted(f"{who}-{i}" for who in ("one", "two") for i in range(rounds))
    assert shared.version == 1 + 2 * rounds
    assert len(store.list()) == 1 + 2 * rounds
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    print("stale retries:", [json.loads(out)["retries"] for out, _ in outputs])
