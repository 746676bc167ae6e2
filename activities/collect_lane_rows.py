"""Activity: the report rows of a rollout's lanes, once none runs.

A lane carries only the rows it wrote itself (orchestrators.rollout_lane); every other account it finished has its
row in the output of the orchestration the lane started for it at its first claim, read here (one list query of
the account orchestrations created since the rollout began, when there are many). A lane that completed returns
its own rows; a lane that ended otherwise (terminated by an admin, or failed) has the rows of its last generation's
input, and each account it had not finished is reported from the orchestration handling it when that one has an
outcome, else as Encrypting when it was at or past the key PATCH, else Failed, the reason saying the lane ended.
"""

from __future__ import annotations

from typing import Any, TypedDict

import azure.durable_functions as df

from activities import Payload
from cmk.orchestration import account_instance_base, rollout_instance_id
from cmk.rollouts import ReportRow, report_row, unplanned_row
from coordination.fleet_status import decoded, read_instance, terminal_instances

COLLECT_LANE_ROWS = "collect_lane_rows"
# Phases from the key PATCH on: the encryption may be running in Azure (orchestrators.rollout_lane).
FOLLOWING_PHASES = {"enabling", "encrypting", "verifying"}

bp = df.Blueprint()


class CollectedRows(TypedDict):
    rows: list[ReportRow]
    errors: list[str]


async def collect(lane_ids: list[str], client: df.DurableOrchestrationClient) -> CollectedRows:
    rows: list[ReportRow] = []
    errors: list[str] = []
    # Accounts a lane finished whose row is their first claim's orchestration's output: (instance id, account).
    first_claims: list[tuple[str, dict[str, Any]]] = []
    rollout_id: str | None = None
    for lane_id in lane_ids:
        lane = await client.get_status(lane_id, show_input=True)
        if lane is None or lane.runtime_status is None:
            errors.append(f"Lane {lane_id} not found: its accounts are missing from this report")
            continue
        status = lane.runtime_status.value
        output = decoded(lane.output)
        data = decoded(lane.input_)
        data = data if isinstance(data, dict) else {}
        rollout_id = str(data.get("rolloutId") or rollout_id or "")
        completed = status == "Completed" and isinstance(output, list)
        written: list[ReportRow] = list(output if completed else data.get("rows") or [])
        rows += written
        done = {str(row["accountId"]).lower() for row in written}
        position = int(data.get("position") or 0)
        planned: list[dict[str, Any]] = list(data.get("accounts") or [])
        for index, account in enumerate(planned):
            if str(account["accountId"]).lower() not in done and (completed or index < position):
                first_claims.append((rollout_instance_id(account["accountId"], str(data["rolloutId"]), 0), account))
                done.add(str(account["accountId"]).lower())
        if completed:
            continue
        custom = lane.custom_status if isinstance(lane.custom_status, dict) else {}
        named = [custom.get("current"), *(custom.get("upcoming") or [])]
        claimed = {
            account_instance_base(str(entry["accountId"])): str(entry["instanceId"])
            for entry in named
            if isinstance(entry, dict) and entry.get("accountId") and entry.get("instanceId")
        }
        ended = f"Lane {lane_id} ended {status}"
        for account in data.get("accounts") or []:
            if str(account["accountId"]).lower() in done:
                continue
            instance_id = claimed.get(account_instance_base(account["accountId"]))
            rows.append(await _row_of(client, account, instance_id, ended))
    if first_claims and rollout_id:
        rows += await _first_claims_rows(client, rollout_id, first_claims)
    return {"rows": rows, "errors": errors}


async def _first_claims_rows(
    client: df.DurableOrchestrationClient, rollout_id: str, first_claims: list[tuple[str, dict[str, Any]]]
) -> list[ReportRow]:
    """The rows of accounts a lane finished with the orchestration it started at their first claim: its output.
    Read in one list query of the orchestrations created since the rollout began when there are many."""
    rollout = await read_instance(client, rollout_id, show_input=True) or {"instanceId": rollout_id}
    found = await terminal_instances(client, rollout, {instance_id for instance_id, _ in first_claims}, remember=False)
    rows: list[ReportRow] = []
    for instance_id, account in first_claims:
        output = (found.get(instance_id) or {}).get("output")
        if isinstance(output, dict) and "outcome" in output:
            rows.append(report_row(output, instance_id))  # type: ignore[arg-type]  # an account orchestration's output
            continue
        # Its lane saw it end with an outcome, so it was there: purged since, most likely.
        reason = f"Its lane finished it, but orchestration {instance_id} can no longer be read (purged?)"
        reason += ": outcome unknown"
        row = unplanned_row(account["accountId"], "Failed", reason, account["keyUri"])
        row["instanceId"] = instance_id
        rows.append(row)
    return rows


async def _row_of(
    client: df.DurableOrchestrationClient, account: dict[str, Any], instance_id: str | None, ended: str
) -> ReportRow:
    if instance_id is None:
        row = unplanned_row(
            account["accountId"], "Failed", f"{ended} before it reached this account", account["keyUri"]
        )
        return row
    instance = await client.get_status(instance_id)
    output = instance.output if instance is not None else None
    if isinstance(output, dict) and "outcome" in output:
        return report_row(output, instance_id)  # type: ignore[arg-type]  # an account orchestration's output
    custom = instance.custom_status if instance is not None and isinstance(instance.custom_status, dict) else {}
    phase = custom.get("phase")
    runtime = instance.runtime_status.value if instance is not None and instance.runtime_status else "not found"
    reason = f"{ended}; orchestration {instance_id} is {runtime} in phase {phase or 'unknown'}"
    if phase == "waitingForSlot":
        reason += ": prepared ahead of its slot, it was never given the slot; no key PATCH was sent"
        row = unplanned_row(account["accountId"], "Refused", reason, account["keyUri"])
    elif phase in FOLLOWING_PHASES:
        row = unplanned_row(
            account["accountId"], "Encrypting", reason + ": the key PATCH may be running in Azure", account["keyUri"]
        )
    else:
        row = unplanned_row(account["accountId"], "Failed", reason + " before the key PATCH", account["keyUri"])
    row["instanceId"] = instance_id
    return row


@bp.function_name(COLLECT_LANE_ROWS)
@bp.activity_trigger(input_name="payload", activity=COLLECT_LANE_ROWS)
@bp.durable_client_input(client_name="client")
async def collect_lane_rows(payload: Payload, client: df.DurableOrchestrationClient) -> CollectedRows:
    """payload: {"lanes": [lane instance ids]}."""
    return await collect(payload["lanes"], client)
