"""Every request under /api that no route takes: 405 with `Allow` when the path is a route's and the method is not
one of its methods (TRACE, PUT, ...), else 404; both with the error shape `{"error": {"code", "message"}}`.

The Functions host answers a known path with an unknown method 404 with an empty body (azure-functions-host
#10098), so the app answers itself: a catch-all route `{*path}` has the lowest precedence in the host's routing, so
it only sees what every other route refused. Which paths and methods exist is read from the OpenAPI document, which
a test keeps equal to the routes.
"""

from __future__ import annotations

import json
import re
from functools import cache
from urllib.parse import urlsplit

import azure.durable_functions as df
import azure.functions as func

from triggers.http import authorize, error_response
from triggers.openapi_api import OPENAPI_DOCUMENT

bp = df.Blueprint()

FALLBACK_FUNCTION = "cmk_fallback"
ROUTE_PREFIX = "/api"


@cache
def _routes() -> tuple[tuple[re.Pattern[str], frozenset[str]], ...]:
    """(path pattern, methods) for every path of the OpenAPI document."""
    document = json.loads(OPENAPI_DOCUMENT.read_text())
    routes = []
    for template, operations in document["paths"].items():
        pattern = re.sub(r"\\\{[^/]+?\\\}", "[^/]+", re.escape(template.strip("/")))
        methods = frozenset(m.upper() for m in operations if m.lower() in _HTTP_METHODS)
        routes.append((re.compile(f"{pattern}/?", re.IGNORECASE), methods))
    return tuple(routes)


_HTTP_METHODS = {"get", "put", "post", "delete", "options", "head", "patch", "trace"}


def allowed_methods(path: str) -> frozenset[str] | None:
    """The methods of the route whose template the path (under /api, without it) matches; None for no route."""
    path = path.strip("/")
    found: set[str] = set()
    matched = False
    for pattern, methods in _routes():
        if pattern.fullmatch(path):
            matched = True
            found |= methods
    return frozenset(found) if matched else None


@bp.function_name(FALLBACK_FUNCTION)
@bp.route(route="{*path}", auth_level=func.AuthLevel.ANONYMOUS)
def fallback(req: func.HttpRequest) -> func.HttpResponse:
    """Anonymous to the Functions host, so a method an anonymous path does not take is a 405 too, not a 401; it
    answers nothing but which paths and methods exist (in entra mode, only to an authenticated caller)."""
    if isinstance(denied := authorize(req, None), func.HttpResponse):
        return denied
    path = urlsplit(req.url).path
    if path.lower().startswith(ROUTE_PREFIX):
        path = path[len(ROUTE_PREFIX) :]
    methods = allowed_methods(path)
    if methods is None or req.method.upper() in methods:
        return error_response(404, "NotFound", "No route of this API has this path; see /api/openapi.json.")
    allow = ", ".join(sorted(methods))
    response = error_response(
        405, "MethodNotAllowed", f"{req.method.upper()} is not allowed here; this path takes {allow}."
    )
    response.headers["Allow"] = allow
    return response
