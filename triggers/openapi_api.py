"""GET /api/openapi.json: the OpenAPI document of the HTTP API, as kept in the repo next to this module."""

from __future__ import annotations

from pathlib import Path

import azure.durable_functions as df
import azure.functions as func

from cmk.auth import Role
from triggers.http import ROUTE_AUTH_LEVEL, authorize

OPENAPI_DOCUMENT = Path(__file__).with_name("openapi.json")

bp = df.Blueprint()


@bp.function_name("cmk_openapi")
@bp.route(route="openapi.json", methods=["GET"], auth_level=ROUTE_AUTH_LEVEL)
def openapi(req: func.HttpRequest) -> func.HttpResponse:
    if isinstance(denied := authorize(req, Role.READER), func.HttpResponse):
        return denied
    return func.HttpResponse(OPENAPI_DOCUMENT.read_bytes(), status_code=200, mimetype="application/json")
