"""POST /api/cmk/accounts: enable CMK on one account (or plan it, with dryRun)."""

from __future__ import annotations

import logging
import uuid
from datetime import UTC, datetime

import azure.durable_functions as df
import azure.functions as func

from cmk.auth import Role
from cmk.errors import InvalidRequest
from cmk.orchestration import AccountInput, account_instance_id, orchestration_config
from cmk.requests import parse_enablement_request
from coordination.account_instances import claim_account
from triggers.http import (
    ROUTE_AUTH_LEVEL,
    authorize,
    check_query,
    error_response,
    invalid,
    read_json_body,
    started_response,
)

bp = df.Blueprint()
logger = logging.getLogger(__name__)


@bp.function_name("cmk_start_account")
@bp.route(route="cmk/accounts", methods=["POST"], auth_level=ROUTE_AUTH_LEVEL)
@bp.durable_client_input(client_name="client")
async def start_account(req: func.HttpRequest, client: df.DurableOrchestrationClient) -> func.HttpResponse:
    caller = authorize(req, Role.OPERATOR)
    if isinstance(caller, func.HttpResponse):
        return caller
    try:
        check_query(req)
        request = parse_enablement_request(read_json_body(req))
    except InvalidRequest as error:
        return invalid(error)
    request["requestedBy"] = caller.actor(datetime.now(UTC).isoformat().replace("+00:00", "Z"))
    orchestration_input: AccountInput = {"request": request, "config": orchestration_config()}
    # A new id for every start; the claim finds an orchestration of this account that is already running.
    instance_id = account_instance_id(request["accountId"], uuid.uuid4().hex[:12])
    claim = await claim_account(client, orchestration_input, instance_id, exclusive=not request.get("dryRun"))
    if not claim["started"]:
        return _already_running(req, claim["instanceId"])
    logger.info("Started %s for %s (dryRun=%s)", instance_id, request["accountId"], request.get("dryRun", False))
    return started_response(req, instance_id, "cmk/instances")


def _already_running(req: func.HttpRequest, instance_id: str) -> func.HttpResponse:
    return error_response(
        409,
        "AlreadyRunning",
        f"An orchestration for this account is already running ({instance_id}); query it instead of starting another.",
        id=instance_id,
        statusQueryGetUri=f"{req.url.split('/api/', 1)[0]}/api/cmk/instances/{instance_id}",
    )
