"""docs/receiver.md names a test for every rule: each one it names exists (and so does each replayed case)."""

import ast
import json
import re
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
DOC = HERE.parents[1] / "docs" / "receiver.md"
CASES = HERE.parents[2] / "shared" / "matomo-conformance" / "cases.json"


def _tests_of(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return {node.name for node in tree.body if isinstance(node, ast.FunctionDef) and node.name.startswith("test_")}


def test_every_test_the_doc_names_exists():
    text = DOC.read_text(encoding="utf-8")
    named = re.findall(r"`(test_\w+\.py)(?:::(test_\w+))?`|`::(test_\w+)`", text)
    assert len(named) > 40
    missing, current = [], None
    for module, function, same_module in named:
        if module:
            current = module
            assert (HERE / module).is_file(), module
        name = function or same_module
        if name and name not in _tests_of(HERE / current):
            missing.append(f"{current}::{name}")
    assert not missing


def test_every_table_row_names_a_test():
    rows = [line for line in DOC.read_text(encoding="utf-8").splitlines() if line.startswith("| ")]
    rules = [row for row in rows if not row.startswith("| rule ")]
    assert len(rules) > 30
    assert all("test_" in row.rsplit("|", 2)[-2] for row in rules), [r for r in rules if "test_" not in r]


def test_every_case_the_doc_names_was_recorded():
    if not CASES.is_file():
        pytest.skip(f"the recorded Matomo cases are not there: {CASES}")
    recorded = {case["case"] for case in json.loads(CASES.read_text(encoding="utf-8"))["cases"]}
    named = set(re.findall(r"conformance\[([\w-]+)\]", DOC.read_text(encoding="utf-8")))
    assert named and named <= recorded, named - recorded
