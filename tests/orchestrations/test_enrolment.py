"""Event Grid enrolment on the local host: ARM write events from the simulator (and hand-made deliveries built
from the golden Event Grid samples) enrol in-scope accounts once, whatever the duplicates, the order, the schema
or our own PATCHes; everything else is acknowledged and ignored."""

from __future__ import annotations

import copy
import json
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
import requests

from cmk.enrolment import rollout_instance_id
from cmk.orchestration import account_instance_base
from sandbox.azure import builders as b
from sandbox.azure.rbac import CONTRIBUTOR
from sandbox.azure.testing import IDENTITY_ENV, SYSTEM, TENANT, call
from sandbox.stack import LocalAzureStack
from tests import GOLDEN

EVENT_SAMPLES = GOLDEN / "eventgrid"
IN_SCOPE = "3d4e5f6a-7b8c-4d9e-8f0a-1b2c3d4e5f6a"
OUT_OF_SCOPE = "4e5f6a7b-8c9d-4e0f-9a1b-2c3d4e5f6a7b"
RG = "rg-enrol"
KEY = "https://kv-enrol.vault.azure.net/keys/cosmos-cmk"
PLATFORM_TEAM = "7a8b9c0d-1e2f-4a3b-8c4d-5e6f7a8b9c0d"
NAMES = ["written", "duplicate", "racing", "cloud", "self", "child", "deleted", "rollout-a", "rollout-b"]


def _id(subscription: str, name: str) -> str:
    return f"/subscriptions/{subscription}/resourceGroups/{RG}/providers/Microsoft.DocumentDB/databaseAccounts/{name}"


@pytest.fixture(scope="module")
def stack() -> Iterator[LocalAzureStack]:
    vault = b.key_vault(IN_SCOPE, "rg-keys", "kv-enrol", tenant_id=TENANT)
    accounts = [b.cosmos_account(IN_SCOPE, RG, name) for name in NAMES]
    accounts.append(b.cosmos_account(OUT_OF_SCOPE, RG, "outside"))
    resources = [
        vault,
        b.vault_key(vault, "cosmos-cmk"),
        *accounts,
        *(b.sql_role_assignment(a, SYSTEM) for a in accounts),
        # The platform team that changes accounts (ARM authorization is enforced): Contributor of the subscription.
        b.role_assignment(f"/subscriptions/{IN_SCOPE}", CONTRIBUTOR, PLATFORM_TEAM),
    ]
    settings = {
        "CMK_ENROLMENT_SCOPE": json.dumps([f"/subscriptions/{IN_SCOPE}"]),
        "CMK_KEY_POLICY": json.dumps({"default": KEY}),
    }
    with pytest.MonkeyPatch.context() as patch:
        for name in IDENTITY_ENV:
            patch.delenv(name, raising=False)
        with LocalAzureStack(b.world(resources, tenant_id=TENANT), time_scale=1500, settings=settings) as running:
            yield running


def _golden_event(
    account_id: str, principal: str, event_type: str = "Microsoft.Resources.ResourceWriteSuccess"
) -> dict[str, Any]:
    event: dict[str, Any] = copy.deepcopy(
        json.loads((EVENT_SAMPLES / "resource-groups.eventgrid-schema.ResourceWriteSuccess.json").read_text())[0]
    )
    operation = "Microsoft.DocumentDB/databaseAccounts/" + ("delete" if "Delete" in event_type else "write")
    event.update(
        {"id": str(uuid.uuid4()), "subject": account_id, "eventType": event_type, "topic": f"/subscriptions/{IN_SCOPE}"}
    )
    event["data"].update(
        {"resourceUri": account_id, "operationName": operation, "resourceProvider": "Microsoft.DocumentDB"}
    )
    event["data"]["authorization"].update({"scope": account_id, "action": operation})
    event["data"]["authorization"]["evidence"]["principalId"] = principal
    event["data"]["claims"]["http://schemas.microsoft.com/identity/claims/objectidentifier"] = principal
    return event


def _deliver(stack: LocalAzureStack, events: list[dict[str, Any]], content_type: str = "application/json") -> int:
    response = requests.post(
        f"{stack.host_url}/runtime/webhooks/eventgrid?functionName=enrol_from_event_grid",
        data=json.dumps(events if content_type == "application/json" else events[0]),
        headers={"Content-Type": content_type, "aeg-event-type": "Notification"},
        timeout=60,
    )
    return response.status_code


