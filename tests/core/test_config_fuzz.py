"""Fuzzing the config loader: whatever the YAML, ``load_config`` returns a Config or raises ConfigError
(a UsageError), and ``trafficinator validate`` exits 0 or 2 without a traceback, each example in bounded
time (Hypothesis' deadline) and bounded memory (traced: :data:`MEMORY_BOUND` per example, limits: docs/limits.md).

Three kinds of input: random YAML structure (maps, lists, scalars, anchors and aliases, loops, bombs,
deep nesting, tags, inf/nan/huge numbers, control characters), near-valid configs (a valid base with
values mutated or removed, and hostile included files), and raw text. Derandomized: CI sees the same
examples every run; the whole module takes ~20 s on 2 cores.
"""

from __future__ import annotations

import contextlib
import copy
import io
import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from trafficinator_locust import cli
from trafficinator_locust.core.config import Config, json_schema, load_config
from trafficinator_locust.core.errors import MAX_SHOWN_PROBLEMS, ConfigError, UsageError

FUZZ = settings(
    derandomize=True,  # the same examples on every run: CI is reproducible
    database=None,
    deadline=2000,  # ms per example: a generous bound on "in seconds whatever the input"
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
)


ENV = {"SET": "x.example", "EMPTY": ""}
MEMORY_BOUND = 64 * 1024 * 1024
"""Bytes the loader may allocate at its peak for one example (an alias bomb took 1.9 GB before its limits)."""


def check(path: Path) -> None:
    """The properties every input must have, through the library and through the command line."""
    try:
        result = load_config(path, env=ENV)
    except ConfigError as error:
        loaded = False
        assert error.problems and all(isinstance(p.message, str) and p.message for p in error.problems)
    except UsageError:
        loaded = False
    else:
        loaded = True
        assert isinstance(result, Config) and result.enabled_targets
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = cli.main(["validate", str(path)])
    text = out.getvalue() + err.getvalue()
    assert code in (0, 2), text
    assert "Traceback" not in text
    if code == 2:
        assert len(err.getvalue().splitlines()) <= MAX_SHOWN_PROBLEMS + 2
    assert (code == 0) == loaded, text  # the same verdict (the fixture gives the process the same ENV)


@pytest.fixture(autouse=True)
def _environment(monkeypatch):
    for name, value in ENV.items():
        monkeypatch.setenv(name, value)
    for name in ("NOPE", "NOPE2", "NOPE3", "A", "B"):
        monkeypatch.delenv(name, raising=False)


# --- random YAML structure ---------------------------------------------------------------------------


def _config_keys() -> list[str]:
    schema = json_schema()
    keys = set(schema["properties"])
    for model in schema["$defs"].values():
        keys |= set(model.get("properties", {}))
    return sorted(keys)


KEYS = st.sampled_from(_config_keys()) | st.sampled_from(["<<", "? x", "'a b'", '"\\x07"', "1", "null", "[a]"])
SPECIAL_SCALARS = [
    ".inf",
    "-.inf",
    ".nan",
    ".NaN",
    "1e400",
    "1.0e+400",
    "-1.0e+400",
    "-0.0",
    "0x1F",
    "0o17",
    "1_000",
    "9" * 400,
    "-" + "9" * 4400,
    "1:30:00",
    "2020-13-45",
    "2024-02-29",
    "2023-02-29 25:61:00",
    "~",
    "yes",
    "off",
    "''",
    "!!python/object:os.system x",
    "!!python/name:os.system ''",
    "!!binary '*'",
    "!!float abc",
    "!!int 0x",
    "!!timestamp x",
    "!!map x",
    "!!seq x",
    "!local x",
    "!!str 3",
    "'${SET}'",
    "'${NOPE}'",
    "'${NOPE:-${SET}}'",
    "'${NOPE:-${NOPE2:-${NOPE3}}}'",
    "'${A'",
    "'${A:-x'",
    "'${A-b}'",
    "'$${x}'",
    "'${A:-" * 12 + "x" + "}" * 12 + "'",
    "https://m.example:99999/",
    "https://m.example:abc/",
    "'https://a b/'",
    "'http://[::1'",
    "https://user:pw@m.example/?token_auth=1",
    "/dev/zero",
    ".",
    "urls.txt",
    "events.yaml",
]
SCALARS = st.one_of(
    st.sampled_from(SPECIAL_SCALARS),
    st.integers(-(10**30), 10**30).map(str),
    st.floats(allow_nan=False, allow_infinity=False).map(repr),
    st.text(st.characters(exclude_categories=("Cs",)), max_size=12).map(json.dumps),
)


