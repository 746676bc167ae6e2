"""One orchestration per account at a time, without relying on the engine's answer to a duplicate instance id.

Durable Functions has answered a start with the id of a running instance differently across versions (ignored,
failed, or replaced: azure-functions-durable-extension #839 and PR #2489, durabletask-java #135), so nothing here
depends on it. Every account orchestration gets an id of its own, `<account base>.<suffix>`, which never existed
before; the base (`cmk.orchestration.account_instance_base`) is shared by every orchestration of the account, so one
prefix query finds the one that is running. Every starter (the HTTP route, Event Grid enrolment and rollout lanes)
asks first and starts only when none runs. Two starters racing past that check can still start two: those that
claim here (the HTTP route, Event Grid) look again after starting and the younger withdraws; a rollout lane's child
that raced waits before its key PATCH for the older (`older_active`); and the enable step re-reads the account
before its PATCH, so no second PATCH follows the first's encryption (see cmk.enablement).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, TypedDict
from urllib.parse import urlencode

import aiohttp
import azure.durable_functions as df

from cmk.orchestration import (
    ACCOUNT_ORCHESTRATOR,
    AccountInput,
    account_instance_base,
    belongs_to_account,
    reattachment_from,
)

logger = logging.getLogger(__name__)
CONTINUATION_HEADER = "x-ms-continuation-token"
ACTIVE_RUNTIME_STATUSES = ("Pending", "Running", "ContinuedAsNew", "Suspended")
FINISHED_RUNTIME_STATUSES = ("Completed", "Failed", "Terminated")
MAX_PAGES = 50
# How long a withdrawn duplicate is waited for to end before its record is purged (it ends at its next episode).
WITHDRAW_WAIT_SECONDS = 30.0


class InstanceSummary(TypedDict):
    instanceId: str
    runtimeStatus: str | None
    customStatus: Any
    output: Any
    createdTime: str | None
    lastUpdatedTime: str | None


class Claim(TypedDict):
    """Who handles the account: an orchestration that was already running, or the one just started."""

    instanceId: str
    started: bool


async def list_instances(client: df.DurableOrchestrationClient, query: dict[str, str]) -> list[dict[str, Any]]:
    """Every instance matching a Durable management API query, following continuation tokens.

    The SDK's get_status_by has no prefix filter and stops at 100 instances (azure-functions-durable-python #580),
    so this reads the extension's own HTTP API, whose base URL the client binding carries.
    """
    rpc_base_url = client._orchestration_bindings.rpc_base_url  # noqa: SLF001 - see docstring
    found: list[dict[str, Any]] = []
    token: str | None = None
    async with aiohttp.ClientSession() as session:
        for _ in range(MAX_PAGES):
            headers = {CONTINUATION_HEADER: token} if token else {}
            async with session.get(f"{rpc_base_url}instances/?{urlencode(query)}", headers=headers) as response:
                if response.status != 200:
                    raise RuntimeError(f"the Durable store answered HTTP {response.status} to an instance query")
                found += await response.json(content_type=None)
                token = response.headers.get(CONTINUATION_HEADER)
            if not token:
                break
    return found


async def account_instances(
    client: df.DurableOrchestrationClient, account_id: str, *, active_only: bool
) -> list[InstanceSummary]:
    """The account's orchestrations, newest first."""
    base = account_instance_base(account_id)
    query = {"instanceIdPrefix": base, "top": "100", "showInput": "false"}
    if active_only:
        query["runtimeStatus"] = ",".join(ACTIVE_RUNTIME_STATUSES)
    instances = [
        _summary(instance)
        for instance in await list_instances(client, query)
        if belongs_to_account(str(instance.get("instanceId") or ""), base)
    ]
    return sorted(instances, key=lambda instance: instance["createdTime"] or "", reverse=True)


async def find_active(client: df.DurableOrchestrationClient, account_id: str) -> InstanceSummary | None:
    """The orchestration handling the account now, if any (the oldest, should a race have started two)."""
    active = [
        instance
        for instance in await account_instances(client, account_id, active_only=True)
        if instance["runtimeStatus"] in ACTIVE_RUNTIME_STATUSES
    ]
    return active[-1] if active else None


class Preparation(TypedDict):
    """What a starter needs to know before starting an account orchestration: the one already running (then start
    nothing), or the input to start with (with any encryption an earlier orchestration left running to follow)."""

    running: str | None
    input: AccountInput


async def prepare_start(
    client: df.DurableOrchestrationClient, orchestration_input: AccountInput, *, exclusive: bool = True
) -> Preparation:
    account_id = orchestration_input["request"]["accountId"]
    active = await find_active(client, account_id) if exclusive else None
    if active is not None:
        return {"running": active["instanceId"], "input": orchestration_input}
    if "reattach" not in orchestration_input:
        # The newest earlier orchestration may have stopped following an encryption that Azure still runs (its
        # deadline, or an admin's terminate): the new one follows that operation instead of waiting on a busy
        # account that shows the old body until the encryption ends.
        previous = await account_instances(client, account_id, active_only=False)
        if previous:
            newest = previous[0]
            reattach = reattachment_from(
                newest["output"], newest["customStatus"], orchestration_input["request"]["keyUri"]
            )
            if reattach is not None:
                orchestration_input = {**orchestration_input, "reattach": reattach}
    return {"running": None, "input": orchestration_input}


