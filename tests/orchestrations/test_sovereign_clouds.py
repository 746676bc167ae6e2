"""The app in Azure Government and Azure China: the simulator answers as that cloud (its ARM token audience, its
Key Vault and Cosmos DB domains), the app is configured with AZURE_CLOUD alone, and a one-account rollout ends
Enabled; a key of another cloud is refused with 400 before anything starts."""

from __future__ import annotations

import io
import json
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import unquote

import pytest
import requests

from sandbox.azure import AzureSimulator, mint_token
from sandbox.azure import builders as b
from sandbox.azure.clouds import as_cloud, cloud_named
from sandbox.azure.testing import IDENTITY_ENV, SYSTEM, TENANT, call
from sandbox.demo import DEFAULT_WORLD, run_demo
from sandbox.stack import LocalAzureStack

SUB = "6a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d"
RG = "rg-sovereign"
FINAL = {"Completed", "Failed", "Terminated"}


def _world(cloud: str) -> dict[str, Any]:
    vault = b.key_vault(SUB, RG, "kv-sovereign", tenant_id=TENANT)
    account = b.cosmos_account(SUB, RG, "orders", location="West US 2")
    resources = [vault, b.vault_key(vault, "cosmos-cmk"), account, b.sql_role_assignment(account, SYSTEM)]
    return as_cloud(b.world(resources, tenant_id=TENANT), cloud)


@pytest.fixture(params=["AzureUSGovernment", "AzureChinaCloud"])
def stack(request: pytest.FixtureRequest) -> Iterator[LocalAzureStack]:
    with pytest.MonkeyPatch.context() as patch:
        for name in IDENTITY_ENV:
            patch.delenv(name, raising=False)
        with LocalAzureStack(_world(request.param), time_scale=1500) as running:
            yield running


def _finish(stack: LocalAzureStack, instance_id: str, timeout: float = 240) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        status: dict[str, Any] = requests.get(f"{stack.host_url}/api/cmk/rollouts/{instance_id}", timeout=60).json()
        if status["runtimeStatus"] in FINAL:
            return status
        assert time.monotonic() < deadline, status.get("customStatus")
        time.sleep(0.2)


def test_a_one_account_rollout_in_a_sovereign_cloud_ends_enabled(stack: LocalAzureStack) -> None:
    cloud = cloud_named(stack.simulator.settings.cloud)
    account = f"/subscriptions/{SUB}/resourceGroups/{RG}/providers/Microsoft.DocumentDB/databaseAccounts/orders"
    key = f"https://kv-sovereign.{cloud.key_vault_suffix}/keys/cosmos-cmk"

    # A key of the public cloud is refused before anything starts, on both routes.
    public = "https://kv-sovereign.vault.azure.net/keys/cosmos-cmk"
    before = len(stack.simulator.requests())
    for route, body in (
        ("cmk/accounts", {"accountId": account, "keyUri": public}),
        ("cmk/rollouts", {"accounts": [account], "keyUri": public}),
    ):
        refused = requests.post(f"{stack.host_url}/api/{route}", json=body, timeout=60)
        assert refused.status_code == 400, refused.text
        error = refused.json()["error"]
        assert error["code"] == "KeyUriOfAnotherCloud" and cloud.name in error["message"], error
    assert stack.simulator.requests(since=before) == []

    started = requests.post(
        f"{stack.host_url}/api/cmk/rollouts", json={"accounts": [account], "keyUri": key}, timeout=60
    )
    assert started.status_code == 202, started.text
    status = _finish(stack, started.json()["id"])
    assert status["runtimeStatus"] == "Completed", status
    report = requests.get(f"{stack.host_url}/api/cmk/rollouts/{started.json()['id']}/report?format=json", timeout=60)
    rows = report.json()["accounts"] if isinstance(report.json(), dict) else report.json()
    assert [(row["accountId"].lower(), row["outcome"]) for row in rows] == [(account.lower(), "Enabled")], rows

    enabled = stack.simulator.resource(account)
    assert enabled is not None and enabled["properties"]["keyVaultKeyUri"] == key
    # Every token the app asked for was for this cloud's ARM (the simulator refuses any other audience).
    tokens = [r for r in stack.simulator.requests() if r.get("plane") == "identity"]
    resources = {r["path"].split("resource=", 1)[1].split("&", 1)[0] for r in tokens if "resource=" in r["path"]}
    assert resources and all(
        unquote(resource).rstrip("/") in cloud.arm_audiences or "127.0.0.1" in resource for resource in resources
    ), resources
    arm = [r for r in stack.simulator.requests() if r.get("plane") not in ("identity", "data")]
    assert arm and all(r["status"] != 401 for r in arm)


@pytest.mark.parametrize("name", ["AzureUSGovernment", "AzureChinaCloud"])
def test_the_simulator_answering_as_a_cloud_refuses_tokens_of_another(name: str) -> None:
    cloud = cloud_named(name)
    account = f"/subscriptions/{SUB}/resourceGroups/{RG}/providers/Microsoft.DocumentDB/databaseAccounts/orders"
    with AzureSimulator(_world(name)) as simulator:
        public = mint_token(SYSTEM, tenant_id=TENANT, audience="https://management.azure.com/")
        refused = call(simulator, "GET", account, token=public)
        assert refused.status_code == 401
        assert refused.json()["error"]["code"] == "InvalidAuthenticationTokenAudience"
        for audience in sorted(cloud.arm_audiences):
            own = mint_token(SYSTEM, tenant_id=TENANT, audience=audience + "/")
            answered = call(simulator, "GET", account, token=own)
            assert answered.status_code == 200, answered.text
            assert answered.json()["properties"]["documentEndpoint"].startswith(simulator.base_url)
        vault = simulator.resource(
            f"{account.split('/providers/')[0]}/providers/Microsoft.KeyVault/vaults/kv-sovereign"
        )
        assert (
            vault is not None and vault["properties"]["vaultUri"] == f"https://kv-sovereign.{cloud.key_vault_suffix}/"
        )
        assert simulator.app_settings()["AZURE_CLOUD"] == cloud.name


@pytest.mark.parametrize("name", ["AzureUSGovernment", "AzureChinaCloud"])
def test_the_demo_reaches_every_predicted_outcome_in_a_sovereign_cloud(
    monkeypatch: pytest.MonkeyPatch, name: str
) -> None:
    for variable in IDENTITY_ENV:
        monkeypatch.delenv(variable, raising=False)
    world = as_cloud(json.loads(DEFAULT_WORLD.read_text(encoding="utf-8")), name)
    expectations = world["expectations"]
    suffix = cloud_named(name).key_vault_suffix
    assert all(suffix in expectation["keyUri"] for expectation in expectations.values())
    out = io.StringIO()
    with LocalAzureStack(world, discrete=True) as stack:
        assert stack.simulator.app_settings()["AZURE_CLOUD"] == name
        exit_code = run_demo(stack, expectations, timeout=300, out=out)
    assert exit_code == 0, out.getvalue()
    assert f"{len(expectations)}/{len(expectations)} accounts reached the predicted outcome" in out.getvalue()
