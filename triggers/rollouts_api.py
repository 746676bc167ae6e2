"""Fleet rollout routes: start one, read its status, and fetch its report (CSV, or JSON)."""

from __future__ import annotations

import logging
import uuid
from datetime import UTC, datetime

import azure.durable_functions as df
import azure.functions as func
from azure.durable_functions.models.DurableOrchestrationStatus import DurableOrchestrationStatus

from cmk.auth import Actor, Role
from cmk.errors import InvalidRequest
from cmk.orchestration import ROLLOUT_ORCHESTRATOR, orchestration_config
from cmk.rollouts import parse_rollout_request, report_csv
from orchestrators.rollout import RolloutInput
from triggers.http import (
    ROUTE_AUTH_LEVEL,
    authorize,
    check_query,
    error_response,
    find_instance,
    invalid,
    json_response,
    read_json_body,
    runtime_status_name,
    started_response,
    status_json,
)

bp = df.Blueprint()
logger = logging.getLogger(__name__)
ROLLOUT_PREFIX = "cmk-rollout-"


EVENT_GRID_REQUESTER: Actor = {"objectId": "", "displayName": "Event Grid (Cmk.RolloutRequested)"}


async def start_rollout(
    client: df.DurableOrchestrationClient,
    body: object,
    instance_id: str | None = None,
    requested_by: Actor = EVENT_GRID_REQUESTER,
) -> tuple[str, RolloutInput]:
    """Validate and start a rollout (shared by the HTTP route and the Event Grid trigger)."""
    request = parse_rollout_request(body)
    request["requestedBy"] = {**requested_by, "at": requested_by.get("at") or _now()}
    rollout_input: RolloutInput = {"request": request, "config": orchestration_config()}
    instance_id = instance_id or f"{ROLLOUT_PREFIX}{uuid.uuid4().hex}"
    await client.start_new(ROLLOUT_ORCHESTRATOR, instance_id, rollout_input)
    logger.info("Started rollout %s (dryRun=%s)", instance_id, request["dryRun"])
    return instance_id, rollout_input


@bp.function_name("cmk_start_rollout")
@bp.route(route="cmk/rollouts", methods=["POST"], auth_level=ROUTE_AUTH_LEVEL)
@bp.durable_client_input(client_name="client")
async def start_rollout_route(req: func.HttpRequest, client: df.DurableOrchestrationClient) -> func.HttpResponse:
    caller = authorize(req, Role.OPERATOR)
    if isinstance(caller, func.HttpResponse):
        return caller
    try:
        check_query(req)
        instance_id, _ = await start_rollout(client, read_json_body(req), requested_by=caller.actor(_now()))
    except InvalidRequest as error:
        return invalid(error)
    return started_response(req, instance_id, "cmk/rollouts")


def _now() -> str:
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


async def _find_rollout(client: df.DurableOrchestrationClient, instance_id: str) -> DurableOrchestrationStatus | None:
    status = await find_instance(client, instance_id)
    return status if status is not None and status.name == ROLLOUT_ORCHESTRATOR else None


@bp.function_name("cmk_get_rollout")
@bp.route(route="cmk/rollouts/{instanceId}", methods=["GET"], auth_level=ROUTE_AUTH_LEVEL)
@bp.durable_client_input(client_name="client")
async def get_rollout(req: func.HttpRequest, client: df.DurableOrchestrationClient) -> func.HttpResponse:
    if isinstance(denied := authorize(req, Role.READER), func.HttpResponse):
        return denied
    instance_id = req.route_params["instanceId"]
    status = await _find_rollout(client, instance_id)
    if status is None:
        return error_response(404, "RolloutNotFound", f"No rollout {instance_id}.")
    return json_response(200, status_json(status))


@bp.function_name("cmk_rollout_report")
@bp.route(route="cmk/rollouts/{instanceId}/report", methods=["GET"], auth_level=ROUTE_AUTH_LEVEL)
@bp.durable_client_input(client_name="client")
async def rollout_report(req: func.HttpRequest, client: df.DurableOrchestrationClient) -> func.HttpResponse:
    if isinstance(denied := authorize(req, Role.READER), func.HttpResponse):
        return denied
    instance_id = req.route_params["instanceId"]
    report_format = req.params.get("format", "csv")
    if report_format not in ("csv", "json"):
        return error_response(400, "InvalidFormat", 'format is "csv" (the default) or "json".')
    status = await _find_rollout(client, instance_id)
    if status is None:
        return error_response(404, "RolloutNotFound", f"No rollout {instance_id}.")
    if runtime_status_name(status) != "Completed" or not isinstance(status.output, dict):
        return error_response(
            409,
            "RolloutNotFinished",
            f"Rollout {instance_id} is {runtime_status_name(status)}; the report exists once it completes.",
            customStatus=status.custom_status,
        )
    rows = status.output.get("accounts") or []
    if report_format == "json":
        return json_response(200, {"rolloutId": instance_id, "totals": status.output.get("totals"), "accounts": rows})
    return func.HttpResponse(
        report_csv(rows),
        status_code=200,
        mimetype="text/csv",
        headers={"Content-Disposition": f'attachment; filename="{instance_id}.csv"'},
    )
