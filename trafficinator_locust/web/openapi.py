"""The OpenAPI 3 description of the plugin's web API, served at ``/api/openapi.json``.

Why a document of its own, written by hand: API clients (scripts, CI jobs) need the routes, bodies
and error answers without reading the code; a test checks that every route the blueprint serves is
described here, method by method, so the two cannot drift apart. Pure data.
"""

from __future__ import annotations

from typing import Any

__all__ = ["openapi_document"]


def _operation(
    summary: str,
    *,
    body: str | None = None,
    ok: str = "200",
    errors: tuple[int, ...] = (),
    params: tuple[dict[str, Any], ...] = (),
    answer: str | None = None,
) -> dict[str, Any]:
    schema = {"$ref": f"#/components/schemas/{answer}"} if answer else {"type": "object"}
    entry: dict[str, Any] = {
        "summary": summary,
        "responses": {ok: {"description": "OK", "content": {"application/json": {"schema": schema}}}},
    }
    guards = (403, 400, 413) if body else (403,)  # every route: Host/Origin (403); bodies: depth (400), size (413)
    for code in sorted({*errors, *guards}):
        entry["responses"][str(code)] = {"$ref": "#/components/responses/Error"}
    if body:
        entry["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{body}"}}},
        }
    if params:
        entry["parameters"] = list(params)
    return entry


_VERIFY_BODY = {
    "type": "object",
    "description": "Exactly one of report and report_path. "
    "The report is what `trafficinator backfill --report` or `--traffic-report` wrote: "
    '{"targets": [{"target": NAME, "days": {"YYYY-MM-DD": {"visits": N, "hits": M, "actions": A, '
    '"reports": {"pageviews": P, "events": E, "goals": {"2": {"conversions": C, "revenue": R}}, ...}}}}]} '
    "(actions and reports optional: an older report is checked on visits and actions only).",
    "properties": {
        "report": {"type": "object", "description": "the report document itself"},
        "report_path": {
            "type": "string",
            "description": "a report file on the server (relative to the config's folder)",
        },
        "target": {"type": "string", "description": "verify only this target of the report"},
        "threshold": {"type": "number", "minimum": 0, "exclusiveMinimum": True, "maximum": 1, "default": 0.99},
        "calls_per_minute": {"type": "number", "minimum": 0, "exclusiveMinimum": True, "default": 60},
        "timeout": {
            "type": "number",
            "minimum": 0,
            "exclusiveMinimum": True,
            "maximum": 120,
            "default": 30,
            "description": "seconds each target may wait for its Matomo, beyond the calls-per-minute pacing",
        },
    },
}


_VERIFY_ROW = {
    "type": "object",
    "description": "One report of one day: sent beside stored (money in currency units)",
    "properties": {
        "report": {
            "type": "string",
            "description": "visits, actions, pageviews, searches, outlinks, downloads, events, orders, revenue, "
            "abandoned_carts, returning_visits, goal:<id>:conversions, goal:<id>:revenue",
        },
        "label": {"type": "string", "description": "as printed by trafficinator verify (goal 2 conversions)"},
        "sent": {"type": "number"},
        "stored": {"type": "number"},
        "ok": {"type": "boolean", "description": "stored within 1 - threshold of sent, either way"},
    },
}
_VERIFY_ANSWER = {
    "type": "object",
    "properties": {
        "ok": {"type": "boolean", "description": "every target ok or not verifiable"},
        "report": {"type": "string"},
        "threshold": {"type": "number"},
        "calls_per_minute": {"type": "number"},
        "timeout": {"type": "number"},
        "problems": {
            "type": "array",
            "items": {"type": "string"},
            "description": "each failing target and day, naming every failing row "
            "(target X, 2026-12-02: goal 2 conversions 13 of 14)",
        },
        "targets": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "target": {"type": "string"},
                    "status": {"type": "string", "enum": ["ok", "short", "failed", "error", "not verifiable"]},
                    "ok": {"type": "boolean"},
                    "error": {"type": "string", "nullable": True, "description": "Matomo could not be asked"},
                    "failed": {"type": "string", "nullable": True, "description": "the report says it failed"},
                    "note": {"type": "string", "nullable": True, "description": "why it is not verifiable"},
                    "short_days": {"type": "array", "items": {"type": "string"}},
                    "days": {
                        "type": "array",
                        "items": {
                            "type": "object",
                            "properties": {
                                "day": {"type": "string", "format": "date"},
                                "ok": {"type": "boolean"},
                                "note": {"type": "string", "nullable": True},
                                "rows": {"type": "array", "items": _VERIFY_ROW},
                            },
                        },
                    },
                    "tracking_failures": {"type": "array", "items": {"type": "object"}},
                },
            },
        },
    },
}


