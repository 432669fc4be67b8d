"""The WSGI plumbing of the receiver: what a request carries, and writing an answer.

Reads a tracking or API request the way Matomo's PHP does: the parameters of a GET, of a form
POST (the query string wins, like ``$_GET + $_POST``), or the items of a bulk JSON POST (query
strings or objects, the top-level ``token_auth`` applied to each); the client's user agent,
language and address from the headers. Writes answers with an exact ``Content-Length`` so
keep-alive clients never wait for the connection to close. Parsing is on the hot path (one call
per hit), hence the hand-rolled query string split.

Example::

    body = get_or_post_body(environ)  # None: neither GET nor POST
    items = bulk_items(body) if is_bulk(environ, body) else [request_params(environ, body)]
    return respond_json(start_response, {"status": "success"})
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote_plus

__all__ = [
    "Environ",
    "StartResponse",
    "JSON",
    "TEXT",
    "HTML",
    "Client",
    "client_of",
    "get_or_post_body",
    "read_body",
    "request_params",
    "php_array",
    "is_bulk",
    "bulk_request",
    "bulk_items",
    "respond",
    "respond_json",
]

StartResponse = Callable[..., Any]
Environ = dict[str, Any]

JSON = "application/json; charset=utf-8"
TEXT = "text/plain; charset=utf-8"
HTML = "text/html; charset=utf-8"
_STATUS = {
    200: "200 OK",
    204: "204 No Content",
    400: "400 Bad Request",
    404: "404 Not Found",
    405: "405 Method Not Allowed",
    500: "500 Internal Server Error",
    503: "503 Service Unavailable",
}


# --- reading -------------------------------------------------------------------------------------
@dataclass
class Client:
    """What the HTTP request itself tells about the visitor (headers and peer address)."""

    user_agent: str
    language: str
    address: str


def client_of(environ: Environ) -> Client:
    return Client(
        environ.get("HTTP_USER_AGENT", ""),
        environ.get("HTTP_ACCEPT_LANGUAGE", ""),
        environ.get("REMOTE_ADDR", ""),
    )


def get_or_post_body(environ: Environ) -> bytes | None:
    """The body of a POST, ``b""`` for a GET, ``None`` for any other method (answered 405)."""
    method = environ.get("REQUEST_METHOD")
    if method == "GET":
        return b""
    return read_body(environ) if method == "POST" else None


def read_body(environ: Environ) -> bytes:
    length = environ.get("CONTENT_LENGTH") or ""
    stream = environ.get("wsgi.input")
    if stream is None:
        return b""
    if length.isdigit():
        return stream.read(int(length)) if int(length) else b""
    if environ.get("HTTP_TRANSFER_ENCODING", "").lower() == "chunked":
        return stream.read()
    return b""


def _parse_qs(text: str) -> dict[str, str]:
    """``dict(parse_qsl(text, keep_blank_values=True))``, about twice as fast (hot path)."""
    params: dict[str, str] = {}
    for pair in text.split("&"):
        if not pair:
            continue
        key, _, value = pair.partition("=")
        if "%" in key or "+" in key:
            key = unquote_plus(key)
        if "%" in value or "+" in value:
            value = unquote_plus(value)
        params[key] = value
    return params


def request_params(environ: Environ, body: bytes) -> dict[str, str]:
    """Query string and form body merged; the query string wins, like PHP's ``$_GET + $_POST``."""
    params = _parse_qs(body.decode("utf-8", "replace")) if body else {}
    query = environ.get("QUERY_STRING", "")
    if query:
        params.update(_parse_qs(query))
    return params


def php_array(environ: Environ, body: bytes, name: str) -> list[str]:
    """The values of a PHP array parameter, ``name[0]=a&name[1]=b`` or ``name[]=a&name[]=b``, in
    PHP's order (each key where it first appears; ``[]`` appends). Taken whole from the query string
    when it has any, else from the form body, as ``$_GET + $_POST`` picks one array. Needed because
    :func:`request_params` keeps one value per name."""
    for text in (environ.get("QUERY_STRING", ""), body.decode("utf-8", "replace") if body else ""):
        values = _php_array_of(text, name)
        if values:
            return values
    return []


def _php_array_of(text: str, name: str) -> list[str]:
    prefix = name + "["
    items: dict[str, str] = {}
    for pair in text.split("&"):
        key, _, value = pair.partition("=")
        key = unquote_plus(key)
        if not (key.startswith(prefix) and key.endswith("]")):
            continue
        index = key[len(prefix) : -1]
        items[index or f"\x00{len(items)}"] = unquote_plus(value)  # "[]" appends: a key no index has
    return list(items.values())


def is_bulk(environ: Environ, body: bytes) -> bool:
    """A JSON body (by content type, or a body that opens an object as Matomo sniffs it)."""
    if not body:
        return False
    return "json" in environ.get("CONTENT_TYPE", "") or body.lstrip()[:1] == b"{"


def _bulk_value(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, (list, dict)):
        return json.dumps(value)
    return "" if value is None else str(value)


def _bulk_item(item: Any) -> dict[str, str]:
    """One bulk request item (query string or object) as params; ValueError when malformed."""
    if isinstance(item, str):
        return _parse_qs(item.split("?", 1)[1] if "?" in item else item)
    if isinstance(item, dict):
        return {str(key): _bulk_value(value) for key, value in item.items()}
    raise ValueError("each bulk request must be a query string or an object")


def bulk_request(body: bytes) -> tuple[list[dict[str, str]], str]:
    """Every item of a bulk body with the top-level token applied, and that token ("" if none).

    ``json.JSONDecodeError``/``UnicodeDecodeError`` for a body that is not JSON; ValueError with
    a message of ours (never quoting the body) when it is JSON of the wrong shape.
    """
    payload = json.loads(body)
    requests = payload.get("requests") if isinstance(payload, dict) else None
    if not isinstance(requests, list):
        raise ValueError("bulk body needs a 'requests' list")
    token = payload.get("token_auth")
    if token is not None and not isinstance(token, str):
        raise ValueError("token_auth must be a string")
    items = [_bulk_item(item) for item in requests]
    if token:
        for params in items:
            params.setdefault("token_auth", token)
    return items, token or ""


def bulk_items(body: bytes) -> list[dict[str, str]]:
    """Every item of a bulk body with the top-level token applied (see :func:`bulk_request`)."""
    return bulk_request(body)[0]


# --- answering -----------------------------------------------------------------------------------
def respond(start_response: StartResponse, status: int, body: bytes = b"", ctype: str | None = None) -> list[bytes]:
    headers: list[tuple[str, str]] = []
    if status != 204:
        headers.append(("Content-Length", str(len(body))))
    if ctype:
        headers.append(("Content-Type", ctype))
    start_response(_STATUS.get(status, f"{status} Error"), headers)
    return [body] if body else []


def respond_json(start_response: StartResponse, payload: Any, status: int = 200) -> list[bytes]:
    return respond(start_response, status, json.dumps(payload).encode("utf-8"), JSON)
