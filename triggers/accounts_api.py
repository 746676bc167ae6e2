"""POST /api/cmk/accounts: enable CMK on one account (or plan it, with dryRun)."""

from __future__ import annotations

import logging

import azure.durable_functions as df
import azure.functions as func

from cmk.errors import InvalidRequest
from cmk.orchestration import ACCOUNT_ORCHESTRATOR, AccountInput, account_instance_id, orchestration_config
from cmk.requests import parse_enablement_request
from triggers.http import ACTIVE_STATUSES, error_response, find_instance, invalid, read_json_body, runtime_status_name

bp = df.Blueprint()
logger = logging.getLogger(__name__)


@bp.function_name("cmk_start_account")
@bp.route(route="cmk/accounts", methods=["POST"], auth_level=func.AuthLevel.FUNCTION)
@bp.durable_client_input(client_name="client")
async def start_account(req: func.HttpRequest, client: df.DurableOrchestrationClient) -> func.HttpResponse:
    try:
        request = parse_enablement_request(read_json_body(req))
    except InvalidRequest as error:
        return invalid(error)
    instance_id = account_instance_id(request["accountId"])
    existing = await find_instance(client, instance_id)
    if existing is not None and runtime_status_name(existing) in ACTIVE_STATUSES:
        return _already_running(client, instance_id)
    orchestration_input: AccountInput = {"request": request, "config": orchestration_config()}
    try:
        await client.start_new(ACCOUNT_ORCHESTRATOR, instance_id, orchestration_input)
    except Exception as error:
        # Two requests raced past the check above: the Durable store refuses the second start.
        again = await find_instance(client, instance_id)
        if again is not None and runtime_status_name(again) in ACTIVE_STATUSES:
            return _already_running(client, instance_id)
        raise error
    logger.info("Started %s for %s (dryRun=%s)", instance_id, request["accountId"], request.get("dryRun", False))
    response: func.HttpResponse = client.create_check_status_response(req, instance_id)
    return response


def _already_running(client: df.DurableOrchestrationClient, instance_id: str) -> func.HttpResponse:
    return error_response(
        409,
        "AlreadyRunning",
        f"An orchestration for this account is already running ({instance_id}); query it instead of starting another.",
        id=instance_id,
        **{"statusQueryGetUri": client.create_http_management_payload(instance_id)["statusQueryGetUri"]},
    )
