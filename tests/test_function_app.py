"""The app indexes as the Functions host will index it, and the OpenAPI document matches the routes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import function_app

OPENAPI = json.loads(Path("triggers/openapi.json").read_text())
FUNCTIONS = function_app.app.get_functions()  # indexing twice raises with blueprints: do it once


def _bindings(function: Any) -> list[dict[str, Any]]:
    bindings: list[dict[str, Any]] = function.get_bindings_dict()["bindings"]
    return bindings


def test_every_function_is_registered_once_with_the_expected_trigger() -> None:
    triggers = {
        function.get_function_name(): next(b["type"] for b in _bindings(function) if b["type"].endswith("Trigger"))
        for function in FUNCTIONS
    }
    assert len(triggers) == len(FUNCTIONS)
    assert triggers["cmk_account"] == "orchestrationTrigger"
    for activity in ("preflight", "ensure_identity", "grant_key_access", "enable_cmk", "poll_operation", "verify_cmk"):
        assert triggers[activity] == "activityTrigger"
    assert triggers["cmk_start_account"] == "httpTrigger"


def test_every_http_route_is_in_the_openapi_document_and_back() -> None:
    routes: set[tuple[str, str]] = set()
    for function in FUNCTIONS:
        if function.get_function_name() == "cmk_fallback":  # every method of every other path: 404 or 405
            continue
        for binding in _bindings(function):
            if binding["type"] == "httpTrigger":
                # The dashboard's page and files hold no data and need no key (triggers/dashboard_api.py).
                anonymous = function.get_function_name() in ("cmk_dashboard", "cmk_dashboard_asset")
                assert binding["authLevel"].name == ("ANONYMOUS" if anonymous else "FUNCTION"), (
                    function.get_function_name()
                )
                for method in binding["methods"]:
                    routes.add((f"/{binding['route']}", str(getattr(method, "value", method)).lower()))
    documented = {(path, method) for path, operations in OPENAPI["paths"].items() for method in operations}
    assert routes == documented
