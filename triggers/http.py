"""What every HTTP route shares: JSON responses, the error shape, and reading status from the Durable client."""

from __future__ import annotations

import json
import re
from typing import Any

import azure.durable_functions as df
import azure.functions as func
from azure.durable_functions.models.DurableOrchestrationStatus import DurableOrchestrationStatus

from cmk.auth import ENTRA, Caller, Role, Unauthenticated, auth_mode, caller_from_headers
from cmk.errors import InvalidRequest, shown
from cmk.progress import api_time

ACTIVE_STATUSES = {"Pending", "Running", "ContinuedAsNew", "Suspended"}
MAX_BODY_BYTES = 1024 * 1024
MAX_JSON_DEPTH = 32
JSON_MEDIA_TYPE = re.compile(r"application/(?:[\w.+-]+\+)?json", re.IGNORECASE)
# What this app's instance ids are made of (cmk-<account>-<digest>.<suffix>, cmk-rollout-<hex>[-lane-<n>]), with
# room for ids other starters may use; nothing that would change the meaning of the status URL it is put in.
INSTANCE_ID = re.compile(r"[A-Za-z0-9._:@-]{1,256}")


def json_response(status_code: int, body: Any, headers: dict[str, str] | None = None) -> func.HttpResponse:
    return func.HttpResponse(
        json.dumps(body, indent=None), status_code=status_code, mimetype="application/json", headers=headers
    )


def error_response(status_code: int, code: str, message: str, **extra: Any) -> func.HttpResponse:
    return json_response(status_code, {"error": {"code": code, "message": message}, **extra})


def invalid(error: InvalidRequest) -> func.HttpResponse:
    return json_response(error.status, error.to_json())


def read_json_body(req: func.HttpRequest, *, required: bool = True) -> Any:
    """The body as JSON, refused (InvalidRequest) when larger than MAX_BODY_BYTES (413), not JSON, or nested
    deeper than MAX_JSON_DEPTH (400). An empty body is `{}` unless `required`."""
    raw = req.get_body()
    if len(raw) > MAX_BODY_BYTES:
        raise InvalidRequest(
            "RequestBodyTooLarge",
            f"The request body has {len(raw)} bytes; at most {MAX_BODY_BYTES} (1 MiB) are accepted.",
            status=413,
        )
    if not raw.strip():
        if required:
            raise InvalidRequest("InvalidRequestBody", "The request body must be a JSON object.")
        return {}
    media_type = (req.headers.get("content-type") or "").split(";", 1)[0].strip()
    if not JSON_MEDIA_TYPE.fullmatch(media_type):
        raise InvalidRequest(
            "UnsupportedMediaType",
            f"The request body must be JSON, sent with Content-Type: application/json (not {shown(media_type)}).",
            status=415,
        )
    try:
        body = json.loads(raw)
    except RecursionError as error:
        raise InvalidRequest("InvalidJson", f"The request body nests deeper than {MAX_JSON_DEPTH} levels.") from error
    except ValueError as error:  # also bytes that are not UTF-8
        raise InvalidRequest("InvalidJson", f"The request body is not valid JSON: {error}.") from error
    if json_depth(body) > MAX_JSON_DEPTH:
        raise InvalidRequest("InvalidJson", f"The request body nests deeper than {MAX_JSON_DEPTH} levels.")
    return body


def check_query(req: func.HttpRequest, *accepted: str) -> None:
    """Routes that change something take no query parameter but theirs (and `code`, the function key)."""
    unknown = sorted(set(req.params) - {*accepted, "code"})
    if unknown:
        raise InvalidRequest(
            "UnknownParameter",
            f"Unknown query parameter(s) {shown(unknown)}; this route takes {', '.join(accepted) or 'none'}.",
        )


def read_json_object(req: func.HttpRequest, *, required: bool = True) -> dict[str, Any]:
    """The body as a JSON object (see read_json_body); anything else is a 400."""
    body = read_json_body(req, required=required)
    if not isinstance(body, dict):
        raise InvalidRequest("InvalidRequestBody", "The request body must be a JSON object.")
    return body


def json_depth(value: Any) -> int:
    """How deeply a parsed JSON value nests (a scalar is 0, `[]` and `{}` are 1), without recursion."""
    deepest = 0
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children: Any = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        deepest = max(deepest, depth + 1)
        if deepest > MAX_JSON_DEPTH:
            return deepest
        stack.extend((child, depth + 1) for child in children)
    return deepest


# The Functions host's auth level of every route, fixed when the app is indexed. In entra mode App Service
# Authentication is the gate (a caller needs a token, not a function key) and the app checks the caller's app roles;
# in functionKey mode the host checks a function key. The Durable and Event Grid system endpoints keep their system
# keys in both modes (they are excluded from App Service Authentication).
ROUTE_AUTH_LEVEL = func.AuthLevel.ANONYMOUS if auth_mode() == ENTRA else func.AuthLevel.FUNCTION


def authorize(req: func.HttpRequest, role: Role | None) -> Caller | func.HttpResponse:
    """The caller, when it may use a route that needs `role` (None: any authenticated caller); else the 401 or
    403 to answer, with nothing started or changed."""
    try:
        caller = caller_from_headers(req.headers)
    except Unauthenticated as error:
        return error_response(401, "Unauthenticated", str(error))
    if role is not None and not caller.may(role):
        held = ", ".join(sorted(caller.roles)) or "none"
        return error_response(
            403,
            "Forbidden",
            f"This needs the app role {role.value}; {caller.display_name} holds {held}. An administrator assigns "
            "app roles to people and to automation (docs/deploy.md).",
        )
    return caller


def started_response(req: func.HttpRequest, instance_id: str, status_path: str) -> func.HttpResponse:
    """202 for a new orchestration, pointing at this API's own status route. Not the Durable check-status payload:
    its links carry the Durable system key, which would let any caller raise the approval event past the roles."""
    base = req.url.split("/api/", 1)[0]
    status_url = f"{base}/api/{status_path}/{instance_id}"
    return json_response(202, {"id": instance_id, "statusQueryGetUri": status_url}, headers={"Location": status_url})


def runtime_status_name(status: DurableOrchestrationStatus) -> str | None:
    runtime_status = status.runtime_status
    return runtime_status.value if runtime_status is not None else None


def status_json(status: DurableOrchestrationStatus) -> dict[str, Any]:
    """The public shape of an instance: what admins and the CLI read (plain JSON, stable keys)."""
    return {
        "instanceId": status.instance_id,
        "name": status.name,
        "runtimeStatus": runtime_status_name(status),
        "customStatus": status.custom_status,
        "output": status.output,
        "createdTime": api_time(status.created_time),
        "lastUpdatedTime": api_time(status.last_updated_time),
    }


async def find_instance(
    client: df.DurableOrchestrationClient, instance_id: str, *, show_input: bool = False
) -> DurableOrchestrationStatus | None:
    """The instance, or None when there is none; an id no instance can have is not looked up at all."""
    if not INSTANCE_ID.fullmatch(instance_id):
        return None
    status = await client.get_status(instance_id, show_input=show_input)
    if status is None or status.runtime_status is None:
        return None
    return status
