"""Activity: before a rollout lane starts an account orchestration, is one of that account running already?

A lane never relies on the engine's answer to a duplicate instance id (which has differed across Durable versions:
ignored, failed, replaced): it asks here first. An account already handled by an approval-gated request, an
enrolment or another rollout is waited for, not started again; otherwise the lane starts the orchestration itself,
under an id never used before, with the input returned here (which follows any encryption an earlier
orchestration of the account left running).
"""

from __future__ import annotations

import azure.durable_functions as df

from activities import Payload
from coordination.account_instances import Preparation, prepare_start

PREPARE_ACCOUNT_START = "prepare_account_start"

bp = df.Blueprint()


@bp.function_name(PREPARE_ACCOUNT_START)
@bp.activity_trigger(input_name="payload", activity=PREPARE_ACCOUNT_START)
@bp.durable_client_input(client_name="client")
async def prepare_account_start(payload: Payload, client: df.DurableOrchestrationClient) -> Preparation:
    """payload: {"input": AccountInput, "exclusive": false for dry runs, which change nothing and may run beside
    another orchestration of the account}."""
    return await prepare_start(client, payload["input"], exclusive=payload.get("exclusive", True))
