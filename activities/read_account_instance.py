"""Activity: where an account orchestration stands, for a rollout lane that waits on it."""

from __future__ import annotations

import azure.durable_functions as df

from activities import Payload
from coordination.account_instances import InstanceReading, read_instance

READ_ACCOUNT_INSTANCE = "read_account_instance"

bp = df.Blueprint()


@bp.function_name(READ_ACCOUNT_INSTANCE)
@bp.activity_trigger(input_name="payload", activity=READ_ACCOUNT_INSTANCE)
@bp.durable_client_input(client_name="client")
async def read_account_instance(payload: Payload, client: df.DurableOrchestrationClient) -> InstanceReading:
    """payload: {"instanceId"}."""
    return await read_instance(client, payload["instanceId"])
