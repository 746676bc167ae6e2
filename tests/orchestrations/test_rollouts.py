"""Fleet rollouts through the HTTP API on the local host: key policy, caps (checked in the simulator's own log),
one failing account among many, dry runs, the CSV report, and bad requests."""

from __future__ import annotations

import csv
import io
import json
import time
from collections import defaultdict
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from sandbox.azure import builders as b
from sandbox.azure.testing import IDENTITY_ENV, SYSTEM, TENANT
from sandbox.stack import LocalAzureStack

SUBS = [
    "0a1b2c3d-4e5f-4a6b-8c7d-8e9f0a1b2c3d",
    "1b2c3d4e-5f6a-4b7c-9d8e-9f0a1b2c3d4e",
    "2c3d4e5f-6a7b-4c8d-8e9f-0a1b2c3d4e5f",
]
SIZES = {SUBS[0]: 10, SUBS[1]: 8, SUBS[2]: 4}
RG = "rg-fleet"
DEFAULT_KEY = "https://kv-fleet.vault.azure.net/keys/cosmos-cmk"
SUB0_KEY = "https://kv-fleet.vault.azure.net/keys/cosmos-cmk-sub0"
TAGGED_KEY = "https://kv-fleet.vault.azure.net/keys/cosmos-cmk-tagged"
FINAL = {"Completed", "Failed", "Terminated"}


def _id(subscription: str, name: str) -> str:
    return f"/subscriptions/{subscription}/resourceGroups/{RG}/providers/Microsoft.DocumentDB/databaseAccounts/{name}"


def _world() -> dict[str, Any]:
    vault = b.key_vault(SUBS[0], "rg-keys", "kv-fleet", tenant_id=TENANT)
    keys = [b.vault_key(vault, name) for name in ("cosmos-cmk", "cosmos-cmk-sub0", "cosmos-cmk-tagged")]
    accounts = []
    for subscription, count in SIZES.items():
        for index in range(count):
            tags = {"cmk-key-uri": TAGGED_KEY} if (subscription, index) == (SUBS[1], 0) else {}
            accounts.append(b.cosmos_account(subscription, RG, f"acct-{subscription[:4]}-{index:02d}", tags=tags))
    accounts.append(b.cosmos_account(SUBS[1], RG, "hidden-long-id", public_network_access="Disabled"))
    accounts.append(b.cosmos_account(SUBS[2], RG, "cassandra", capabilities=["EnableCassandra"]))
    data: dict[str, Any] = {_id(SUBS[1], "hidden-long-id"): {"largestDocumentIdBytes": 1000}}
    for position, account in enumerate(accounts[:6]):
        data[str(account["id"])] = {"dataSizeGiB": 0.5 * (position + 1), "spareRuPerSecond": 1000}
    resources = [vault, *keys, *accounts, *(b.sql_role_assignment(a, SYSTEM) for a in accounts)]
    return b.world(resources, tenant_id=TENANT, account_data=data)


@pytest.fixture(scope="module")
def stack() -> Iterator[LocalAzureStack]:
    with pytest.MonkeyPatch.context() as patch:
        for name in IDENTITY_ENV:
            patch.delenv(name, raising=False)
        # The key vault lives in the first subscription; the others find it through this setting.
        settings = {"CMK_KEY_VAULT_SUBSCRIPTIONS": json.dumps([SUBS[0]])}
        with LocalAzureStack(_world(), time_scale=1500, settings=settings) as running:
            yield running


def _start(stack: LocalAzureStack, body: dict[str, Any]) -> str:
    response = requests.post(f"{stack.host_url}/api/cmk/rollouts", json=body, timeout=60)
    assert response.status_code == 202, response.text
    instance_id: str = response.json()["id"]
    return instance_id


def _finish(stack: LocalAzureStack, instance_id: str, timeout: float = 300) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    seen_running = False
    while True:
        status: dict[str, Any] = requests.get(f"{stack.host_url}/api/cmk/rollouts/{instance_id}", timeout=60).json()
        custom = status.get("customStatus") or {}
        seen_running |= custom.get("phase") == "running"
        if status["runtimeStatus"] in FINAL:
            status["seenRunning"] = seen_running
            return status
        assert time.monotonic() < deadline, custom
        time.sleep(0.2)


POLICY = {"default": DEFAULT_KEY, "bySubscription": {SUBS[0]: SUB0_KEY}, "accountTag": "cmk-key-uri"}


