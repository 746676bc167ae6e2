"""Admin routes over orchestration instances: status, paged list, approve, reject, terminate."""

from __future__ import annotations

import base64
import hashlib
import json
import re
from datetime import UTC, datetime
from typing import Any, cast
from urllib.parse import urlencode

import aiohttp
import azure.durable_functions as df
import azure.functions as func

from cmk.auth import Actor, Role, approval_separation, same_principal
from cmk.errors import InvalidRequest, shown
from cmk.orchestration import APPROVAL_EVENT
from cmk.progress import api_time
from triggers.http import (
    ACTIVE_STATUSES,
    INSTANCE_ID,
    ROUTE_AUTH_LEVEL,
    authorize,
    check_query,
    error_response,
    find_instance,
    invalid,
    json_response,
    read_json_object,
    runtime_status_name,
    status_json,
)

bp = df.Blueprint()

CONTINUATION_HEADER = "x-ms-continuation-token"
MAX_PAGE_SIZE = 500
DEFAULT_PAGE_SIZE = 100
RUNTIME_STATUSES = {"Pending", "Running", "Completed", "Failed", "Terminated", "ContinuedAsNew", "Suspended"}


@bp.function_name("cmk_get_instance")
@bp.route(route="cmk/instances/{instanceId}", methods=["GET"], auth_level=ROUTE_AUTH_LEVEL)
@bp.durable_client_input(client_name="client")
async def get_instance(req: func.HttpRequest, client: df.DurableOrchestrationClient) -> func.HttpResponse:
    if isinstance(denied := authorize(req, Role.READER), func.HttpResponse):
        return denied
    instance_id = req.route_params["instanceId"]
    status = await find_instance(client, instance_id)
    if status is None:
        return error_response(404, "InstanceNotFound", f"No orchestration instance {instance_id}.")
    return json_response(200, status_json(status))


@bp.function_name("cmk_list_instances")
@bp.route(route="cmk/instances", methods=["GET"], auth_level=ROUTE_AUTH_LEVEL)
@bp.durable_client_input(client_name="client")
async def list_instances(req: func.HttpRequest, client: df.DurableOrchestrationClient) -> func.HttpResponse:
    """One page of instances. The SDK's get_status_by stops at 100 instances (azure-functions-durable-python
    #580), so this pages the Durable management API itself with its continuation token."""
    if isinstance(denied := authorize(req, Role.READER), func.HttpResponse):
        return denied
    try:
        query = _list_query(req)
        token = decode_continuation(req.params.get("continuationToken") or req.headers.get(CONTINUATION_HEADER))
    except InvalidRequest as error:
        return invalid(error)
    rpc_base_url = client._orchestration_bindings.rpc_base_url  # noqa: SLF001 - see docstring
    url = f"{rpc_base_url}instances/?{urlencode(query)}"
    headers = {CONTINUATION_HEADER: token} if token else {}
    async with aiohttp.ClientSession() as session, session.get(url, headers=headers) as response:
        if response.status == 400 and token:
            return invalid(_bad_token("the Durable store does not accept it"))
        if response.status != 200:
            return error_response(502, "StatusQueryFailed", f"The Durable store answered HTTP {response.status}.")
        instances: list[dict[str, Any]] = await response.json(content_type=None)
        next_token = encode_continuation(response.headers.get(CONTINUATION_HEADER))
    page = [_public_status(instance) for instance in instances]
    body = {"instances": page, "continuationToken": next_token}
    return json_response(200, body, headers={CONTINUATION_HEADER: next_token} if next_token else None)


# The Durable store's continuation token goes out wrapped with a checksum, so a token that is not one this route
# handed out (garbage, cut short, edited) is refused with 400 here instead of being read by the store as "from the
# start" or failing there.
TOKEN_VERSION = "v1"
MAX_TOKEN_LENGTH = 4096


def encode_continuation(durable_token: str | None) -> str | None:
    if not durable_token:
        return None
    encoded = base64.urlsafe_b64encode(durable_token.encode()).decode().rstrip("=")
    return f"{TOKEN_VERSION}.{encoded}.{_checksum(durable_token)}"


def decode_continuation(token: str | None) -> str | None:
    """The Durable store's token inside one this route handed out; InvalidRequest for anything else."""
    if token is None or token == "":
        return None
    if len(token) > MAX_TOKEN_LENGTH:
        raise _bad_token("it is too long")
    version, _, rest = token.partition(".")
    encoded, _, checksum = rest.partition(".")
    try:
        durable_token = base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4)).decode()
    except (ValueError, UnicodeError):
        raise _bad_token("it does not decode") from None
    if version != TOKEN_VERSION or not durable_token or token != encode_continuation(durable_token):
        raise _bad_token("its checksum does not match")
    if not durable_token.isprintable() or not durable_token.isascii():
        raise _bad_token("it holds characters a header cannot carry")
    return durable_token