def _instance(stack: LocalAzureStack, instance_id: str) -> dict[str, Any] | None:
    response = requests.get(f"{stack.host_url}/api/cmk/instances/{instance_id}", timeout=60)
    return response.json() if response.status_code == 200 else None


def _wait_done(stack: LocalAzureStack, instance_id: str, timeout: float = 120) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        status = _instance(stack, instance_id)
        if status and status["runtimeStatus"] in ("Completed", "Failed", "Terminated"):
            return status
        assert time.monotonic() < deadline, status
        time.sleep(0.2)


def _account_instances(stack: LocalAzureStack, account_id: str) -> list[dict[str, Any]]:
    """Every orchestration of the account: each has an id of its own under the account's base."""
    response = requests.get(
        f"{stack.host_url}/api/cmk/instances",
        params={"prefix": account_instance_base(account_id), "top": "100"},
        timeout=60,
    )
    assert response.status_code == 200, response.text
    instances: list[dict[str, Any]] = response.json()["instances"]
    return instances


def _wait_enrolled(stack: LocalAzureStack, account_id: str, timeout: float = 120) -> dict[str, Any]:
    """The account's one orchestration, once it ended."""
    deadline = time.monotonic() + timeout
    while not (instances := _account_instances(stack, account_id)):
        assert time.monotonic() < deadline, f"{account_id} was not enrolled"
        time.sleep(0.2)
    assert len(instances) == 1, [i["instanceId"] for i in instances]
    return _wait_done(stack, instances[0]["instanceId"], timeout)


def _key_patches(stack: LocalAzureStack, account_id: str) -> int:
    return sum(
        1
        for r in stack.simulator.requests()
        if r["method"] == "PATCH"
        and r["path"].lower().startswith(account_id.lower())
        and "keyVaultKeyUri" in json.dumps(r.get("body"))
    )


def test_an_account_written_in_scope_is_enrolled_once_and_our_own_writes_do_not_loop(stack: LocalAzureStack) -> None:
    account = _id(IN_SCOPE, "written")
    # Somebody else changes the account: ARM raises ResourceWriteSuccess when that PATCH completes.
    assert (
        call(stack.simulator, "PATCH", account, {"tags": {"owner": "team-a"}}, principal=PLATFORM_TEAM).status_code
        == 200
    )
    first = _wait_enrolled(stack, account, timeout=60)
    assert first["output"]["outcome"] == "Enabled", first["output"]["reason"]
    # Our own PATCHes raised events too; let them all be delivered, then nothing new may have started.
    stack.simulator.advance(3600)
    time.sleep(2)
    # The simulator records every delivery attempt: the event's subject, who wrote, and what the app answered.
    deliveries = [e for e in stack.simulator.events() if e["subject"].lower() == account.lower()]
    writers = [e["principal"] for e in deliveries if e["eventType"] == "Microsoft.Resources.ResourceWriteSuccess"]
    # The platform team's write, then ours: identity, default identity, key (each PATCH raises its own event).
    assert writers.count(PLATFORM_TEAM) == 1 and writers.count(SYSTEM) >= 3, writers
    # Every attempt reached the app and was acknowledged: none failed, so none was retried or dropped.
    assert all(e["outcome"] == "delivered" and 200 <= e["httpStatus"] < 300 for e in deliveries), deliveries
    (after,) = _account_instances(stack, account)
    assert after["instanceId"] == first["instanceId"] and after["output"]["outcome"] == "Enabled"
    assert _key_patches(stack, account) == 1


def test_duplicate_deliveries_start_one_orchestration(stack: LocalAzureStack) -> None:
    account = _id(IN_SCOPE, "duplicate")
    event = _golden_event(account, PLATFORM_TEAM)
    with ThreadPoolExecutor(4) as pool:
        codes = list(pool.map(lambda _: _deliver(stack, [event]), range(4)))
    assert all(200 <= code < 300 for code in codes)
    status = _wait_enrolled(stack, account)
    assert status["output"]["outcome"] == "Enabled"
    # A late, out-of-order redelivery after the key is on changes nothing.
    assert 200 <= _deliver(stack, [event]) < 300
    time.sleep(1)
    (after,) = _account_instances(stack, account)
    assert after["instanceId"] == status["instanceId"]
    assert _key_patches(stack, account) == 1


