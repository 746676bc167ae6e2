"""The activities that change Azure, against the simulator: each one idempotent, each PATCH on its own, the key
PATCH never blocking, and the poll telling a failed read from a failed operation."""

from __future__ import annotations

from typing import Any

import pytest

from activities.enable_cmk import enable_cmk_activity
from activities.ensure_identity import ensure_identity_activity
from activities.grant_key_access import grant_key_access_activity
from activities.poll_operation import poll_operation_activity
from activities.preflight import preflight_activity
from activities.verify_cmk import verify_cmk_activity
from cmk.key_access import CRYPTO_SERVICE_ENCRYPTION_USER
from sandbox.azure.testing import key_patches
from tests.activities.conftest import Cloud


def plan_for(cloud: Cloud, account: str, key_uri: str | None = None, **request: Any) -> dict[str, Any]:
    body = {"accountId": cloud.account(account), "keyUri": key_uri or cloud.key_uri, **request}
    result = preflight_activity({"request": body, "asOf": cloud.simulator.clock.now().isoformat()})
    assert not result["blocked"], result["findings"]
    plan: dict[str, Any] = result["plan"]
    return plan


def settle_identity(cloud: Cloud, plan: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """Call ensure_identity until ready, letting simulated time pass between calls; return the actions taken."""
    actions: list[str] = []
    for _ in range(6):
        step = ensure_identity_activity({"accountId": plan["accountId"], "identity": plan["identity"]})
        actions.append(step["action"])
        if step["status"] == "ready":
            return step, actions
        cloud.simulator.advance(120)
    raise AssertionError(f"identity never became ready: {actions}")


def account_body(cloud: Cloud, name: str) -> dict[str, Any]:
    body = cloud.simulator.resource(cloud.account(name))
    assert body is not None
    return body


def test_ensure_identity_adds_the_identity_then_the_default_each_in_its_own_patch(cloud: Cloud) -> None:
    plan = plan_for(cloud, "acct-ready-2")
    before = cloud.last_sequence()
    step, actions = settle_identity(cloud, plan)
    assert actions == ["assignIdentity", "setDefaultIdentity", "none"]
    patches = [w["body"] for w in cloud.writes_since(before) if w["method"] == "PATCH"]
    assert patches == [
        {"identity": {"type": "SystemAssigned"}},
        {"properties": {"defaultIdentity": "SystemAssignedIdentity"}},
    ]
    body = account_body(cloud, "acct-ready-2")
    assert step["principalId"] == body["identity"]["principalId"]
    # Idempotent: a further call changes nothing.
    again_from = cloud.last_sequence()
    assert ensure_identity_activity({"accountId": plan["accountId"], "identity": plan["identity"]})["status"] == "ready"
    assert cloud.writes_since(again_from) == []


def test_ensure_identity_keeps_existing_user_assigned_identities(cloud: Cloud) -> None:
    plan = plan_for(cloud, "acct-continuous", identity=cloud.uami_id)
    before = cloud.last_sequence()
    step, _ = settle_identity(cloud, plan)
    assert step["principalId"] == cloud.uami_principal
    identity_patch = next(w["body"] for w in cloud.writes_since(before) if "identity" in w["body"])
    assert identity_patch == {"identity": {"type": "UserAssigned", "userAssignedIdentities": {cloud.uami_id: {}}}}
    assert account_body(cloud, "acct-continuous")["properties"]["defaultIdentity"] == (
        f"UserAssignedIdentity={cloud.uami_id}"
    )


def test_access_policy_grant_is_added_once(cloud: Cloud) -> None:
    principal = "0d1e2f3a-4b5c-4d6e-8f70-8192a3b4c5d6"
    plan = plan_for(cloud, "acct-ready")
    payload = {"vault": plan["vault"], "principalId": principal, "tenantId": None}
    first = grant_key_access_activity(payload)
    second = grant_key_access_activity(payload)
    assert (first["changed"], second["changed"]) == (True, False)
    vault = cloud.simulator.resource(plan["vault"]["id"])
    assert vault is not None
    entries = [p for p in vault["properties"]["accessPolicies"] if p["objectId"] == principal]
    assert len(entries) == 1
    assert set(entries[0]["permissions"]["keys"]) >= {"get", "wrapKey", "unwrapKey"}


def test_rbac_grant_creates_one_role_assignment_and_asks_for_propagation_time(cloud: Cloud) -> None:
    principal = "1a2b3c4d-5e6f-4a7b-8c9d-0e1f2a3b4c5d"
    plan = plan_for(cloud, "acct-rbac", cloud.rbac_key_uri)
    assert plan["vault"]["permissionModel"] == "rbac"
    payload = {"vault": plan["vault"], "principalId": principal, "tenantId": None}
    before = cloud.last_sequence()
    first = grant_key_access_activity(payload)
    second = grant_key_access_activity(payload)
    assert first["changed"] and first["propagationWaitSeconds"] > 0
    assert not second["changed"]
    puts = [w for w in cloud.writes_since(before) if w["method"] == "PUT"]
    assert len(puts) == 1
    assert puts[0]["body"]["properties"]["roleDefinitionId"].endswith(CRYPTO_SERVICE_ENCRYPTION_USER)
    assert puts[0]["body"]["properties"]["principalType"] == "ServicePrincipal"


def test_enable_returns_at_once_and_poll_follows_to_success(cloud: Cloud) -> None:
    plan = plan_for(cloud, "acct-ready")
    step, _ = settle_identity(cloud, plan)
    grant_key_access_activity(
        {"vault": plan["vault"], "principalId": step["principalId"], "tenantId": step["tenantId"]}
    )
    before = cloud.last_sequence()
    enabled = enable_cmk_activity({"accountId": plan["accountId"], "keyUri": plan["keyUri"]})
    assert enabled["status"] == "accepted"
    operation = enabled["operation"]
    patch = cloud.writes_since(before)
    assert [w["body"] for w in patch] == [{"properties": {"keyVaultKeyUri": plan["keyUri"]}}], "the key travels alone"
    assert "/operationsStatus/" in operation["statusUrl"] and "/operationResults/" in operation["locationUrl"]

    first = poll_operation_activity({"operation": operation})
    assert first["status"] == "Dequeued" and not first["terminal"] and first["readError"] is None
    # A retried attempt while Azure encrypts reads the account first and sends nothing: the PATCH is not repeated.
    again = cloud.last_sequence()
    retried = enable_cmk_activity({"accountId": plan["accountId"], "keyUri": plan["keyUri"]})
    assert retried["status"] == "busy" and retried["operation"] is None
    assert cloud.writes_since(again) == [], "no second key PATCH while the first one's encryption runs"
    statuses = [first["status"]]
    for _ in range(100):
        cloud.simulator.advance(600)
        reading = poll_operation_activity({"operation": operation})
        statuses.append(reading["status"])
        if reading["terminal"]:
            break
    assert reading["succeeded"] and statuses[-1] == "Succeeded"
    assert "InProgress" in statuses
    verification = verify_cmk_activity({"accountId": plan["accountId"], "keyUri": plan["keyUri"]})
    assert verification["verified"], verification["detail"]


@pytest.mark.parametrize(
    ("account", "fault"),
    [
        ("acct-lost-reply-reset", {"kind": "resetAfterApply"}),
        ("acct-lost-reply-504", {"kind": "statusAfterApply", "status": 504}),
    ],
)
def test_a_key_patch_whose_reply_is_lost_is_not_sent_again(cloud: Cloud, account: str, fault: dict[str, Any]) -> None:
    plan = plan_for(cloud, account)
    step, _ = settle_identity(cloud, plan)
    grant_key_access_activity(
        {"vault": plan["vault"], "principalId": step["principalId"], "tenantId": step["tenantId"]}
    )
    before = cloud.last_sequence()
    cloud.simulator.add_fault(
        {"method": "PATCH", "path": account, "bodyContains": "keyVaultKeyUri", "count": 1, **fault}
    )
    try:
        lost = enable_cmk_activity({"accountId": plan["accountId"], "keyUri": plan["keyUri"]})
        # The answer left open whether Azure applied it: the activity read the account and found it encrypting.
        assert lost["status"] == "busy" and lost["provisioningState"] == "Updating", lost
        again = enable_cmk_activity({"accountId": plan["accountId"], "keyUri": plan["keyUri"]})
        assert again["status"] == "busy"
    finally:
        cloud.simulator.clear_faults()
    assert len(key_patches(cloud.simulator, plan["accountId"], before)) == 1, "neither the SDK nor a retry re-sent it"


def test_a_failed_operation_is_told_from_a_failed_read(cloud: Cloud) -> None:
    # No key access granted: Azure checks at trigger time and the operation fails.
    plan = plan_for(cloud, "acct-ready-3")
    settle_identity(cloud, plan)
    operation = enable_cmk_activity({"accountId": plan["accountId"], "keyUri": plan["keyUri"]})["operation"]

    status_path = operation["statusUrl"].split("://", 1)[1].split("/", 1)[1].split("?")[0].lower()
    account_path = plan["accountId"].lower()

    def reads(since: int, path: str) -> list[dict[str, Any]]:
        entries = cloud.simulator.requests(since=since)
        return [r for r in entries if r["method"] == "GET" and r["path"].split("?")[0].lower().endswith(path)]

    before = cloud.last_sequence()
    fault = cloud.simulator.add_fault({"method": "GET", "path": "operationsStatus", "kind": "status", "status": 500})
    try:
        unreadable = poll_operation_activity({"operation": operation, "fallbackToAccount": False})
        assert unreadable["readError"].startswith("HTTP 500 reading the status URL"), unreadable
        assert not unreadable["terminal"] and unreadable["status"] == "Unknown" and unreadable["error"] is None
        from_account = poll_operation_activity({"operation": operation})
        assert from_account["source"] == "account" and from_account["status"] == "Updating"
        assert from_account["readError"].startswith("HTTP 500 reading the status URL") and not from_account["terminal"]
    finally:
        cloud.simulator.clear_faults()
    # The fault is what made the status unreadable: every status read meanwhile got its 500 (none was served),
    # and the reading that fell back got the account's own state from a read that was served.
    faulted = reads(before, status_path)
    assert len(faulted) >= 2 and all(r.get("fault") == fault["id"] and r["status"] == 500 for r in faulted), faulted
    assert [r["status"] for r in reads(before, account_path)] == [200]

    cloud.simulator.advance(3600)
    after = cloud.last_sequence()
    failed = poll_operation_activity({"operation": operation})
    # Readable again: the operation's own status says it failed, with Azure's reason, and that is an outcome.
    assert [(r["status"], r.get("fault")) for r in reads(after, status_path)] == [(200, None)]
    assert failed["source"] == "statusUrl" and failed["status"] == "Failed" and failed["readError"] is None
    assert failed["terminal"] and not failed["succeeded"]
    assert failed["error"] and failed["error"]["message"]
    assert account_body(cloud, "acct-ready-3")["properties"].get("keyVaultKeyUri") in (None, "")


def test_a_status_url_the_app_may_not_read_says_which_action_to_grant(cloud: Cloud) -> None:
    # An app granted at resource groups only, without the subscription-scope status reader: ARM refuses the
    # subscription-scoped status URL. The reading keeps Azure's refusal, so the outcome tells what to grant.
    plan = plan_for(cloud, "acct-ready-3")
    settle_identity(cloud, plan)
    operation = enable_cmk_activity({"accountId": plan["accountId"], "keyUri": plan["keyUri"]})["operation"]
    message = (
        "The client 'app' with object id 'app' does not have authorization to perform action "
        "'Microsoft.DocumentDB/locations/operationsStatus/read' over scope '/subscriptions/x' or the scope is invalid."
    )
    cloud.simulator.add_fault(
        {
            "method": "GET",
            "path": "operationsStatus",
            "kind": "status",
            "status": 403,
            "code": "AuthorizationFailed",
            "message": message,
        }
    )
    try:
        reading = poll_operation_activity({"operation": operation})
    finally:
        cloud.simulator.clear_faults()
    assert reading["source"] == "account", reading
    assert reading["readError"] == f"HTTP 403 reading the status URL: AuthorizationFailed: {message}", reading


def test_a_lost_status_url_falls_back_to_the_account(cloud: Cloud) -> None:
    operation = {
        "accountId": cloud.account("acct-enabled"),
        "kind": "enableCmk",
        "statusUrl": cloud.simulator.base_url
        + "/subscriptions/3c9e1f7a-52d4-4b8e-9a16-0e2d4c6f8b31/providers/Microsoft.DocumentDB/locations/eastus/"
        "operationsStatus/00000000-0000-0000-0000-000000000000?api-version=2026-03-15",
        "locationUrl": None,
        "retryAfterSeconds": None,
        "expectedKeyUri": cloud.key_uri,
    }
    reading = poll_operation_activity({"operation": operation})
    assert reading["source"] == "account" and "404" in (reading["readError"] or "")
    assert reading["terminal"] and reading["succeeded"]


def test_throttling_comes_back_as_a_result_with_retry_after(cloud: Cloud) -> None:
    cloud.simulator.add_fault(
        {
            "method": "GET",
            "path": r"databaseAccounts/acct-ready\?",
            "kind": "status",
            "status": 429,
            "retryAfter": 7,
            "count": 1,
        }
    )
    try:
        result = verify_cmk_activity({"accountId": cloud.account("acct-ready"), "keyUri": cloud.key_uri})
    finally:
        cloud.simulator.clear_faults()
    assert result["throttled"]["retryAfterSeconds"] == 7
