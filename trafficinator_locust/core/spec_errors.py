"""Pydantic validation errors turned into :class:`Problem` lines a user can act on.

One message per problem: what is wrong, what is allowed (for unknown keys, the allowed keys and a
did-you-mean), and the value only where it is safe to show (never a token, a URL's password or
query).
"""

from __future__ import annotations

import difflib
from typing import Any, Union, get_args, get_origin
from urllib.parse import urlsplit, urlunsplit

from pydantic import BaseModel, ValidationError

from trafficinator_locust.core.errors import Problem
from trafficinator_locust.core.yaml_source import ConfigPath, SourceDocument

_SECRET_KEYS = {"token_auth"}
_BOUNDS = {"less_than_equal": ("le", "less than or equal to"), "greater_than_equal": ("ge", "greater than or equal to")}


def problems_from_validation(
    exc: ValidationError, doc: SourceDocument, model: type[BaseModel], at: ConfigPath = (), data: Any = None
) -> list[Problem]:
    """One problem per error; ``at`` is where in ``doc`` the validated value sits (e.g. a list index).

    ``data`` is the validated input: a part of an error location that is a key of it is the user's key
    (``Targets``, ``PageSpec``), never mistaken for one of pydantic's union-branch labels.
    """
    errors = [(error, _clean_loc(error["loc"], data)) for error in exc.errors(include_url=False)]
    beyond = _locations_beyond_a_string(errors)
    problems = []
    for error, loc in errors:
        if _is_string_branch(error) and loc in beyond:
            continue  # "should be a valid string": a file name was not meant, the list's own errors say what is
        problems.append(doc.problem(at + loc, _describe(error, loc, model)))
    return problems


def _is_string_branch(error: dict[str, Any]) -> bool:
    """The ``str`` branch of a ``str | list[...]`` field (a file name or an inline list) failing."""
    return error["type"] == "string_type" and error["loc"][-1:] == ("str",)


def _locations_beyond_a_string(errors: list[tuple[dict[str, Any], ConfigPath]]) -> set[ConfigPath]:
    """Locations with a failed ``str`` branch and also a deeper error (or a too-long list) of the other branch."""
    strings = {loc for error, loc in errors if _is_string_branch(error)}
    found = set()
    for error, loc in errors:
        if _is_string_branch(error):
            continue
        for cut in range(len(loc) - 1, -1, -1):
            if loc[:cut] in strings:
                found.add(loc[:cut])
        if error["type"] == "too_long" and loc in strings:
            found.add(loc)
    return found


def _clean_loc(loc: tuple[Any, ...], data: Any = None) -> ConfigPath:
    """Drop pydantic's union-branch labels (``str``, ``list[...]``) from an error location.

    Walking ``data`` along the location, a part that is a key (or index) there is kept whatever it
    looks like; only a part that is not, and looks like a label, is dropped.
    """
    cleaned: list[str | int] = []
    current = data
    for part in loc:
        if isinstance(current, dict) and part in current:
            current = current[part]
        elif isinstance(current, list) and isinstance(part, int) and 0 <= part < len(current):
            current = current[part]
        elif isinstance(part, str) and _is_branch_label(part):
            continue
        else:
            current = None
        cleaned.append(part)
    return tuple(cleaned)


def _is_branch_label(part: str) -> bool:
    camel_case_class = part[:1].isupper() and part[1:2].islower()
    return part in {"str", "int", "float", "bool"} or camel_case_class or "[" in part or part.startswith("function-")


def _describe(error: dict[str, Any], loc: ConfigPath, model: type[BaseModel]) -> str:
    kind = error["type"]
    secret = any(part in _SECRET_KEYS for part in loc if isinstance(part, str))
    shown = "" if secret else _shown_input(error.get("input"))
    got = f" (got {shown.strip()})" if shown else ""
    if kind == "extra_forbidden" and loc:
        key = loc[-1]
        allowed = _allowed_keys(model, loc[:-1])
        guess = difflib.get_close_matches(str(key), allowed, n=1)
        hint = f" Did you mean '{guess[0]}'?" if guess else ""
        return f"unknown key '{key}'.{hint} Allowed here: {', '.join(sorted(allowed))}"
    if kind == "missing":
        return "required key is missing"
    if kind == "too_long":
        ctx = error.get("ctx", {})
        actual, limit = ctx.get("actual_length"), ctx.get("max_length")
        if isinstance(actual, int) and isinstance(limit, int):
            return f"{actual:,} entries, more than the {limit:,} allowed"
    if kind in _BOUNDS and isinstance(error.get("ctx", {}).get(_BOUNDS[kind][0]), int):  # 100,000,000: readable
        key, words = _BOUNDS[kind]
        return f"input should be {words} {error['ctx'][key]:,}{got}"
    if kind == "finite_number":
        return f"must be a finite number, not {shown.strip() or 'inf/nan'} (.inf and .nan are not numbers here)"
    if kind == "enum":
        return f"{shown}is not allowed; use one of: {error.get('ctx', {}).get('expected', '')}"
    message = error["msg"]
    if message.startswith("Value error, "):
        message = message[len("Value error, ") :]
        return f"{shown}{message}" if message.startswith(("is ", "must ")) else f"{message}{got}"
    return f"{message[:1].lower()}{message[1:]}{got}"


def _shown_input(value: Any) -> str:
    if isinstance(value, (dict, list)) or value is None:
        return ""
    if isinstance(value, str) and "://" in value:
        value = _redacted_url(value)
    text = repr(value)
    return f"{text[:60]} " if len(text) <= 60 else f"{text[:57]}... "


def _redacted_url(url: str) -> str:
    """A URL fit for an error message: no user:password, no query (it may hold a token)."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return url.split("?", 1)[0].split("@")[-1]
    query = "?..." if parts.query else ""
    return urlunsplit((parts.scheme, host + port, parts.path, "", "")) + query


def _allowed_keys(model: type[BaseModel], loc: ConfigPath) -> list[str]:
    """The field names of the model found at ``loc`` (walking lists, optionals and unions)."""
    current: Any = model
    for part in loc:
        current = _unwrap(current, want_model=isinstance(part, str))
        if isinstance(part, str) and isinstance(current, type) and issubclass(current, BaseModel):
            field = current.model_fields.get(part)
            if field is None:
                return []
            current = field.annotation
    current = _unwrap(current, want_model=True)
    if isinstance(current, type) and issubclass(current, BaseModel):
        return list(current.model_fields)
    return []


def _unwrap(annotation: Any, want_model: bool) -> Any:
    """Strip Optional/list/Union until a model (or list element) remains."""
    for _ in range(4):
        origin = get_origin(annotation)
        if origin is Union or (origin is not None and str(origin) == "<class 'types.UnionType'>"):
            options = [a for a in get_args(annotation) if a is not type(None)]
            models = [a for a in options if isinstance(a, type) and issubclass(a, BaseModel)]
            lists = [a for a in options if get_origin(a) is list]
            annotation = models[0] if want_model and models else (lists[0] if lists else options[0])
        elif origin is list:
            annotation = get_args(annotation)[0]
        else:
            return annotation
    return annotation