@st.composite
def yaml_node(draw: Any, depth: int = 0, anchors: list[str] | None = None) -> str:
    """A flow-style YAML node; anchors are defined in text order, so aliases refer back (or into themselves)."""
    anchors = [] if anchors is None else anchors
    kinds = ["scalar", "scalar"] + (["seq", "map"] if depth < 5 else []) + (["alias"] if anchors else [])
    kind = draw(st.sampled_from(kinds))
    if kind == "alias":
        return "*" + draw(st.sampled_from(anchors))
    prefix = ""
    if draw(st.integers(0, 3)) == 0:
        anchors.append(f"a{len(anchors)}")
        prefix = f"&{anchors[-1]} "
    if kind == "scalar":
        return prefix + draw(SCALARS)
    count = draw(st.integers(0, 4))
    if kind == "seq":
        return prefix + "[" + ", ".join(draw(yaml_node(depth + 1, anchors)) for _ in range(count)) + "]"
    items = [f"{draw(KEYS)}: {draw(yaml_node(depth + 1, anchors))}" for _ in range(count)]
    return prefix + "{" + ", ".join(items) + "}"


def alias_bomb(levels: int, fanout: int) -> str:
    lines = ["b0: &b0 [" + ", ".join(["x"] * fanout) + "]"]
    lines += [f"b{i}: &b{i} [" + ", ".join([f"*b{i - 1}"] * fanout) + "]" for i in range(1, levels)]
    return "{" + ", ".join(lines) + "}"


TARGET_HEAD = "targets:\n  - name: A\n    url: https://m.example/matomo.php\n    site_id: 1\n"
DOCUMENTS = st.one_of(
    yaml_node(),
    yaml_node().map(lambda node: TARGET_HEAD + f"    traffic: {node}\n"),
    yaml_node().map(lambda node: TARGET_HEAD + f"    traffic:\n      ecommerce: {node}\n"),
    yaml_node().map(
        lambda node: TARGET_HEAD + f"    traffic:\n      funnels: [{{name: j, share: 0.1, steps: {node}}}]\n"
    ),
    yaml_node().map(lambda node: TARGET_HEAD + f"    profile: {node}\n"),
    yaml_node().map(lambda node: f"defaults: {node}\n" + TARGET_HEAD),
    st.builds(alias_bomb, st.integers(1, 12), st.integers(1, 12)).map(lambda b: TARGET_HEAD + f"    traffic: {b}\n"),
    st.integers(0, 3000).map(lambda n: "targets: " + "[" * n + "]" * n + "\n"),
    st.integers(0, 600).map(lambda n: "targets:\n" + "".join(" " * d + "k:\n" for d in range(1, n))),
    st.integers(1, 40).map(
        lambda n: TARGET_HEAD + "    x: [" + ", ".join(f"&c{i} [*c{i - 1}]" for i in range(1, n)) + "]\n"
    ),
)


def test_random_yaml_structure_never_crashes(tmp_path):
    path = tmp_path / "fuzz.yaml"
    (tmp_path / "urls.txt").write_text("/a\n/b\tB\n")
    (tmp_path / "events.yaml").write_text("- {category: c, action: a}\n")

    @settings(FUZZ, max_examples=500)
    @given(DOCUMENTS)
    def run(text: str) -> None:
        path.write_text(text, encoding="utf-8")
        check(path)

    run()


# --- near-valid configs --------------------------------------------------------------------------------

VALID = {
    "defaults": {
        "timezone": "Europe/Paris",
        "traffic": {"pageviews": {"min": 1, "max": 4}, "dwell_seconds": {"min": 1, "max": 2}},
    },
    "visits_per_day": 1000,
    "seed": 7,
    "targets": [
        {
            "name": "A",
            "url": "https://a.example/matomo.php",
            "site_id": 1,
            "weight": 2,
            "visits_per_day": 100,
            "profile": {"hours": [1] * 24, "weekdays": [1] * 7},
            "transport": "bulk",
            "bulk_size": 50,
            "traffic": {
                "site_url": "https://www.a.example",
                "urls": ["/", {"url": "/p", "title": "P"}],
                "zipf_exponent": 1,
                "section_stickiness": 0.5,
                "pause_between_visits": {"min": 0, "max": 1},
                "visitors": {"returning": 0.3, "pool_size": 100, "logged_in": 0.1},
                "devices": {"desktop": 1, "smartphone": 1},
                "channels": {"direct": 1, "search": 2},
                "actions": {"search": 0.1, "goal": 0.1},
                "bots": 0.01,
                "languages": {"en-US": 1},
                "countries": {"US": 1},
                "events": [{"category": "c", "action": "a", "value": {"min": 1, "max": 2}, "weight": 1}],
                "goals": [{"id": 1, "revenue": {"min": 1, "max": 5}}],
                "ecommerce": {
                    "product_view": 0.2,
                    "cart": 0.1,
                    "order": 0.05,
                    "items": {"min": 1, "max": 2},
                    "quantity": {"min": 1, "max": 3},
                    "shipping": [0, 5],
                    "products": [{"sku": "s", "name": "n", "price": 3}],
                },
                "funnels": [
                    {
                        "name": "j",
                        "share": 0.1,
                        "steps": [
                            {"type": "pageview", "url": "/x", "delay": {"min": 1, "max": 2}},
                            {"type": "order", "revenue": 10},
                        ],
                    }
                ],
            },
        },
        {
            "name": "B",
            "url": "http://b.example:8080/",
            "site_id": 2,
            "token_auth": "${SET}",
            "traffic": {"urls": "urls.txt", "events": "events.yaml", "funnels": "funnels.yaml"},
        },
    ],
}
URLS_TXT = "/a\tA\n# comment\nhttps://www.b.example/c\n"
EVENTS_YAML = "- {category: Video, action: Play}\n"
FUNNELS_YAML = "journeys:\n  - name: k\n    share: 0.2\n    steps: [{type: pageview, url: /k}]\n"


