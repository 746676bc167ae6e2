"""The opt-in throughput raise, end to end through the HTTP API, the local host and the simulator: a raised account
encrypts faster and ends with every database's and container's throughput back exactly as recorded; a failed
encryption still restores; a dry run shows the plan and its estimate; a serverless account is refused; and a stack
killed with SIGKILL between the raise and the restore restores after its restart."""

from __future__ import annotations

import json
import signal
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import requests

from sandbox.azure import AzureSimulator
from sandbox.azure import builders as b
from sandbox.azure.testing import IDENTITY_ENV, SYSTEM, TENANT, call
from sandbox.stack import LocalAzureStack
from tests.orchestrations.test_restart import _free_port, _serve, _status

SUB = "2d4f6a8c-0e1b-4c3d-9e5f-7a9b1c3d5e7f"
RG = "rg-raise"
KEY_URI = "https://kv-raise.vault.azure.net/keys/cosmos-cmk"
RAISE = {"factor": 2, "maxRuPerSecond": 50000}
ORIGINAL = {"sqlDatabases/sales": ("throughput", 1000), "sqlDatabases/sales/containers/orders": ("maxThroughput", 4000)}


def _account_id(name: str) -> str:
    return f"/subscriptions/{SUB}/resourceGroups/{RG}/providers/Microsoft.DocumentDB/databaseAccounts/{name}"


def _world(*names: str, serverless: tuple[str, ...] = (), data: dict[str, Any] | None = None) -> dict[str, Any]:
    """Each account: 2 GiB at 1000 spare RU/s, a database of 1000 RU/s and a container of its own (autoscale up to
    4000) beside one sharing the database's."""
    vault = b.key_vault(SUB, RG, "kv-raise", tenant_id=TENANT)
    resources: list[dict[str, Any]] = [vault, b.vault_key(vault, "cosmos-cmk")]
    account_data: dict[str, Any] = {}
    for name in names:
        account = b.cosmos_account(SUB, RG, name)
        sales = b.cosmos_database(account, "sales")
        orders = b.cosmos_container(sales, "orders")
        resources += [
            account,
            b.sql_role_assignment(account, SYSTEM),
            sales,
            orders,
            b.cosmos_container(sales, "lines"),
        ]
        resources += [b.throughput_settings(sales, throughput=1000), b.throughput_settings(orders, autoscale_max=4000)]
        account_data[str(account["id"])] = {"dataSizeGiB": 2, "spareRuPerSecond": 1000, **(data or {})}
    for name in serverless:
        resources.append(b.cosmos_account(SUB, RG, name, capabilities=["EnableServerless"]))
    return b.world(resources, tenant_id=TENANT, account_data=account_data)


def _throughput(simulator: AzureSimulator, account: str) -> dict[str, int]:
    values = {}
    for path, (field, _) in ORIGINAL.items():
        reply = call(simulator, "GET", f"{_account_id(account)}/{path}/throughputSettings/default")
        resource = reply.json()["properties"]["resource"]
        values[path] = (
            resource["autoscaleSettings"]["maxThroughput"] if field == "maxThroughput" else resource["throughput"]
        )
    return values


def _original() -> dict[str, int]:
    return {path: value for path, (_, value) in ORIGINAL.items()}


def _start(url: str, account: str, **extra: Any) -> str:
    body = {"accountId": _account_id(account), "keyUri": KEY_URI, **extra}
    reply = requests.post(f"{url}/api/cmk/accounts", json=body, timeout=60)
    assert reply.status_code == 202, reply.text
    instance_id: str = reply.json()["id"]
    return instance_id


def _output(url: str, instance_id: str, timeout: float = 240) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        status = requests.get(f"{url}/api/cmk/instances/{instance_id}", timeout=60).json()
        if status["runtimeStatus"] in ("Completed", "Failed", "Terminated"):
            assert status["runtimeStatus"] == "Completed", status
            output: dict[str, Any] = status["output"]
            return output
        assert time.monotonic() < deadline, status.get("customStatus")
        time.sleep(0.2)


def _seconds(stamp: str) -> float:
    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


def _throughput_puts(entries: list[dict[str, Any]], account: str) -> list[dict[str, Any]]:
    prefix = _account_id(account).lower() + "/"
    return [
        r
        for r in entries
        if r["method"] == "PUT" and r["path"].lower().startswith(prefix) and "throughputSettings" in r["path"]
    ]


