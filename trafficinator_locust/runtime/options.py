"""Reading the plugin's options from Locust's parsed options, which may be absent (tests, a bare
``Environment``) or lack an option (an older master): the default then holds::

    timeout = option(environment.parsed_options, "traffic_timeout", DEFAULT_TIMEOUT)
"""

from __future__ import annotations

from typing import Any


def option(options: Any, name: str, default: Any) -> Any:
    """``options.<name>``, or ``default`` when there are no options or no such option."""
    return getattr(options, name, default) if options is not None else default