def _paths(value: Any, prefix: tuple = ()) -> list[tuple]:
    found = [prefix] if prefix else []
    if isinstance(value, dict):
        for key, item in value.items():
            found += _paths(item, prefix + (key,))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found += _paths(item, prefix + (index,))
    return found


PATHS = _paths(VALID)
HOSTILE = st.one_of(
    st.sampled_from(
        [float("inf"), float("-inf"), float("nan"), 10**400, -(10**400), 2**31, 2**32, 2**63, 10**9, -1, 0, 1e12]
    ),
    st.sampled_from(["", " ", "\x00", "a\x07b", "https://m.example:99999/", "/dev/zero", ".", "${NOPE}", "${A:-${B"]),
    st.sampled_from([None, True, [], {}, [None], {"min": None, "max": None}, {"min": 5, "max": 1}, [float("nan")]]),
    st.integers(-(2**70), 2**70),
    st.floats(),
    st.text(st.characters(exclude_categories=("Cs",)), max_size=20),
    st.lists(st.floats() | st.integers(), max_size=30),
)
INCLUDED_TEXT = st.one_of(
    st.just(None),  # the valid companion file
    st.lists(
        st.sampled_from(["/a", "\tT", "https://x.example:99999/p", "/a b", "/\x07", "#c", "", "/ok\tOk"]), max_size=8
    ).map("\n".join),
    yaml_node(),
)


def _write_companions(folder: Path, urls: str | None, events: str | None, funnels: str | None) -> None:
    (folder / "urls.txt").write_text(URLS_TXT if urls is None else urls, encoding="utf-8")
    (folder / "events.yaml").write_text(EVENTS_YAML if events is None else events, encoding="utf-8")
    (folder / "funnels.yaml").write_text(FUNNELS_YAML if funnels is None else funnels, encoding="utf-8")


def _set(tree: Any, path: tuple, value: Any, delete: bool) -> None:
    for part in path[:-1]:
        tree = tree[part]
    if delete:
        del tree[path[-1]]
    else:
        tree[path[-1]] = value


def test_the_valid_base_loads(tmp_path):
    _write_companions(tmp_path, None, None, None)
    path = tmp_path / "base.yaml"
    path.write_text(yaml.safe_dump(VALID), encoding="utf-8")
    config = load_config(path, env=ENV)
    assert [t.name for t in config.targets] == ["A", "B"] and config.targets[1].traffic.journeys


def test_near_valid_configs_never_crash(tmp_path):
    path = tmp_path / "fuzz.yaml"

    @settings(FUZZ, max_examples=800)
    @given(
        st.lists(st.tuples(st.sampled_from(PATHS), HOSTILE, st.booleans()), max_size=4),
        INCLUDED_TEXT,
        INCLUDED_TEXT,
        INCLUDED_TEXT,
    )
    def run(mutations: list[tuple[tuple, Any, bool]], urls: str | None, events: str | None, funnels: str | None):
        data = copy.deepcopy(VALID)
        for target_path, value, delete in mutations:
            try:
                _set(data, target_path, value, delete)
            except (KeyError, IndexError, TypeError):  # an earlier mutation removed or replaced the parent
                pass
        _write_companions(tmp_path, urls, events, funnels)
        path.write_text(yaml.safe_dump(data, allow_unicode=False), encoding="utf-8")
        check(path)

    run()


# --- raw text --------------------------------------------------------------------------------------------


def test_raw_text_never_crashes(tmp_path):
    path = tmp_path / "fuzz.yaml"
    pieces = st.sampled_from(
        [
            "targets:",
            "\n",
            "  - ",
            "name: A",
            "url: ",
            "site_id: ",
            "[",
            "]",
            "{",
            "}",
            ":",
            "&a ",
            "*a",
            "!!",
            "'",
            '"',
        ]
    )

    @settings(FUZZ, max_examples=300)
    @given(st.lists(pieces | st.text(max_size=5), max_size=40).map("".join))
    def run(text: str) -> None:
        path.write_text(text, encoding="utf-8", errors="surrogatepass")
        check(path)

    run()


def test_memory_stays_bounded_whatever_the_yaml(tmp_path):
    """Random structure again (bombs, aliases, nesting, huge numbers), with every allocation traced."""
    import tracemalloc

    path = tmp_path / "fuzz.yaml"
    (tmp_path / "urls.txt").write_text("/a\n")

    @settings(FUZZ, max_examples=150)
    @given(DOCUMENTS)
    def run(text: str) -> None:
        path.write_text(text, encoding="utf-8")
        tracemalloc.start()
        try:
            with contextlib.suppress(UsageError):
                load_config(path, env=ENV)
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        assert peak < MEMORY_BOUND, (peak, text[:200])

    run()
