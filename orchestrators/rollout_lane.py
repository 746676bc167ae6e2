"""A rollout lane: enables its accounts one after another, each as its own per-account sub-orchestration.

One lane is one unit of concurrency. A failing account is recorded and the lane moves on; the lane bounds its
history with continue_as_new, carrying the rows it has so far.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Generator
from typing import Any, TypedDict

import azure.durable_functions as df

from cmk.fleet import PlannedAccount
from cmk.orchestration import (
    ACCOUNT_ORCHESTRATOR,
    LANE_ORCHESTRATOR,
    AccountInput,
    OrchestrationConfig,
    account_instance_id,
)
from cmk.requests import EnablementRequest
from cmk.rollouts import ReportRow, report_row, unplanned_row
from orchestrators.steps import first_line

bp = df.Blueprint()

ACCOUNTS_PER_GENERATION = 25


class LaneTemplate(TypedDict, total=False):
    dryRun: bool
    identity: str


class LaneInput(TypedDict):
    rolloutId: str
    lane: int
    accounts: list[PlannedAccount]
    template: LaneTemplate
    config: OrchestrationConfig
    position: int
    rows: list[ReportRow]


@bp.orchestration_trigger(context_name="context", orchestration=LANE_ORCHESTRATOR)
def cmk_rollout_lane(context: df.DurableOrchestrationContext) -> Generator[Any, Any, list[ReportRow] | None]:
    return (yield from run_lane(context))


def run_lane(context: df.DurableOrchestrationContext) -> Generator[Any, Any, list[ReportRow] | None]:
    lane: LaneInput = context.get_input()  # type: ignore[assignment]  # the rollout built it
    accounts, rows = lane["accounts"], lane["rows"]
    handled = 0
    while lane["position"] < len(accounts):
        account = accounts[lane["position"]]
        instance_id = account_instance_id(account["accountId"])
        _report(context, lane, rows, instance_id, account["accountId"])
        request: EnablementRequest = {"accountId": account["accountId"], "keyUri": account["keyUri"]}
        template = lane["template"]
        if template.get("dryRun"):
            request["dryRun"] = True
        if "identity" in template:
            request["identity"] = template["identity"]
        child_input: AccountInput = {"request": request, "config": lane["config"]}
        try:
            output = yield context.call_sub_orchestrator(ACCOUNT_ORCHESTRATOR, child_input, instance_id)
            rows.append(report_row(output, instance_id))
        except Exception as error:  # one account's failure never stops the others
            rows.append(unplanned_row(account["accountId"], "Failed", first_line(error), account["keyUri"]))
            rows[-1]["instanceId"] = instance_id
        lane["position"] += 1
        handled += 1
        if handled >= ACCOUNTS_PER_GENERATION and lane["position"] < len(accounts):
            _report(context, lane, rows, None, None)
            context.continue_as_new(lane)
            return None
    _report(context, lane, rows, None, None)
    return rows


def _report(
    context: df.DurableOrchestrationContext,
    lane: LaneInput,
    rows: list[ReportRow],
    instance_id: str | None,
    account_id: str | None,
) -> None:
    done = Counter(row["outcome"] for row in rows)
    remaining = len(lane["accounts"]) - lane["position"] - (1 if instance_id else 0)
    current = {"instanceId": instance_id, "accountId": account_id} if instance_id else None
    context.set_custom_status({"lane": lane["lane"], "done": dict(done), "current": current, "remaining": remaining})
