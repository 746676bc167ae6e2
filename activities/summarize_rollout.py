"""Activity: live counts of a rollout by outcome and phase, read from its lanes and their current accounts.

The rollout orchestrator cannot see its children's progress until they finish, and must not do I/O itself; this
activity reads the lanes' and in-flight accounts' custom status through the Durable client, so the rollout's own
custom status stays a handful of counters whatever the fleet size. It also counts the lanes still running, which a
rollout past its first generation follows this way.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import azure.durable_functions as df

from activities import Payload
from coordination.account_instances import ACTIVE_RUNTIME_STATUSES

SUMMARIZE_ROLLOUT = "summarize_rollout"

bp = df.Blueprint()


async def summarize(lane_ids: list[str], client: df.DurableOrchestrationClient) -> dict[str, Any]:
    by_outcome: Counter[str] = Counter()
    by_phase: Counter[str] = Counter()
    running_lanes = 0
    for lane_id in lane_ids:
        lane = await client.get_status(lane_id)
        if (
            lane is not None
            and lane.runtime_status is not None
            and lane.runtime_status.value in ACTIVE_RUNTIME_STATUSES
        ):
            running_lanes += 1
        status = lane.custom_status if lane is not None and isinstance(lane.custom_status, dict) else {}
        by_outcome.update(status.get("done") or {})
        by_phase["queued"] += int(status.get("remaining") or 0)
        # The account holding the lane's slot, and those it prepares ahead of it.
        for account in [status.get("current"), *(status.get("upcoming") or [])]:
            if isinstance(account, dict) and account.get("instanceId"):
                instance = await client.get_status(account["instanceId"])
                account_status = instance.custom_status if instance is not None else None
                phase = account_status.get("phase") if isinstance(account_status, dict) else None
                by_phase[phase or "starting"] += 1
    return {
        "byOutcome": dict(by_outcome),
        "byPhase": dict(by_phase),
        "done": sum(by_outcome.values()),
        "runningLanes": running_lanes,
    }


@bp.function_name(SUMMARIZE_ROLLOUT)
@bp.activity_trigger(input_name="payload", activity=SUMMARIZE_ROLLOUT)
@bp.durable_client_input(client_name="client")
async def summarize_rollout(payload: Payload, client: df.DurableOrchestrationClient) -> dict[str, Any]:
    """payload: {"lanes": [lane instance ids]}."""
    return await summarize(payload["lanes"], client)
