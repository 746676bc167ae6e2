"""Activity: the accounts of a rollout, through Resource Graph, with their expected encryption time."""

from __future__ import annotations

from typing import Any

import azure.durable_functions as df

from activities import Payload
from cmk.arm import arm_outcomes
from cmk.rollouts import discover_accounts

DISCOVER_ACCOUNTS = "discover_accounts"

bp = df.Blueprint()


@arm_outcomes
def discover_accounts_activity(payload: dict[str, Any]) -> Any:
    """payload: {"accounts"?: [ids], "scope"?: RolloutScope, "key"?: RolloutKey}. Returns a Discovery."""
    return discover_accounts(payload.get("accounts"), payload.get("scope"), payload.get("key"))


@bp.function_name(DISCOVER_ACCOUNTS)
@bp.activity_trigger(input_name="payload", activity=DISCOVER_ACCOUNTS)
def discover_accounts_trigger(payload: Payload) -> Any:
    return discover_accounts_activity(payload)
