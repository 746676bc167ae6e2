"""The per-account orchestration through the HTTP API on the local host: what a user sees in the status and the
output, and what really reached "Azure" (the simulator's request log)."""

from __future__ import annotations

import pytest

from tests.orchestrations.conftest import KEY_URI, RBAC_KEY_URI, SUB, App, account_id


def test_happy_path_enables_the_key_and_reports_everything(app: App) -> None:
    instance_id = app.start("ready-00")
    status = app.wait(instance_id)
    output = status["output"]
    assert status["runtimeStatus"] == "Completed"
    assert output["outcome"] == "Enabled", output["reason"]
    assert output["accountId"] == account_id("ready-00")
    assert output["keyUri"] == KEY_URI and output["identity"] == "SystemAssignedIdentity"
    assert output["findings"] == []
    assert output["operation"]["status"] == "Succeeded" and output["operation"]["polls"] >= 1
    for moment in ("startedAt", "identityReadyAt", "keyAccessReadyAt", "enableRequestedAt", "encryptionDoneAt"):
        assert moment in output["timings"]
    assert status["customStatus"]["phase"] == "done"
    # Three PATCHes, each alone: identity, default identity, then the key.
    patches = [w["body"] for w in app.writes_for("ready-00")]
    assert patches == [
        {"identity": {"type": "SystemAssigned"}},
        {"properties": {"defaultIdentity": "SystemAssignedIdentity"}},
        {"properties": {"keyVaultKeyUri": KEY_URI}},
    ]
    body = app.stack.simulator.resource(account_id("ready-00"))
    assert body is not None and body["properties"]["keyVaultKeyUri"] == KEY_URI


def test_rbac_vault_waits_for_propagation_and_succeeds(app: App) -> None:
    status = app.wait(_start(app))
    assert status["output"]["outcome"] == "Enabled", status["output"]["reason"]
    role_puts = [r for r in app.stack.simulator.requests() if r["method"] == "PUT" and "roleAssignments" in r["path"]]
    assert len(role_puts) == 1
    timings = status["output"]["timings"]
    assert timings["keyAccessReadyAt"] > timings["identityReadyAt"]


def _start(app: App) -> str:
    response = app.post("cmk/accounts", {"accountId": account_id("rbac"), "keyUri": RBAC_KEY_URI})
    assert response.status_code == 202, response.text
    instance_id: str = response.json()["id"]
    return instance_id


def test_a_refusal_changes_nothing(app: App) -> None:
    status = app.wait(app.start("cassandra"))
    output = status["output"]
    assert output["outcome"] == "Refused"
    assert "CASSANDRA_NOT_SUPPORTED" in output["reason"]
    assert [f["code"] for f in output["findings"]] == ["CASSANDRA_NOT_SUPPORTED"]
    assert app.writes_for("cassandra") == []


def test_dry_run_plans_without_touching_the_account(app: App) -> None:
    status = app.wait(app.start("ready-01", dryRun=True))
    output = status["output"]
    assert output["outcome"] == "Planned"
    assert output["plan"]["defaultIdentity"] == "SystemAssignedIdentity"
    assert output["plan"]["vault"]["permissionModel"] == "accessPolicy"
    assert app.writes_for("ready-01") == []


def test_approval_given_lets_the_key_patch_through(app: App) -> None:
    instance_id = app.start("ready-02", approval="required")
    waiting = app.wait(instance_id, phase="awaitingApproval")
    assert waiting["customStatus"]["nextPollAt"], "the status says until when it waits"
    assert not any("keyVaultKeyUri" in str(w.get("body")) for w in app.writes_for("ready-02"))
    response = app.post(f"cmk/instances/{instance_id}/approve", {"comment": "change 4711"})
    assert response.status_code == 202, response.text
    output = app.wait(instance_id)["output"]
    assert output["outcome"] == "Enabled" and "approvedAt" in output["timings"]
    # Function-key mode: a key names nobody, and the record says so (entra mode: tests/test_access.py).
    assert output["approvedBy"]["displayName"] == "a function key holder" and output["approvedBy"]["at"]
    assert output["requestedBy"]["displayName"] == "a function key holder" and output["rejectedBy"] is None


def test_approval_refused_ends_refused_without_the_key_patch(app: App) -> None:
    instance_id = app.start("ready-03", approval="required")
    app.wait(instance_id, phase="awaitingApproval")
    assert app.post(f"cmk/instances/{instance_id}/reject", {"comment": "not this week"}).status_code == 202
    output = app.wait(instance_id)["output"]
    assert output["outcome"] == "Refused" and "not this week" in output["reason"]
    assert output["rejectedBy"]["displayName"] == "a function key holder" and output["approvedBy"] is None
    assert app.post(f"cmk/instances/{instance_id}/reject", {"by": "bob"}).status_code == 400, "by is not taken"
    assert not any("keyVaultKeyUri" in str(w.get("body")) for w in app.writes_for("ready-03"))


def test_approval_times_out_as_refused(app: App) -> None:
    instance_id = app.start("ready-04", approval="required")
    app.wait(instance_id, phase="awaitingApproval")
    app.stack.simulator.advance(25 * 3600)  # past CMK_APPROVAL_TIMEOUT_HOURS=24 on the shared clock
    output = app.wait(instance_id)["output"]
    assert output["outcome"] == "Refused" and "No approval before" in output["reason"]
    assert not any("keyVaultKeyUri" in str(w.get("body")) for w in app.writes_for("ready-04"))


