"""Activity: a rollout lane gives its slot to the account orchestration it started ahead of it (input `hold`).

The lane cannot raise an event from the orchestrator itself (no I/O there), so this raises SLOT_EVENT through the
Durable client, as the approve route raises the approval. Raising it again is harmless (the orchestration reads
the first and never waits again), and so is raising it to an orchestration that has already ended (it prepared,
then ended on its own, e.g. refused by preflight): the lane then reads its outcome.
"""

from __future__ import annotations

from typing import TypedDict

import azure.durable_functions as df

from activities import Payload
from cmk.orchestration import SLOT_EVENT
from coordination.account_instances import ACTIVE_RUNTIME_STATUSES

RELEASE_ACCOUNT_SLOT = "release_account_slot"

bp = df.Blueprint()


class Release(TypedDict):
    released: bool
    runtimeStatus: str | None


async def release_slot(
    client: df.DurableOrchestrationClient, instance_id: str, lane_id: str, expected_seconds: float | None = None
) -> Release:
    event: dict[str, object] = {"laneId": lane_id}
    if expected_seconds is not None:
        event["expectedSeconds"] = expected_seconds
    try:
        await client.raise_event(instance_id, SLOT_EVENT, event)
    except Exception:
        # Gone (410): say so once the instance has ended. Running, or not found (a sub-orchestration the engine has
        # not created yet): fail, so the retry asks again.
        status = await client.get_status(instance_id)
        runtime = status.runtime_status.value if status is not None and status.runtime_status else None
        if runtime is None or runtime in ACTIVE_RUNTIME_STATUSES:
            raise
        return {"released": False, "runtimeStatus": runtime}
    return {"released": True, "runtimeStatus": None}


@bp.function_name(RELEASE_ACCOUNT_SLOT)
@bp.activity_trigger(input_name="payload", activity=RELEASE_ACCOUNT_SLOT)
@bp.durable_client_input(client_name="client")
async def release_account_slot(payload: Payload, client: df.DurableOrchestrationClient) -> Release:
    """payload: {"instanceId": the held account orchestration, "laneId": the lane giving it its slot,
    "expectedSeconds"?: its encryption's estimate as the lane's finished ones corrected it}."""
    return await release_slot(client, payload["instanceId"], payload["laneId"], payload.get("expectedSeconds"))