_LEARN_BODY = {
    "type": "object",
    "required": ["from_target"],
    "description": "Learn a traffic model for target {name} from another target's reports "
    "(`trafficinator profile`, docs/profile.md): a preview, nothing changes",
    "properties": {
        "from_target": {"type": "string", "description": "the target whose Reporting API is read (its view token)"},
        "from": {"type": "string", "format": "date", "description": "first day (default: 30 days before `to`)"},
        "to": {"type": "string", "format": "date", "description": "last day (default: yesterday); at most 400 days"},
        "top": {"type": "integer", "minimum": 1, "maximum": 1000, "default": 100, "description": "pages kept"},
        "anonymize_urls": {"type": "boolean", "default": False, "description": "placeholders for paths and titles"},
        "timeout": {"type": "number", "minimum": 0, "exclusiveMinimum": True, "maximum": 300, "default": 120},
    },
}
_LEARN_ANSWER = {
    "type": "object",
    "properties": {
        "model": {"type": "object", "description": "the traffic model: PATCH it as the target's `traffic` to apply"},
        "yaml": {"type": "string", "description": "the model as `trafficinator profile` prints it, with comments"},
        "target_keys": {
            "type": "object",
            "description": "visits_per_day and profile (hours, weekdays): target keys, applied only if PATCHed too",
        },
        "notes": {"type": "array", "items": {"type": "string"}, "description": "measured, not in the model"},
        "preset_config": {
            "type": "object",
            "description": "the current config with the target's traffic replaced by the model, tokens as ${VAR}: "
            "POST it to /api/presets as `config` to save it as a preset",
        },
        "preset_warnings": {"type": "array", "items": {"type": "string"}},
    },
}


