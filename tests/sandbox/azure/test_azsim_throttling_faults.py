"""ARM throttling (token buckets on the simulated clock) and fault injection."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest
import requests
from azure.core.exceptions import HttpResponseError

from sandbox.azure import AzureSimulator
from sandbox.azure.testing import RG, SUB, SYSTEM, StandardWorld, call, cosmos_client, standard_world

ORDERS = f"/subscriptions/{SUB}/resourceGroups/{RG}/providers/Microsoft.DocumentDB/databaseAccounts/cosmos-orders"
OTHER = "2b3c4d5e-6f70-4819-a2b3-c4d5e6f7a8b9"
THIRD = "3c4d5e6f-7081-492a-b3c4-d5e6f7a8b9c0"


def _throttled_world(**throttling: Any) -> dict[str, Any]:
    throttled = {"readBucket": 3, "readRefillPerSecond": 1, **throttling}
    return standard_world(grants=[SYSTEM, OTHER, THIRD], throttling=throttled).world


def test_reads_beyond_the_bucket_get_429_with_retry_after(start_simulator: Callable[..., AzureSimulator]) -> None:
    simulator = start_simulator(_throttled_world())
    remaining = [
        call(simulator, "GET", ORDERS).headers["x-ms-ratelimit-remaining-subscription-reads"] for _ in range(3)
    ]
    assert remaining == ["2", "1", "0"]
    throttled = call(simulator, "GET", ORDERS)
    assert throttled.status_code == 429
    assert throttled.headers["Retry-After"] == "1"
    assert throttled.json()["error"]["code"] == "SubscriptionRequestsThrottled"
    assert "x-ms-ratelimit-remaining-subscription-global-reads" in throttled.headers
    assert call(simulator, "GET", ORDERS, principal=OTHER).status_code == 200  # buckets are per principal
    simulator.advance(1)  # refill follows simulated time
    assert call(simulator, "GET", ORDERS).status_code == 200
    with pytest.raises(HttpResponseError) as refused:
        cosmos_client(simulator).database_accounts.get(RG, "cosmos-orders")  # retry_total=0 in the helper
    assert refused.value.status_code == 429


def test_the_global_bucket_spans_principals(start_simulator: Callable[..., AzureSimulator]) -> None:
    simulator = start_simulator(_throttled_world(globalMultiplier=2))
    statuses = [call(simulator, "GET", ORDERS, principal=principal).status_code for principal in (OTHER, OTHER, OTHER)]
    statuses += [call(simulator, "GET", ORDERS, principal=THIRD).status_code for _ in range(3)]
    assert statuses == [200] * 6
    fresh = call(simulator, "GET", ORDERS, principal="4d5e6f70-8192-4a3b-84d5-e6f7a8b9c0d1")
    assert fresh.status_code == 429
    assert fresh.headers["x-ms-ratelimit-remaining-subscription-global-reads"] == "0"


def test_writes_carry_their_own_headers(sim: AzureSimulator) -> None:
    response = call(sim, "PATCH", ORDERS, {"tags": {"a": "b"}})
    assert response.headers["x-ms-ratelimit-remaining-subscription-writes"] == "199"
    assert response.headers["x-ms-ratelimit-remaining-subscription-global-writes"] == "2999"


def test_status_fault_for_the_next_request_only(sim: AzureSimulator) -> None:
    sim.add_fault(
        {"method": "GET", "path": "databaseAccounts/cosmos-orders", "kind": "status", "status": 503, "count": 1}
    )
    first = call(sim, "GET", ORDERS)
    assert first.status_code == 503 and first.json()["error"]["code"] == "ServiceUnavailable"
    assert call(sim, "GET", ORDERS).status_code == 200


def test_sdk_retries_through_a_transient_fault(sim: AzureSimulator) -> None:
    from azure.identity import DefaultAzureCredential
    from azure.mgmt.cosmosdb import CosmosDBManagementClient

    sim.add_fault({"path": "/databaseAccounts/cosmos-orders\\?", "kind": "status", "status": 500, "count": 2})
    client = CosmosDBManagementClient(DefaultAzureCredential(), SUB, base_url=sim.base_url, retry_backoff_factor=0.01)
    assert client.database_accounts.get(RG, "cosmos-orders").name == "cosmos-orders"
    statuses = [entry["status"] for entry in sim.requests() if "cosmos-orders?" in entry["path"]]
    assert statuses == [500, 500, 200]


def test_connection_reset_fault(sim: AzureSimulator) -> None:
    sim.add_fault({"path": "cosmos-orders", "kind": "reset", "count": 1})
    with pytest.raises(requests.exceptions.ConnectionError):
        call(sim, "GET", ORDERS)
    assert call(sim, "GET", ORDERS).status_code == 200


def test_slow_fault(sim: AzureSimulator) -> None:
    sim.add_fault({"path": "cosmos-orders", "kind": "slow", "delaySeconds": 0.3, "count": 1})
    started = time.monotonic()
    assert call(sim, "GET", ORDERS).status_code == 200
    assert time.monotonic() - started >= 0.3


def test_probabilistic_faults_are_repeatable(start_simulator: Callable[..., AzureSimulator]) -> None:
    rule = {"path": "cosmos-orders", "kind": "status", "status": 502, "probability": 0.5}
    patterns = []
    for _ in range(2):
        simulator = start_simulator(standard_world(faults=[rule], randomSeed=7).world)
        patterns.append([call(simulator, "GET", ORDERS).status_code for _ in range(20)])
    assert patterns[0] == patterns[1]
    assert 502 in patterns[0] and 200 in patterns[0]


def test_faults_over_http(sim: AzureSimulator, std: StandardWorld) -> None:
    url = f"{sim.base_url}/_sandbox/faults"
    added = requests.post(
        url, json={"path": "keys", "kind": "status", "status": 504}, verify=sim.ca_bundle_path, timeout=10
    )
    assert added.status_code == 200
    assert call(sim, "GET", std.key["id"]).status_code == 504
    assert requests.delete(url, verify=sim.ca_bundle_path, timeout=10).json() == {"removed": 1}
    assert call(sim, "GET", std.key["id"]).status_code == 200
    invalid = requests.post(url, json={"kind": "explode"}, verify=sim.ca_bundle_path, timeout=10)
    assert invalid.status_code == 400
