"""The package's folders are its layers: each may import only the layers below it (ADR 013).

    core  <  ops, receiver  <  runtime  <  web  <  cli, plugin, locustfile, demo

``core`` is pure (no Locust, gevent, Flask or network clients), ``ops`` blocks on the standard
library (the CLI's backfill runs on OS threads), and ``receiver`` needs nothing of the generator.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest
from harness import cli_in_fresh_interpreter

PACKAGE = Path(__file__).resolve().parents[2] / "trafficinator_locust"
LAYERS = ("core", "ops", "receiver", "runtime", "web")
ALLOWED = {
    "core": {"core"},
    "ops": {"core", "ops"},
    "receiver": {"core", "receiver"},
    "runtime": {"core", "ops", "runtime"},
    "web": {"core", "ops", "runtime", "web"},
}
# Third-party and standard-library modules a layer must not import (the first dotted part, or a full name).
FORBIDDEN = {
    "core": {"locust", "gevent", "geventhttpclient", "flask", "flask_login", "socket", "http", "urllib.request"},
    "ops": {"locust", "gevent", "geventhttpclient", "flask", "flask_login"},
    "receiver": {"locust", "geventhttpclient", "flask", "flask_login"},
}
# socket.inet_ntoa turns 4 bytes into a dotted quad (the fastest way, for random visitor IPs): no socket.
PURE_USES = {("core/catalog/__init__.py", "socket")}
HEAVY = ("locust", "gevent", "geventhttpclient", "flask", "flask_login", "http.client", "urllib.request")


def _imports(path: Path) -> set[str]:
    """Every module ``path`` imports, as absolute dotted names (relative imports resolved)."""
    package = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts[:-1])
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                names.add(".".join(base + ([node.module] if node.module else [])))
            else:
                names.add(node.module or "")
    return names


def _modules(layer: str) -> list[Path]:
    return sorted((PACKAGE / layer).rglob("*.py"))


@pytest.mark.parametrize("layer", LAYERS)
def test_a_layer_imports_only_the_layers_below_it(layer: str):
    wrong = []
    for path in _modules(layer):
        for name in _imports(path):
            parts = name.split(".")
            if parts[0] == "trafficinator_locust" and (len(parts) < 2 or parts[1] not in ALLOWED[layer]):
                wrong.append(f"{path.relative_to(PACKAGE)} imports {name}")
            forbidden = FORBIDDEN.get(layer, set())
            where = str(path.relative_to(PACKAGE))
            if (parts[0] in forbidden or name in forbidden) and (where, name) not in PURE_USES:
                wrong.append(f"{path.relative_to(PACKAGE)} imports {name}")
    assert not wrong, "\n".join(wrong)


def test_every_module_lives_in_a_layer_or_is_an_entry_point():
    top = sorted(path.stem for path in PACKAGE.glob("*.py"))
    assert top == ["__init__", "cli", "demo", "locustfile", "plugin"]


def test_importing_all_of_core_loads_no_locust_gevent_flask_or_network_client():
    """In a fresh interpreter, since this test process may have imported any of them already."""
    script = (
        "import importlib, pkgutil, sys\n"
        "import trafficinator_locust.core as core\n"
        "for info in pkgutil.walk_packages(core.__path__, 'trafficinator_locust.core.'):\n"
        "    importlib.import_module(info.name)\n"
        f"heavy = {HEAVY!r}\n"
        "print(sorted(m for m in sys.modules if m in heavy or m.split('.')[0] in heavy))\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]", f"core loaded: {result.stdout.strip()}"


@pytest.mark.parametrize("command", [["schema"], ["validate", "config/demo.yaml"], ["migrate"], ["verify", "--help"]])
def test_the_cli_loads_no_locust_gevent_or_flask(command: list[str]):
    """Only ``demo`` and ``sink`` run Locust or gevent; the other commands stay light and use OS threads."""
    env = {"PATH": "/usr/bin:/bin", "MATOMO_URL": "http://127.0.0.1:9/matomo.php", "MATOMO_SITE_ID": "1"}
    stderr = cli_in_fresh_interpreter(command, env, cwd=PACKAGE.parent)
    assert stderr.strip().endswith("[]"), stderr[-2000:]
