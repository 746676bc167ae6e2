"""Activity: make sure one orchestration handles an account, starting one only when none is running.

Rollout lanes call this instead of `call_sub_orchestrator` with a fixed instance id: the engine's answer to a
duplicate id has differed across Durable versions (ignored, failed, replaced), and an account already handled
by an approval-gated request, an enrolment or another rollout must be waited for, not started again.
"""

from __future__ import annotations

import azure.durable_functions as df

from activities import Payload
from coordination.account_instances import Claim, claim_account

CLAIM_ACCOUNT = "claim_account"

bp = df.Blueprint()


@bp.function_name(CLAIM_ACCOUNT)
@bp.activity_trigger(input_name="payload", activity=CLAIM_ACCOUNT)
@bp.durable_client_input(client_name="client")
async def claim_account_trigger(payload: Payload, client: df.DurableOrchestrationClient) -> Claim:
    """payload: {"input": AccountInput, "instanceId": the id to start when no orchestration of the account runs,
    "exclusive": false for dry runs, which change nothing and may run beside another orchestration}."""
    return await claim_account(
        client, payload["input"], payload["instanceId"], exclusive=payload.get("exclusive", True)
    )
