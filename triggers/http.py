"""What every HTTP route shares: JSON responses, the error shape, and reading status from the Durable client."""

from __future__ import annotations

import json
from typing import Any

import azure.durable_functions as df
import azure.functions as func
from azure.durable_functions.models.DurableOrchestrationStatus import DurableOrchestrationStatus

from cmk.errors import InvalidRequest

ACTIVE_STATUSES = {"Pending", "Running", "ContinuedAsNew", "Suspended"}


def json_response(status_code: int, body: Any, headers: dict[str, str] | None = None) -> func.HttpResponse:
    return func.HttpResponse(
        json.dumps(body, indent=None), status_code=status_code, mimetype="application/json", headers=headers
    )


def error_response(status_code: int, code: str, message: str, **extra: Any) -> func.HttpResponse:
    return json_response(status_code, {"error": {"code": code, "message": message}, **extra})


def invalid(error: InvalidRequest) -> func.HttpResponse:
    return json_response(400, error.to_json())


def read_json_body(req: func.HttpRequest, *, required: bool = True) -> Any:
    raw = req.get_body()
    if not raw.strip():
        if required:
            raise InvalidRequest("InvalidRequestBody", "The request body must be a JSON object.")
        return {}
    try:
        return json.loads(raw)
    except ValueError as error:
        raise InvalidRequest("InvalidJson", f"The request body is not valid JSON: {error}.") from error


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
        "createdTime": _iso(status.created_time),
        "lastUpdatedTime": _iso(status.last_updated_time),
    }


def _iso(value: Any) -> str | None:
    if value is None:
        return None
    return str(value.isoformat()) if hasattr(value, "isoformat") else str(value)


async def find_instance(client: df.DurableOrchestrationClient, instance_id: str) -> DurableOrchestrationStatus | None:
    status = await client.get_status(instance_id)
    if status is None or status.runtime_status is None:
        return None
    return status
