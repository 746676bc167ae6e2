"""ARM error responses: `{"error": {"code", "message"}}` with the status code ARM would use."""

from __future__ import annotations

import uuid
from typing import Any

from sandbox.azure.ids import parse_resource_id

# How Cosmos DB's resource provider ends an error message: the request's activity id and its service version.
_ACTIVITY_SUFFIX = "\r\nActivityId: {activity}, Microsoft.Azure.Documents.Common/2.14.0"


class ArmError(Exception):
    """Raised anywhere in request handling; the server turns it into an ARM error response."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        headers: dict[str, str] | None = None,
        details: list[dict[str, Any]] | None = None,
    ) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers or {}
        self.details = details

    def body(self) -> dict[str, Any]:
        error: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.details:
            error["details"] = self.details
        return {"error": error}


def resource_not_found(resource_id: str) -> ArmError:
    """ARM's 404 for a missing resource, with its real message shape."""
    parsed = parse_resource_id(resource_id)
    if parsed is None or not parsed.type_segments:
        return ArmError(404, "ResourceNotFound", f"The Resource '{resource_id}' was not found.")
    type_and_names = parsed.namespace or ""
    for type_segment, name_segment in zip(parsed.type_segments, parsed.name_segments, strict=False):
        type_and_names += f"/{type_segment}/{name_segment}"
    group = parsed.resource_group or ""
    return ArmError(
        404,
        "ResourceNotFound",
        f"The Resource '{type_and_names}' under resource group '{group}' was not found. "
        "For more details please go to https://aka.ms/ARMResourceNotFoundFix",
    )


def bad_request(message: str, code: str = "BadRequest") -> ArmError:
    return ArmError(400, code, message)


def with_activity_id(message: str) -> str:
    """`message` as Cosmos DB's resource provider words it, followed by a fresh ActivityId line."""
    return message + _ACTIVITY_SUFFIX.format(activity=uuid.uuid4())