def test_a_rollout_reports_every_account_keeps_its_caps_and_survives_a_failure(stack: LocalAzureStack) -> None:
    before = {str(o["id"]) for o in stack.simulator.operations()}
    instance_id = _start(
        stack,
        {
            "scope": {"subscriptions": SUBS},
            "keyPolicy": POLICY,
            "maxConcurrency": 5,
            "maxConcurrencyPerSubscription": 2,
        },
    )
    status = _finish(stack, instance_id)
    assert status["runtimeStatus"] == "Completed" and status["seenRunning"]
    output = status["output"]
    rows = {row["accountId"].lower(): row for row in output["accounts"]}
    expected = {_id(s, f"acct-{s[:4]}-{i:02d}").lower() for s, n in SIZES.items() for i in range(n)}
    expected |= {_id(SUBS[1], "hidden-long-id").lower(), _id(SUBS[2], "cassandra").lower()}
    assert set(rows) == expected and output["total"] == len(expected)
    assert sum(output["totals"].values()) == len(expected)
    assert rows[_id(SUBS[1], "hidden-long-id").lower()]["outcome"] == "Failed", rows[
        _id(SUBS[1], "hidden-long-id").lower()
    ]
    assert rows[_id(SUBS[2], "cassandra").lower()]["outcome"] == "Refused"
    assert output["totals"]["Enabled"] == len(expected) - 2
    # The most specific key rule won for each account.
    assert rows[_id(SUBS[0], f"acct-{SUBS[0][:4]}-03").lower()]["keyUri"] == SUB0_KEY
    assert rows[_id(SUBS[1], f"acct-{SUBS[1][:4]}-00").lower()]["keyUri"] == TAGGED_KEY
    assert rows[_id(SUBS[2], f"acct-{SUBS[2][:4]}-01").lower()]["keyUri"] == DEFAULT_KEY

    # Caps, from what reached "Azure": they bound the key operations (from the key PATCH to the encryption's end);
    # preparation (identity, key access) runs ahead of them.
    spans: dict[str, list[str]] = {}
    for operation in stack.simulator.operations():
        if str(operation["id"]) in before or "keyVaultKeyUri" not in (
            (operation["changes"] or {}).get("properties") or {}
        ):
            continue
        span = spans.setdefault(operation["accountId"].lower(), [operation["startTime"], operation["endTime"]])
        span[0] = min(span[0], operation["startTime"])
        span[1] = max(span[1], operation["endTime"])
    edges = sorted((t, +1 if kind == 0 else -1, a) for a, span in spans.items() for kind, t in enumerate(span))
    in_flight: dict[str, int] = defaultdict(int)
    total = peak = 0
    peak_per_subscription: dict[str, int] = defaultdict(int)
    for _, step, account in sorted(edges, key=lambda edge: (edge[0], edge[1])):
        subscription = account.split("/")[2]
        total += step
        in_flight[subscription] += step
        peak = max(peak, total)
        peak_per_subscription[subscription] = max(peak_per_subscription[subscription], in_flight[subscription])
    assert peak <= 5 and max(peak_per_subscription.values()) <= 2
    assert peak >= 3, "the caps are used, not just respected"

    report = requests.get(f"{stack.host_url}/api/cmk/rollouts/{instance_id}/report", timeout=60)
    assert report.status_code == 200 and report.headers["Content-Type"].startswith("text/csv")
    lines = list(csv.DictReader(io.StringIO(report.text)))
    assert {line["accountId"].lower() for line in lines} == expected


def test_a_dry_run_plans_the_fleet_without_a_write(stack: LocalAzureStack) -> None:
    writes_before = len([r for r in stack.simulator.requests() if r["method"] in ("PUT", "PATCH")])
    instance_id = _start(stack, {"scope": {"subscriptions": [SUBS[2]]}, "keyUri": DEFAULT_KEY, "dryRun": True})
    output = _finish(stack, instance_id)["output"]
    # SUBS[2] accounts were enabled by the first test; a fresh dry run finds them done or refused.
    assert set(output["totals"]) <= {"AlreadyEnabled", "Refused", "Planned"}
    writes_after = len([r for r in stack.simulator.requests() if r["method"] in ("PUT", "PATCH")])
    assert writes_after == writes_before


def test_accounts_without_a_key_and_missing_accounts_are_reported_not_skipped(stack: LocalAzureStack) -> None:
    ghost = _id(SUBS[0], "ghost")
    named = [_id(SUBS[1], f"acct-{SUBS[1][:4]}-05"), ghost]
    instance_id = _start(
        stack, {"accounts": named, "keyPolicy": {"bySubscription": {SUBS[0]: SUB0_KEY}}, "dryRun": True}
    )
    rows = {row["accountId"].lower(): row for row in _finish(stack, instance_id)["output"]["accounts"]}
    assert rows[ghost.lower()]["outcome"] == "Refused" and "ACCOUNT_NOT_FOUND" in rows[ghost.lower()]["reason"]
    no_key = rows[named[0].lower()]
    assert no_key["outcome"] == "Refused" and "KEY_POLICY_NO_MATCH" in no_key["reason"]


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"keyUri": DEFAULT_KEY}, "NoAccounts"),
        ({"accounts": ["nope"], "keyUri": DEFAULT_KEY}, "InvalidAccountId"),
        ({"scope": {"subscriptions": []}, "keyUri": DEFAULT_KEY}, "InvalidScope"),
        ({"scope": {"subscriptions": [SUBS[0]]}}, "NoKey"),
        ({"scope": {"subscriptions": [SUBS[0]]}, "keyUri": DEFAULT_KEY, "keyPolicy": POLICY}, "AmbiguousKey"),
        ({"scope": {"subscriptions": [SUBS[0]]}, "keyUri": DEFAULT_KEY, "maxConcurrency": 0}, "InvalidConcurrency"),
        ({"scope": {"subscriptions": [SUBS[0]]}, "keyPolicy": {"default": "http://x"}}, "InvalidKeyPolicy"),
    ],
)
def test_a_bad_rollout_request_is_a_400(stack: LocalAzureStack, body: dict[str, Any], code: str) -> None:
    response = requests.post(f"{stack.host_url}/api/cmk/rollouts", json=body, timeout=60)
    assert response.status_code == 400 and response.json()["error"]["code"] == code


def test_the_report_of_a_running_or_unknown_rollout_is_refused(stack: LocalAzureStack) -> None:
    assert requests.get(f"{stack.host_url}/api/cmk/rollouts/cmk-rollout-nope/report", timeout=60).status_code == 404