@pytest.fixture
def clean_identity(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in IDENTITY_ENV:
        monkeypatch.delenv(name, raising=False)


@pytest.mark.timeout(300)
def test_a_raised_account_encrypts_faster_and_ends_with_its_throughput_restored(clean_identity: None) -> None:
    with LocalAzureStack(
        _world("tp-raised", "tp-plain", "tp-dry", serverless=("tp-serverless",)), discrete=True
    ) as stack:
        url, simulator = stack.host_url, stack.simulator
        dry = _output(url, _start(url, "tp-dry", dryRun=True, throughputRaise=RAISE))
        refused = _output(url, _start(url, "tp-serverless", throughputRaise=RAISE))
        raised_id, plain_id = _start(url, "tp-raised", throughputRaise=RAISE), _start(url, "tp-plain")
        raised, plain = _output(url, raised_id), _output(url, plain_id)

        assert raised["outcome"] == "Enabled" and plain["outcome"] == "Enabled", (raised["reason"], plain["reason"])
        encryptions = {
            operation["accountId"]: _seconds(operation["endTime"]) - _seconds(operation["startTime"])
            for operation in simulator.operations()
            if operation["kind"] == "enableCustomerManagedKey"
        }
        # 1000 + 4000 RU/s more: six times the spare, a sixth of the time.
        assert encryptions[_account_id("tp-raised")] == pytest.approx(
            encryptions[_account_id("tp-plain")] / 6, rel=0.01
        )
        assert _throughput(simulator, "tp-raised") == _original()
        assert _throughput(simulator, "tp-plain") == _original()
        report = raised["throughputRaise"]
        assert report["status"] == "restored", report
        assert [(c["fromRuPerSecond"], c["toRuPerSecond"]) for c in report["changes"]] == [(1000, 2000), (4000, 8000)]
        assert all(c["raisedAt"] and c["restoredAt"] for c in report["changes"])
        # Raised before the key PATCH, restored once the encryption ended: Azure never had to refuse a throughput write.
        entries = simulator.requests()
        (key_patch,) = [
            r
            for r in entries
            if r["method"] == "PATCH" and "tp-raised" in r["path"] and "keyVaultKeyUri" in json.dumps(r.get("body"))
        ]
        puts = _throughput_puts(entries, "tp-raised")
        assert [r["status"] for r in puts if r["status"] != 412] == [202, 202, 202, 202]
        assert [r["sequence"] < key_patch["sequence"] for r in puts if r["status"] == 202] == [True, True, False, False]
        encryption_end = max(
            _seconds(o["endTime"])
            for o in simulator.operations()
            if o["kind"] == "enableCustomerManagedKey" and o["accountId"] == _account_id("tp-raised")
        )
        assert all(_seconds(r["time"]) >= encryption_end for r in puts[-2:])
        assert "throughputRaise" not in plain and _throughput_puts(entries, "tp-plain") == []

        # The dry run: the plan, the estimate with and without (the rollout's, from Azure Monitor), the cost.
        assert dry["outcome"] == "Planned", dry["reason"]
        plan = dry["throughputRaise"]["plan"]
        assert dry["throughputRaise"]["status"] == "planned" and plan["possible"]
        assert plan["extraRuPerSecond"] == 5000 and plan["raisedTotalRuPerSecond"] == 10000
        assert plan["expectedSecondsRaised"] == pytest.approx(plan["expectedSeconds"] / 6)
        assert plan["extraRuPerSecondHours"] == pytest.approx(5000 * plan["expectedSecondsRaised"] / 3600, abs=0.1)
        assert _throughput_puts(entries, "tp-dry") == []

        assert refused["outcome"] == "Refused"
        (finding,) = [f for f in refused["findings"] if f["code"] == "THROUGHPUT_RAISE_NOT_POSSIBLE"]
        assert finding["severity"] == "blocking" and "serverless" in finding["message"]
        assert refused["throughputRaise"]["status"] == "notPossible"
        assert not [r for r in entries if r["method"] in ("PUT", "PATCH") and "tp-serverless" in r["path"]]


@pytest.mark.timeout(300)
def test_a_failed_encryption_still_restores(clean_identity: None) -> None:
    # A document id over 990 bytes that the app's own scan is told not to look for: Azure's scan fails the encryption.
    world = _world("tp-doomed", data={"largestDocumentIdBytes": 1000})
    with LocalAzureStack(world, discrete=True, settings={"CMK_DOCUMENT_ID_SCAN": "false"}) as stack:
        output = _output(stack.host_url, _start(stack.host_url, "tp-doomed", throughputRaise=RAISE))
        assert output["outcome"] == "Failed" and "document scan for CMK Migration" in output["reason"], output["reason"]
        assert output["throughputRaise"]["status"] == "restored"
        assert _throughput(stack.simulator, "tp-doomed") == _original()
        accepted = [r for r in _throughput_puts(stack.simulator.requests(), "tp-doomed") if r["status"] == 202]
        assert len(accepted) == 4


@pytest.mark.timeout(400)
def test_a_stack_killed_between_raise_and_restore_still_restores(tmp_path: Path) -> None:
    world_file = tmp_path / "world.json"
    world_file.write_text(json.dumps(_world("tp-survivor", data={"dataSizeGiB": 6})))  # ~20 s real at 300x
    state = tmp_path / "state"
    host_port, azure_port = _free_port(), _free_port()
    first, host, _, _ = _serve(world_file, state, host_port, azure_port)
    try:
        instance_id = _start(host, "tp-survivor", throughputRaise=RAISE)
        deadline = time.monotonic() + 180
        while (_status(host, instance_id).get("customStatus") or {}).get("phase") != "encrypting":
            assert time.monotonic() < deadline
            time.sleep(0.2)
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait()

    second, host, azure, ca = _serve(world_file, state, host_port, azure_port)
    try:
        raised = requests.get(f"{azure}/_sandbox/resources", timeout=30, verify=ca).json()
        settings = [r for r in raised["value"] if str(r["id"]).endswith("/throughputSettings/default")]
        assert sorted(r["properties"]["resource"]["throughput"] for r in settings) == [
            800,
            2000,
        ]  # raised (autoscale at idle)
        deadline = time.monotonic() + 240
        while (status := _status(host, instance_id))["runtimeStatus"] not in ("Completed", "Failed", "Terminated"):
            assert time.monotonic() < deadline, status.get("customStatus")
            time.sleep(0.5)
        output = status["output"]
        assert output["outcome"] == "Enabled", output["reason"]
        assert output["throughputRaise"]["status"] == "restored"
        after = requests.get(f"{azure}/_sandbox/resources", timeout=30, verify=ca).json()["value"]
        restored = {
            str(r["id"]).split("/tp-survivor/")[1].removesuffix("/throughputSettings/default"): r["properties"][
                "resource"
            ]
            for r in after
            if str(r["id"]).endswith("/throughputSettings/default")
        }
        assert restored["sqlDatabases/sales"]["throughput"] == 1000
        assert restored["sqlDatabases/sales/containers/orders"]["autoscaleSettings"]["maxThroughput"] == 4000
    finally:
        second.send_signal(signal.SIGTERM)
        second.wait(timeout=30)


@pytest.mark.timeout(300)
def test_a_rollout_raises_each_account_right_before_its_key_patch(clean_identity: None) -> None:
    with LocalAzureStack(_world("tp-fleet-a", "tp-fleet-b"), discrete=True) as stack:
        url, simulator = stack.host_url, stack.simulator
        body: dict[str, Any] = {
            "accounts": [_account_id("tp-fleet-a"), _account_id("tp-fleet-b")],
            "keyUri": KEY_URI,
            "maxConcurrency": 1,
            "throughputRaise": RAISE,
        }
        reply = requests.post(f"{url}/api/cmk/rollouts", json=body, timeout=60)
        assert reply.status_code == 202, reply.text
        rollout = _output(url, reply.json()["id"])
        assert sorted(row["outcome"] for row in rollout["accounts"]) == ["Enabled", "Enabled"], rollout
        entries = simulator.requests()
        for name in ("tp-fleet-a", "tp-fleet-b"):
            assert _throughput(simulator, name) == _original()
            assert len([r for r in _throughput_puts(entries, name) if r["status"] == 202]) == 4
        # One slot: the second account is raised only after the first one's encryption ended, not while it waited.
        ends = sorted(_seconds(o["endTime"]) for o in simulator.operations() if o["kind"] == "enableCustomerManagedKey")
        accepted = sorted(
            _seconds(r["time"])
            for name in ("tp-fleet-a", "tp-fleet-b")
            for r in _throughput_puts(entries, name)
            if r["status"] == 202
        )
        assert accepted[4] >= ends[0]


@pytest.mark.timeout(300)
def test_stopping_at_the_deadline_leaves_the_raise_and_says_what_to_put_back(clean_identity: None) -> None:
    # 40 GiB at 6000 RU/s spare: about 12 simulated hours, past a 2-hour monitor deadline.
    world = _world("tp-long", data={"dataSizeGiB": 40})
    with LocalAzureStack(world, discrete=True, settings={"CMK_MONITOR_DEADLINE_HOURS": "2"}) as stack:
        output = _output(stack.host_url, _start(stack.host_url, "tp-long", throughputRaise=RAISE))
        assert output["outcome"] == "Encrypting", output["reason"]
        report = output["throughputRaise"]
        assert report["status"] == "restoreAfterEncryption" and "fromRuPerSecond" in report["reason"]
        assert [(c["fromRuPerSecond"], c["restoredAt"]) for c in report["changes"]] == [(1000, None), (4000, None)]
        # Azure still encrypts: the raise stays, and the app did not try a write Azure would refuse.
        assert _throughput(stack.simulator, "tp-long") == {
            "sqlDatabases/sales": 2000,
            "sqlDatabases/sales/containers/orders": 8000,
        }
        assert [r["status"] for r in _throughput_puts(stack.simulator.requests(), "tp-long")] == [202, 202]