def test_distinct_events_of_one_account_at_once_leave_one_orchestration(stack: LocalAzureStack) -> None:
    # Two writes of one account raise two events (ids of their own), which Event Grid may deliver at the same moment
    # (both due after an outage): each starter sees no orchestration running and starts one. The chaos run
    # (bench/chaos.py) found accounts with two; the younger must withdraw.
    account = _id(IN_SCOPE, "racing")
    events = [_golden_event(account, PLATFORM_TEAM) for _ in range(8)]
    with ThreadPoolExecutor(8) as pool:
        codes = list(pool.map(lambda event: _deliver(stack, [event]), events))
    assert all(200 <= code < 300 for code in codes)
    status = _wait_enrolled(stack, account)
    assert status["output"]["outcome"] == "Enabled", status["output"]["reason"]
    time.sleep(1)
    (after,) = _account_instances(stack, account)
    assert after["instanceId"] == status["instanceId"]
    assert _key_patches(stack, account) == 1


def test_cloud_events_enrol_too(stack: LocalAzureStack) -> None:
    account = _id(IN_SCOPE, "cloud")
    cloud_event = json.loads(
        (EVENT_SAMPLES / "resource-groups.cloudevents-schema.ResourceWriteSuccess.json").read_text()
    )[0]
    cloud_event.update({"id": str(uuid.uuid4()), "subject": account, "source": f"/subscriptions/{IN_SCOPE}"})
    cloud_event["data"].update({"resourceUri": account, "operationName": "Microsoft.DocumentDB/databaseAccounts/write"})
    assert 200 <= _deliver(stack, [cloud_event], "application/cloudevents+json") < 300
    assert _wait_enrolled(stack, account)["output"]["outcome"] == "Enabled"


@pytest.mark.parametrize(
    ("name", "subscription", "principal", "event_type", "suffix"),
    [
        ("self", IN_SCOPE, SYSTEM, "Microsoft.Resources.ResourceWriteSuccess", ""),
        ("outside", OUT_OF_SCOPE, PLATFORM_TEAM, "Microsoft.Resources.ResourceWriteSuccess", ""),
        ("deleted", IN_SCOPE, PLATFORM_TEAM, "Microsoft.Resources.ResourceDeleteSuccess", ""),
        ("child", IN_SCOPE, PLATFORM_TEAM, "Microsoft.Resources.ResourceWriteSuccess", "/sqlDatabases/orders"),
    ],
)
def test_events_not_for_us_are_acknowledged_and_ignored(
    stack: LocalAzureStack, name: str, subscription: str, principal: str, event_type: str, suffix: str
) -> None:
    account = _id(subscription, name)
    event = _golden_event(account + suffix, principal, event_type)
    if suffix:
        event["data"]["operationName"] = "Microsoft.DocumentDB/databaseAccounts/sqlDatabases/write"
    assert 200 <= _deliver(stack, [event]) < 300
    time.sleep(1)
    assert _account_instances(stack, account) == []


def test_a_custom_event_carries_a_rollout_and_a_redelivery_starts_nothing_new(stack: LocalAzureStack) -> None:
    body = {"accounts": [_id(IN_SCOPE, "rollout-a"), _id(IN_SCOPE, "rollout-b")], "keyUri": KEY}
    event_id = str(uuid.uuid4())
    event: dict[str, Any] = {
        "id": event_id,
        "subject": "cmk/rollouts",
        "eventType": "Cmk.RolloutRequested",
        "eventTime": "2026-11-29T00:00:00Z",
        "data": body,
        "dataVersion": "1",
        "topic": "/subscriptions/x/resourceGroups/rg/providers/Microsoft.EventGrid/topics/cmk-requests",
    }
    assert 200 <= _deliver(stack, [event]) < 300
    instance_id = rollout_instance_id(event_id)
    status = _wait_done(stack, instance_id, timeout=240)
    assert status["output"]["totals"] == {"Enabled": 2}
    assert 200 <= _deliver(stack, [event]) < 300
    time.sleep(1)
    assert _instance(stack, instance_id)["createdTime"] == status["createdTime"]  # type: ignore[index]