def _checksum(durable_token: str) -> str:
    return hashlib.sha256(f"cmk-continuation|{durable_token}".encode()).hexdigest()[:16]


def _bad_token(why: str) -> InvalidRequest:
    return InvalidRequest(
        "InvalidContinuationToken",
        f"continuationToken is not one this API handed out ({why}); start again without it.",
    )


def _list_query(req: func.HttpRequest) -> dict[str, str]:
    query: dict[str, str] = {}
    given = req.params.get("runtimeStatus")
    statuses = [s.strip() for s in given.split(",")] if given is not None else []  # form style, unexploded
    unknown = [s for s in statuses if s not in RUNTIME_STATUSES]
    if unknown:
        raise InvalidRequest(
            "InvalidRuntimeStatus",
            f"Unknown runtimeStatus {shown(unknown)}; use any of {', '.join(sorted(RUNTIME_STATUSES))}, "
            "comma-separated.",
        )
    if statuses:
        query["runtimeStatus"] = ",".join(statuses)
    for public, durable in (("createdFrom", "createdTimeFrom"), ("createdTo", "createdTimeTo")):
        value = req.params.get(public)
        if value is not None:
            query[durable] = _rfc3339(public, value)
    top = req.params.get("top")
    size = DEFAULT_PAGE_SIZE
    if top is not None:
        if not (top.isascii() and top.isdigit()) or not 1 <= int(top) <= MAX_PAGE_SIZE:
            raise InvalidRequest("InvalidTop", f"top must be a whole number from 1 to {MAX_PAGE_SIZE}.")
        size = int(top)
    query["top"] = str(size)
    prefix = req.params.get("prefix")
    if prefix is not None:
        if not INSTANCE_ID.fullmatch(prefix):
            raise InvalidRequest(
                "InvalidPrefix", "prefix is the start of an instance id: letters, digits, '.', '_', ':', '@', '-'."
            )
        query["instanceIdPrefix"] = prefix
    return query


# RFC 3339 date-time (the OpenAPI `date-time` format): a full date, `T`, a full time and an offset.
_DATE_TIME = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt][0-9]{2}:[0-9]{2}:([0-9]{2})(\.[0-9]+)?([Zz]|[+-][0-9]{2}:[0-9]{2})"
)


def _rfc3339(name: str, value: str) -> str:
    """The time in the form the Durable store reads (ISO 8601, UTC); InvalidRequest unless RFC 3339."""
    match = _DATE_TIME.fullmatch(value)
    try:
        if match is None:
            raise ValueError(value)
        text = value.upper().replace("Z", "+00:00")
        if match.group(1) == "60":  # a leap second, which RFC 3339 allows and Python does not
            text = text[: match.start(1)] + "59" + text[match.end(1) :]
        moment = datetime.fromisoformat(text)
    except ValueError as error:
        raise InvalidRequest(
            "InvalidTime", f"{name} must be an RFC 3339 time (2026-01-31T12:00:00Z), not {shown(value)}."
        ) from error
    try:
        return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")
    except OverflowError:  # the first or last hours of years 1 and 9999, pushed past them by the offset
        return "0001-01-01T00:00:00Z" if moment.year == 1 else "9999-12-31T23:59:59.999999Z"


def _public_status(instance: dict[str, Any]) -> dict[str, Any]:
    return {
        "instanceId": instance.get("instanceId"),
        "name": instance.get("name"),
        "runtimeStatus": instance.get("runtimeStatus"),
        "customStatus": instance.get("customStatus"),
        "output": instance.get("output"),
        "createdTime": api_time(instance.get("createdTime")),
        "lastUpdatedTime": api_time(instance.get("lastUpdatedTime")),
    }


@bp.function_name("cmk_approve_instance")
@bp.route(route="cmk/instances/{instanceId}/approve", methods=["POST"], auth_level=ROUTE_AUTH_LEVEL)
@bp.durable_client_input(client_name="client")
async def approve(req: func.HttpRequest, client: df.DurableOrchestrationClient) -> func.HttpResponse:
    return await _decide(req, client, approved=True)


@bp.function_name("cmk_reject_instance")
@bp.route(route="cmk/instances/{instanceId}/reject", methods=["POST"], auth_level=ROUTE_AUTH_LEVEL)
@bp.durable_client_input(client_name="client")
async def reject(req: func.HttpRequest, client: df.DurableOrchestrationClient) -> func.HttpResponse:
    return await _decide(req, client, approved=False)


