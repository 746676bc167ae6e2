"""Activity: is an older orchestration of this account running? Asked right before the key PATCH, so that two
orchestrations that raced past their starters' checks never both send it (coordination.account_instances)."""

from __future__ import annotations

import azure.durable_functions as df

from activities import Payload
from coordination.account_instances import older_active

FIND_OLDER_ORCHESTRATION = "find_older_orchestration"

bp = df.Blueprint()


@bp.function_name(FIND_OLDER_ORCHESTRATION)
@bp.activity_trigger(input_name="payload", activity=FIND_OLDER_ORCHESTRATION)
@bp.durable_client_input(client_name="client")
async def find_older_orchestration(payload: Payload, client: df.DurableOrchestrationClient) -> str | None:
    """payload: {"accountId", "instanceId"}. Returns the older running orchestration's instance id, or None."""
    return await older_active(client, payload["accountId"], payload["instanceId"])
