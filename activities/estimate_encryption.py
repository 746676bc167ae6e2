"""Activity: one round of a rollout's encryption estimates, read from Azure Monitor within the ARM read budget."""

from __future__ import annotations

from typing import Any

import azure.durable_functions as df

from activities import Payload
from cmk.arm import arm_outcomes
from cmk.rollouts import estimate_within_budget

ESTIMATE_ENCRYPTION = "estimate_encryption"

bp = df.Blueprint()


@arm_outcomes
def estimate_encryption_activity(payload: dict[str, Any]) -> Any:
    """payload: {"accounts": [ids], "armPacing": PacingInfo}. Returns EncryptionEstimates: the accounts read this
    round, and when to come back for the rest."""
    return estimate_within_budget([str(account) for account in payload["accounts"]])


@bp.function_name(ESTIMATE_ENCRYPTION)
@bp.activity_trigger(input_name="payload", activity=ESTIMATE_ENCRYPTION)
def estimate_encryption_trigger(payload: Payload) -> Any:
    return estimate_encryption_activity(payload)