def test_approve_is_refused_when_nothing_waits(app: App) -> None:
    instance_id = app.start("ready-05", dryRun=True)
    app.wait(instance_id)
    response = app.post(f"cmk/instances/{instance_id}/approve")
    assert response.status_code == 409 and response.json()["error"]["code"] == "NotAwaitingApproval"
    assert app.post("cmk/instances/cmk-no-such-instance/approve").status_code == 404


def test_failed_status_reads_fall_back_and_the_encryption_still_completes(app: App) -> None:
    # A lost status URL (404) is a failed read, not a failed operation: the monitor reads the account instead.
    app.stack.simulator.add_fault(
        {"method": "GET", "path": "operationsStatus", "kind": "status", "status": 404, "count": 3}
    )
    instance_id = app.start("ready-06")
    status = app.wait(instance_id)
    assert status["output"]["outcome"] == "Enabled", status["output"]["reason"]
    requests_log = app.stack.simulator.requests()
    unreadable = [r for r in requests_log if "operationsStatus" in r["path"] and r["status"] == 404]
    assert len(unreadable) == 3
    # Each failed read was followed by a read of the account itself.
    account = account_id("ready-06").lower()
    for failed in unreadable:
        after = requests_log[requests_log.index(failed) + 1 :]
        assert any(r["method"] == "GET" and r["path"].lower().split("?")[0] == account for r in after[:3])


def test_a_failing_operation_is_reported_failed_with_azures_reason(app: App) -> None:
    output = app.wait(app.start("hidden-long-id"))["output"]
    assert output["outcome"] == "Failed"
    assert "document scan" in output["reason"].lower()
    assert [f["code"] for f in output["findings"]] == ["DOCUMENT_ID_SCAN_UNAVAILABLE"]
    assert output["operation"]["status"] == "Failed"


def test_custom_status_follows_a_long_encryption(app: App) -> None:
    instance_id = app.start("large")
    status = app.wait(instance_id, phase="encrypting")
    custom = status["customStatus"]
    assert custom["accountId"] == account_id("large")
    assert custom["operationStatus"] in ("Dequeued", "InProgress") and custom["nextPollAt"]
    assert app.wait(instance_id, timeout=240)["output"]["outcome"] == "Enabled"


def test_a_second_request_for_a_running_account_gets_409_and_a_finished_one_restarts(app: App) -> None:
    instance_id = app.start("ready-07", approval="required")
    app.wait(instance_id, phase="awaitingApproval")
    duplicate = app.post("cmk/accounts", {"accountId": account_id("ready-07"), "keyUri": KEY_URI})
    assert duplicate.status_code == 409
    assert duplicate.json()["id"] == instance_id and duplicate.json()["error"]["code"] == "AlreadyRunning"
    app.post(f"cmk/instances/{instance_id}/approve")
    assert app.wait(instance_id)["output"]["outcome"] == "Enabled"
    again = app.start("ready-07")
    # A new orchestration with an id of its own (never a reused one), found under the account's prefix.
    assert again != instance_id and again.split(".")[0] == instance_id.split(".")[0]
    assert app.wait(again)["output"]["outcome"] == "AlreadyEnabled"
    listed = app.get("cmk/instances", prefix=instance_id.split(".")[0]).json()["instances"]
    assert {i["instanceId"] for i in listed} == {instance_id, again}


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"accountId": "orders", "keyUri": KEY_URI}, "InvalidAccountId"),
        ({"accountId": account_id("ready-08"), "keyUri": "https://example.com/k"}, "InvalidKeyUri"),
        ({"accountId": account_id("ready-08"), "keyUri": KEY_URI, "dryRun": "no"}, "InvalidDryRun"),
        ({"accountId": account_id("ready-08")}, "InvalidKeyUri"),
    ],
)
def test_bad_input_is_a_400_and_starts_nothing(app: App, body: dict[str, object], code: str) -> None:
    before = len(app.stack.simulator.requests())
    response = app.post("cmk/accounts", body)
    assert response.status_code == 400
    assert response.json()["error"]["code"] == code
    assert app.get("cmk/instances/cmk-ready-08-" + "x").status_code == 404
    assert len(app.stack.simulator.requests()) == before


def test_terminate_stops_the_orchestration_and_says_azure_goes_on(app: App) -> None:
    instance_id = app.start("ready-09", approval="required")
    app.wait(instance_id, phase="awaitingApproval")
    response = app.post(f"cmk/instances/{instance_id}/terminate", {"reason": "maintenance window closed"})
    assert response.status_code == 202 and "goes on in Azure" in response.json()["note"]
    assert app.wait(instance_id)["runtimeStatus"] == "Terminated"
    assert app.post(f"cmk/instances/{instance_id}/terminate").status_code == 409


def test_instances_list_pages_past_one_hundred(app: App) -> None:
    missing = [
        f"/subscriptions/{SUB}/resourceGroups/rg-paging/providers/Microsoft.DocumentDB/databaseAccounts/p{i:03d}"
        for i in range(105)
    ]
    ids = []
    for account in missing:
        response = app.post("cmk/accounts", {"accountId": account, "keyUri": KEY_URI, "dryRun": True})
        assert response.status_code == 202
        ids.append(response.json()["id"])
    for instance_id in ids:
        assert app.wait(instance_id)["output"]["outcome"] == "Refused"
    seen: list[str] = []
    token: str | None = None
    pages = 0
    while True:
        params = {"top": "50", "prefix": "cmk-p"}
        if token:
            params["continuationToken"] = token
        page = app.get("cmk/instances", **params).json()
        pages += 1
        seen += [instance["instanceId"] for instance in page["instances"]]
        token = page["continuationToken"]
        if not token:
            break
    assert sorted(seen) == sorted(ids) and pages == 3
    assert app.get("cmk/instances", runtimeStatus="Sleeping").status_code == 400
