"""Control plane in Locust's web UI (placeholder: being built for issue 5)."""

from __future__ import annotations

from typing import Any

from locust.argument_parser import LocustArgumentParser
from locust.env import Environment


def add_web_arguments(parser: LocustArgumentParser) -> None:
    """Web-UI options of the plugin (called from plugin.add_arguments)."""


def install(environment: Environment, plugin: Any) -> None:
    """Attach the plugin's routes and tabs to Locust's Flask app (called once per environment with a web UI)."""