async def _decide(req: func.HttpRequest, client: df.DurableOrchestrationClient, *, approved: bool) -> func.HttpResponse:
    """The decider is the authenticated caller (an Approver), recorded with the time; by default never the
    principal that requested the account (separation of duties, CMK_APPROVAL_SEPARATION)."""
    caller = authorize(req, Role.APPROVER)
    if isinstance(caller, func.HttpResponse):
        return caller
    instance_id = req.route_params["instanceId"]
    try:
        check_query(req)
        body = read_json_object(req, required=False)
        if "by" in body:
            raise InvalidRequest(
                "InvalidRequestBody", "by is not taken: the decision is recorded as the authenticated caller's."
            )
        if set(body) - {"comment"} or not isinstance(body.get("comment", ""), str):
            raise InvalidRequest("InvalidRequestBody", 'The body, when given, is {"comment": str}.')
        _check_text(body, "comment")
    except InvalidRequest as error:
        return invalid(error)
    status = await find_instance(client, instance_id, show_input=True)
    if status is None:
        return error_response(404, "InstanceNotFound", f"No orchestration instance {instance_id}.")
    phase = (status.custom_status or {}).get("phase") if isinstance(status.custom_status, dict) else None
    if runtime_status_name(status) not in ACTIVE_STATUSES or phase != "awaitingApproval":
        return error_response(
            409, "NotAwaitingApproval", f"Instance {instance_id} is not waiting for approval (phase {phase})."
        )
    if approval_separation() and same_principal(requester(status.input_), caller):
        return error_response(
            403,
            "SeparationOfDuties",
            f"{caller.display_name} requested this account and cannot also "
            f"{'approve' if approved else 'reject'} it: another principal with the CMK.Approver role decides "
            "(CMK_APPROVAL_SEPARATION).",
        )
    by = caller.actor(datetime.now(UTC).isoformat().replace("+00:00", "Z"))
    decision = {"approved": approved, "by": by, "comment": body.get("comment")}
    await client.raise_event(instance_id, APPROVAL_EVENT, decision)
    result = "approved" if approved else "rejected"
    return json_response(202, {"instanceId": instance_id, "decision": result, "by": by})


def requester(orchestration_input: Any) -> Actor | None:
    """Who requested an account orchestration, from its input (AccountInput.request.requestedBy)."""
    if isinstance(orchestration_input, str):
        try:
            orchestration_input = json.loads(orchestration_input)
        except ValueError:
            return None
    request = orchestration_input.get("request") if isinstance(orchestration_input, dict) else None
    actor = request.get("requestedBy") if isinstance(request, dict) else None
    return cast(Actor, actor) if isinstance(actor, dict) else None


MAX_TEXT = 2000


def _check_text(body: dict[str, Any], field: str) -> None:
    if len(body.get(field) or "") > MAX_TEXT:
        raise InvalidRequest("InvalidRequestBody", f"{field} is at most {MAX_TEXT} characters.")


@bp.function_name("cmk_terminate_instance")
@bp.route(route="cmk/instances/{instanceId}/terminate", methods=["POST"], auth_level=ROUTE_AUTH_LEVEL)
@bp.durable_client_input(client_name="client")
async def terminate(req: func.HttpRequest, client: df.DurableOrchestrationClient) -> func.HttpResponse:
    if isinstance(denied := authorize(req, Role.OPERATOR), func.HttpResponse):
        return denied
    instance_id = req.route_params["instanceId"]
    try:
        check_query(req, "reason")
        body = read_json_object(req, required=False)
        if set(body) - {"reason"} or not isinstance(body.get("reason", ""), str):
            raise InvalidRequest("InvalidRequestBody", 'The body, when given, is {"reason": str}.')
        _check_text(body, "reason")
    except InvalidRequest as error:
        return invalid(error)
    reason = str(body.get("reason") or req.params.get("reason") or "terminated by an administrator")
    status = await find_instance(client, instance_id)
    if status is None:
        return error_response(404, "InstanceNotFound", f"No orchestration instance {instance_id}.")
    if runtime_status_name(status) not in ACTIVE_STATUSES:
        return error_response(409, "NotRunning", f"Instance {instance_id} is {runtime_status_name(status)}.")
    await client.terminate(instance_id, reason)
    note = "Terminating stops this orchestration only: an encryption already started goes on in Azure."
    return json_response(202, {"instanceId": instance_id, "terminated": True, "note": note})
