import locust  # noqa: F401  (first: gevent monkey-patching before anything imports urllib3 or requests)

import pytest


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every test in this folder starts real locust (and receiver) processes: ``-m "not e2e"`` skips them."""
    for item in items:
        if "/e2e/" in item.nodeid.replace("\\", "/") or item.nodeid.startswith("e2e/"):
            item.add_marker(pytest.mark.e2e)
