"""Keeping ``token_auth`` out of what people see: error texts, status rows, API answers.

Why a module of its own: the control plane, bulk answers, preflight and verify show text that came
from elsewhere (Locust's error strings, a Matomo's messages, tracking-failure rows), and any of it may
quote a token. Masking by
value (every token the process knows) and by shape (any ``token_auth=...`` parameter) in one place
keeps the rule the same everywhere. Pure.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

__all__ = ["mask_secrets", "mask_strings"]

_TOKEN_PARAM = re.compile(r"(token_auth=)[^&\s\"']+")


def mask_secrets(text: str, values: Iterable[str]) -> str:
    """``text`` with every secret value and any ``token_auth=...`` parameter replaced by ``***``."""
    for value in sorted((v for v in values if v), key=len, reverse=True):
        text = text.replace(value, "***")
    return _TOKEN_PARAM.sub(r"\1***", text)


def mask_strings(value: Any, values: Iterable[str]) -> Any:
    """A copy of JSON-like ``value`` (dicts, lists, scalars) with :func:`mask_secrets` applied to
    every string in it, keys included: for answers built from text a server sent."""
    secrets = list(values)
    if isinstance(value, str):
        return mask_secrets(value, secrets)
    if isinstance(value, dict):
        return {mask_secrets(str(k), secrets): mask_strings(v, secrets) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [mask_strings(item, secrets) for item in value]
    return value