def openapi_document(base: str = "") -> dict[str, Any]:
    """An OpenAPI 3 description of the plugin's API (kept beside the routes; a test checks both agree)."""
    op = _operation
    name = {"name": "name", "in": "path", "required": True, "schema": {"type": "string"}}
    save = {
        "name": "save",
        "in": "query",
        "required": False,
        "schema": {"type": "string", "enum": ["1"]},
        "description": "also write the config file (a timestamped backup is kept)",
    }
    return {
        "openapi": "3.0.3",
        "info": {
            "title": "trafficinator control plane",
            "version": "1",
            "description": "Targets, validation, status, verification and presets of a running trafficinator Locust "
            "(docs/web-ui.md). token_auth is write-only. Every route answers 403 to a Host that is not this UI's "
            "(without a login: loopback names, or the bound address) and to an Origin or Referer of another site; "
            "bodies are at most 1 MiB (413) and JSON at most 32 levels deep (400); target and preset names are at "
            "most 100 characters, any other text 4096 (422); the config may not grow past 512 KiB (413).",
        },
        "servers": [{"url": base or "/"}],
        "paths": {
            "/api/targets": {
                "get": op('The current config\'s targets (token_auth: "set" or null)'),
                "post": op(
                    "Add a target (validated like the YAML file; applies at the next test start)",
                    body="Target",
                    ok="201",
                    errors=(400, 409, 422),
                    params=(save,),
                ),
            },
            "/api/targets/{name}": {
                "get": op("One target", errors=(404,), params=(name,)),
                "put": op(
                    "Replace a target (enabled/weight/visits_per_day apply live)",
                    body="Target",
                    errors=(400, 404, 409, 422),
                    params=(name, save),
                ),
                "patch": op(
                    "Change some keys of a target (null removes a key)",
                    body="Target",
                    errors=(400, 404, 409, 422),
                    params=(name, save),
                ),
                "delete": op(
                    "Remove a target (paused now, gone at the next test start)", errors=(404, 422), params=(name, save)
                ),
            },
            "/api/targets/{name}/learn": {
                "post": op(
                    "Preview a traffic model for this target learned from another target's aggregate reports "
                    "(nothing changes; 502: the source's Matomo cannot be read or refuses, 504: timed out, "
                    "429: 2 profiles run already)",
                    body="Learn",
                    errors=(400, 404, 422, 429, 502, 504),
                    params=(name,),
                    answer="LearnAnswer",
                )
            },
            "/api/config/save": {
                "post": op(
                    "Write the current config to its YAML file (backup kept; tokens stay ${VAR})", errors=(409, 422)
                )
            },
            "/api/validate": {
                "post": op(
                    'Preflight every target, or {"target": name}; {"probe": true} sends one test hit',
                    body="Validate",
                    errors=(400, 404, 422),
                )
            },
            "/api/verify": {
                "post": op(
                    "Ingestion check (as `trafficinator verify`): sent vs stored, report by report (visits, "
                    "actions, pageviews, events, goals, orders, ...), per target and day, through each target's "
                    "Reporting API",
                    body="Verify",
                    errors=(400, 404, 422),
                    answer="VerifyAnswer",
                )
            },
            "/api/status": {
                "get": op(
                    "Per target: state, health, visits today / cap, rates, requests, failures, p50/p95, last error"
                )
            },
            "/api/charts": {
                "get": op(
                    "Per target: the live charts as SVG (visits/min vs expected, failures, p50/p95; a ramp's "
                    "delivered and p95 vs offered) and today's progress toward the daily cap"
                )
            },
            "/api/presets": {
                "get": op("Presets (names, created/updated times, versions)"),
                "post": op(
                    'Save a preset: {"name": ..., "config": optional, else the current config}',
                    body="Preset",
                    ok="201",
                    errors=(400, 409, 422),
                ),
            },
            "/api/presets/{name}": {
                "get": op("One preset with its config (ETag: its version)", errors=(404,), params=(name,)),
                "put": op(
                    "Create or replace a preset; If-Match or version refuses a stale write (409)",
                    body="Preset",
                    errors=(400, 404, 409, 422),
                    params=(name,),
                ),
                "delete": op("Delete a preset", errors=(404, 409), params=(name,)),
            },
            "/api/presets/{name}/apply": {
                "post": op(
                    "Make a preset the current config (live where possible, the rest at the next test start)",
                    errors=(404, 422),
                    params=(name, save),
                )
            },
            "/api/openapi.json": {"get": op("This document")},
        },
        "components": {
            "schemas": {
                "Target": {
                    "type": "object",
                    "required": ["name"],
                    "description": "A target as in the YAML file (docs/configuration.md). "
                    'token_auth: a ${VAR} reference, a value (kept in memory only), "set" to keep, null to remove.',
                    "additionalProperties": True,
                },
                "Validate": {
                    "type": "object",
                    "properties": {
                        "target": {"type": "string"},
                        "probe": {"type": "boolean"},
                        "timeout": {"type": "number"},
                    },
                },
                "Verify": _VERIFY_BODY,
                "VerifyAnswer": _VERIFY_ANSWER,
                "Learn": _LEARN_BODY,
                "LearnAnswer": _LEARN_ANSWER,
                "Preset": {
                    "type": "object",
                    "properties": {
                        "name": {"type": "string"},
                        "config": {"type": "object"},
                        "version": {"type": "integer"},
                    },
                },
            },
            "responses": {
                "Error": {
                    "description": "Error",
                    "content": {
                        "application/json": {
                            "schema": {
                                "type": "object",
                                "properties": {
                                    "error": {"type": "string"},
                                    "problems": {
                                        "type": "array",
                                        "items": {
                                            "type": "object",
                                            "properties": {"path": {"type": "string"}, "message": {"type": "string"}},
                                        },
                                    },
                                },
                            }
                        }
                    },
                },
            },
        },
    }