async def claim_account(
    client: df.DurableOrchestrationClient,
    orchestration_input: AccountInput,
    instance_id: str,
    *,
    exclusive: bool = True,
) -> Claim:
    """Start `instance_id` for the account unless an orchestration of the account is running; never start twice.

    Safe to call again with the same `instance_id` (a start retried after its reply was lost): an instance with
    that id that already exists, running or finished, is the claim. Two claims racing past the check (Event Grid
    delivers two events of one account at once) both start; each then looks again, and the younger withdraws in
    favour of the older, so the account keeps one orchestration.
    """
    account_id = orchestration_input["request"]["accountId"]
    if not belongs_to_account(instance_id, account_instance_base(account_id)):
        raise ValueError(f"{instance_id} is not an instance id of {account_id}")
    mine = await client.get_status(instance_id)
    if mine is not None and mine.runtime_status is not None:
        return {"instanceId": instance_id, "started": False}
    preparation = await prepare_start(client, orchestration_input, exclusive=exclusive)
    if preparation["running"] is not None:
        return {"instanceId": preparation["running"], "started": False}
    try:
        await client.start_new(ACCOUNT_ORCHESTRATOR, instance_id, preparation["input"])
    except Exception:
        # The same id started by a concurrent call (a duplicate delivery of one event names one id): whatever the
        # engine did with the second start, the instance that exists is the claim.
        mine = await client.get_status(instance_id)
        if mine is None or mine.runtime_status is None:
            raise
        return {"instanceId": instance_id, "started": False}
    if exclusive:
        older = older_visible_rival(await account_instances(client, account_id, active_only=True), instance_id)
        if older is not None:
            await _withdraw(client, instance_id, older)
            return {"instanceId": older, "started": False}
    return {"instanceId": instance_id, "started": True}


def older_visible_rival(active: list[InstanceSummary], instance_id: str) -> str | None:
    """The oldest other active orchestration, when `instance_id` is among `active` and younger than it (created
    later; the instance id breaks ties). When `instance_id` is not listed yet, None: an instance that cannot rank
    itself never withdraws, so two racing starters can never both withdraw (the enable step still sends one PATCH)."""
    ranks = {i["instanceId"]: (i["createdTime"] or "", i["instanceId"]) for i in active}
    if instance_id not in ranks:
        return None
    oldest = min(ranks.values())
    return oldest[1] if oldest[1] != instance_id else None


async def _withdraw(client: df.DurableOrchestrationClient, instance_id: str, older: str) -> None:
    """Terminate the duplicate just started (it has at most begun its read-only preflight) and purge its record, so
    the account's history, the overview and the next starter see only `older`."""
    logger.warning("%s raced %s for the same account and withdraws", instance_id, older)
    await client.terminate(instance_id, f"Withdrawn: {older} already handles this account (two starters raced).")
    loop = asyncio.get_running_loop()
    deadline = loop.time() + WITHDRAW_WAIT_SECONDS
    while loop.time() < deadline:
        status = await client.get_status(instance_id)
        if status is None or status.runtime_status is None:
            return  # gone already
        if status.runtime_status.value in FINISHED_RUNTIME_STATUSES:
            await client.purge_instance_history(instance_id)
            return
        await asyncio.sleep(0.2)
    logger.warning(
        "%s did not end within %g s: it stays, Terminated, beside %s", instance_id, WITHDRAW_WAIT_SECONDS, older
    )


async def older_active(client: df.DurableOrchestrationClient, account_id: str, instance_id: str) -> str | None:
    """An orchestration of the account that is running and older than `instance_id` (created earlier; the instance
    id breaks ties), if any.

    Two starters can race past the "is one running?" check and start two orchestrations of one account. Before its
    key PATCH each asks this: the younger waits for the older, whichever checked first, so exactly one PATCH is sent.
    """
    active = await account_instances(client, account_id, active_only=True)
    mine = next((i for i in active if i["instanceId"] == instance_id), None)
    my_rank = ((mine["createdTime"] or "") if mine else "\uffff", instance_id)
    older = [
        (i["createdTime"] or "", i["instanceId"])
        for i in active
        if i["instanceId"] != instance_id and (i["createdTime"] or "", i["instanceId"]) < my_rank
    ]
    return min(older)[1] if older else None


class InstanceReading(TypedDict):
    """An account orchestration as a waiting rollout lane sees it."""

    exists: bool
    runtimeStatus: str | None
    output: Any
    phase: str | None
    nextPollAt: str | None


async def read_instance(client: df.DurableOrchestrationClient, instance_id: str) -> InstanceReading:
    status = await client.get_status(instance_id)
    if status is None or status.runtime_status is None:
        return {"exists": False, "runtimeStatus": None, "output": None, "phase": None, "nextPollAt": None}
    custom = status.custom_status if isinstance(status.custom_status, dict) else {}
    return {
        "exists": True,
        "runtimeStatus": status.runtime_status.value,
        "output": status.output,
        "phase": custom.get("phase"),
        "nextPollAt": custom.get("nextPollAt"),
    }


def _summary(instance: dict[str, Any]) -> InstanceSummary:
    return {
        "instanceId": str(instance.get("instanceId")),
        "runtimeStatus": instance.get("runtimeStatus"),
        "customStatus": instance.get("customStatus"),
        "output": instance.get("output"),
        "createdTime": instance.get("createdTime"),
        "lastUpdatedTime": instance.get("lastUpdatedTime"),
    }
