"""A fleet rollout to completion on the local host: accounts in six subscriptions, the key in one of them, many
lanes at once; every account ends in the report with an outcome, and the rollout's status stays the same size
whatever the fleet's. `make bench` runs rollouts of 200 and 1,000 accounts with figures (bench/fleet.py)."""

from __future__ import annotations

import csv
import io
import json
import time

import pytest
import requests

from bench import fleet
from sandbox.azure import builders as b
from sandbox.azure.testing import IDENTITY_ENV, SYSTEM, TENANT
from sandbox.host.config import default_worker_threads
from sandbox.stack import LocalAzureStack

SUBSCRIPTIONS = [f"{index:08d}-aaaa-4bbb-8ccc-dddddddddddd" for index in range(1, 7)]
ACCOUNTS = 12
MAX_CONCURRENCY = 4  # three accounts a lane, one after another
KEY = "https://kv-scale.vault.azure.net/keys/cosmos-cmk"
# The rollout's status holds counts, not accounts: listing even these 12 account ids would take ~1,600 characters.
MAX_STATUS_CHARACTERS = 1_000


@pytest.mark.timeout(300)
def test_a_fleet_rollout_completes_with_a_complete_report(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in IDENTITY_ENV:
        monkeypatch.delenv(name, raising=False)
    vaults = [
        b.key_vault(s, "rg-keys", f"kv-scale-{i}" if i else "kv-scale", tenant_id=TENANT)
        for i, s in enumerate(SUBSCRIPTIONS)
    ]
    accounts = [b.cosmos_account(SUBSCRIPTIONS[i % 6], "rg-scale", f"scale-{i:03d}") for i in range(ACCOUNTS)]
    resources = [
        *vaults,
        b.vault_key(vaults[0], "cosmos-cmk"),
        *accounts,
        *(b.sql_role_assignment(a, SYSTEM) for a in accounts),
    ]
    settings = {"CMK_KEY_VAULT_SUBSCRIPTIONS": f'["{SUBSCRIPTIONS[0]}"]'}
    with LocalAzureStack(b.world(resources, tenant_id=TENANT), time_scale=3000, settings=settings) as stack:
        response = requests.post(
            f"{stack.host_url}/api/cmk/rollouts",
            json={"scope": {"subscriptions": SUBSCRIPTIONS}, "keyUri": KEY, "maxConcurrency": MAX_CONCURRENCY},
            timeout=60,
        )
        assert response.status_code == 202, response.text
        instance_id = response.json()["id"]
        deadline = time.monotonic() + 240
        largest_status = 0
        while (status := requests.get(f"{stack.host_url}/api/cmk/rollouts/{instance_id}", timeout=60).json())[
            "runtimeStatus"
        ] not in ("Completed", "Failed", "Terminated"):
            assert time.monotonic() < deadline, status.get("customStatus")
            largest_status = max(largest_status, len(json.dumps(status.get("customStatus"))))
            time.sleep(0.5)
        assert 0 < largest_status < MAX_STATUS_CHARACTERS
        output = status["output"]
        assert status["runtimeStatus"] == "Completed"
        assert output["total"] == ACCOUNTS and output["totals"] == {"Enabled": ACCOUNTS}
        report = requests.get(f"{stack.host_url}/api/cmk/rollouts/{instance_id}/report", timeout=60).text
        rows = list(csv.DictReader(io.StringIO(report)))
        assert sorted(row["accountId"].lower() for row in rows) == sorted(str(a["id"]).lower() for a in accounts)
        assert all(row["outcome"] == "Enabled" and row["operationStatus"] == "Succeeded" for row in rows)


@pytest.mark.timeout(300)
def test_a_fleet_dry_run_reads_the_shared_vault_per_process_and_asks_resource_graph_once() -> None:
    """The short version of `make bench`'s dry runs: 60 accounts in ten subscriptions, one vault in the first.
    Read per account, the vault's subscription bounded a 1,000-account dry run (6.3 ARM requests an account, 117 s
    simulated); the subscriptions' tenants, asked one subscription at a time, spent Resource Graph's quota; and
    asked per process, the preflights that missed the cache together queued for that quota, two queries each, so
    a dry run took 11 s or 35 s by chance."""
    figures = fleet.rollout(60, dry_run=True)
    assert figures["totals"] == {"Planned": 60}
    assert figures["throttled429"] == 0
    # The vault and the key once per process and 30 s, but the preflights that miss the cache together each read
    # them: at most one per thread of each worker process. 120 reads when read per account (6 to 16 measured).
    running_at_once = default_worker_threads() * figures["workerProcesses"]
    assert figures["keyVaultReads"] <= 2 * running_at_once, figures
    # Discovery's query for the accounts (their tenants with them), and one for the vault: the preflights ask none
    # (7 to 10 when each process asked for the tenants and the vault; 21 and more one subscription at a time).
    assert figures["resourceGraphQueries"] == 2, figures
    assert figures["armRequestsPerAccount"] < 4, figures
    assert figures["makespanSeconds"] < 10, figures  # 1.5 to 1.7 s measured; 14.3 s with the tenants asked apart
