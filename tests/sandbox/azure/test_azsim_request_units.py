"""The data plane's request units: charges per page read, lazily synthesized large containers, TOP and AND filters,
and throttling (429, substatus 3200, x-ms-retry-after-ms) on the account's spare RU/s for low-priority requests."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from typing import Any

import pytest
import requests

from sandbox.azure import AzureSimulator, dataplane, load_world, mint_token
from sandbox.azure import builders as b
from sandbox.azure.testing import RG, SUB, SYSTEM, TENANT, standard_world
from sandbox.azure.world import WorldError

ITEMS = "/dbs/appdb/colls/items/docs"


def _world(account_data: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    account = b.cosmos_account(SUB, RG, "cosmos-ru")
    std = standard_world()
    resources = [*std.world["resources"], account, b.sql_role_assignment(account, SYSTEM)]
    return b.world(resources, tenant_id=TENANT, account_data={account["id"]: account_data}), account


def _query(
    simulator: AzureSimulator,
    text: str,
    parameters: list[dict[str, Any]] | None = None,
    *,
    page_size: int = 100,
    continuation: str | None = None,
    low_priority: bool = True,
    extra_headers: dict[str, str] | None = None,
) -> requests.Response:
    token = mint_token(SYSTEM, tenant_id=simulator.tenant_id, audience="https://cosmos.azure.com")
    headers = {
        "Authorization": f"type=aad&ver=1.0&sig={token}",
        "Content-Type": "application/query+json",
        "x-ms-documentdb-isquery": "true",
        "x-ms-max-item-count": str(page_size),
    }
    if low_priority:
        headers["x-ms-cosmos-priority-level"] = "Low"
    if continuation is not None:
        headers["x-ms-continuation"] = continuation
    headers.update(extra_headers or {})
    body: dict[str, Any] = {"query": text, "parameters": parameters or []}
    url = f"{simulator.base_url}/cosmos/cosmos-ru{ITEMS}"
    return requests.post(url, json=body, headers=headers, verify=simulator.ca_bundle_path, timeout=30)


def _charge(response: requests.Response) -> float:
    return float(response.headers["x-ms-request-charge"])


def test_a_million_documents_cost_per_page_read_and_are_never_materialized(
    start_simulator: Callable[..., AzureSimulator],
) -> None:
    world, _account = _world({"documentCount": 1_000_000})
    simulator = start_simulator(world)
    empty = _query(simulator, "SELECT c.id FROM c WHERE LENGTH(c.id) > 990")
    assert empty.status_code == 200 and empty.json()["Documents"] == []
    assert _charge(empty) == pytest.approx(
        dataplane.QUERY_BASE_CHARGE + dataplane.QUERY_CHARGE_PER_DOCUMENT_READ * dataplane.DOCUMENTS_READ_PER_PAGE
    )
    position = json.loads(base64.b64decode(empty.headers["x-ms-continuation"]))
    assert position["offset"] == dataplane.DOCUMENTS_READ_PER_PAGE
    # A dense page stops at the page size, and costs what it read.
    dense = _query(simulator, "SELECT VALUE c.id FROM c", page_size=10)
    assert len(dense.json()["Documents"]) == 10 and len(dense.json()["Documents"][0]) == 36
    assert _charge(dense) == pytest.approx(dataplane.QUERY_BASE_CHARGE + 10 * dataplane.QUERY_CHARGE_PER_DOCUMENT_READ)
    # The last page of the million.
    last = base64.b64encode(json.dumps({"offset": 999_990}).encode()).decode()
    tail = _query(simulator, "SELECT c.id FROM c", continuation=last)
    assert len(tail.json()["Documents"]) == 10 and "x-ms-continuation" not in tail.headers


def test_top_1_finds_the_long_id_placed_by_largest_document_id_bytes(
    start_simulator: Callable[..., AzureSimulator],
) -> None:
    world, _account = _world({"documentCount": 2500, "largestDocumentIdBytes": 1000})
    simulator = start_simulator(world)
    found: list[Any] = []
    continuation: str | None = None
    pages = 0
    while True:
        response = _query(
            simulator,
            "SELECT TOP 1 c.id FROM c WHERE LENGTH(c.id) > @limit",
            [{"name": "@limit", "value": 990}],
            continuation=continuation,
        )
        pages += 1
        found += response.json()["Documents"]
        continuation = response.headers.get("x-ms-continuation")
        if continuation is None:
            break
    assert pages == 3  # 1,000 documents read a page; the long id is the last of the 2,500
    assert [len(row["id"]) for row in found] == [1000]


def test_and_filters_select_the_ids_between_two_lengths(start_simulator: Callable[..., AzureSimulator]) -> None:
    documents = [{"id": "a" * 247}, {"id": "b" * 248}, {"id": "c" * 990}, {"id": "d" * 991}]
    world, _account = _world({"databases": {"appdb": {"items": documents}}})
    simulator = start_simulator(world)
    response = _query(
        simulator,
        "SELECT c.id FROM c WHERE LENGTH(c.id) > @minChars AND LENGTH(c.id) <= @limit",
        [{"name": "@minChars", "value": 247}, {"name": "@limit", "value": 990}],
    )
    assert [row["id"][0] for row in response.json()["Documents"]] == ["b", "c"]
    plan = _query(
        simulator,
        "SELECT TOP 1 c.id FROM c WHERE LENGTH(c.id) > 990",
        extra_headers={"x-ms-cosmos-is-query-plan-request": "true"},
    )
    assert plan.json()["queryInfo"]["top"] == 1 and _charge(plan) == 0


def test_low_priority_requests_are_throttled_on_the_spare_throughput(
    start_simulator: Callable[..., AzureSimulator],
) -> None:
    world, _account = _world({"documentCount": 100_000, "spareRuPerSecond": 30})
    simulator = start_simulator(world)
    first = _query(simulator, "SELECT c.id FROM c WHERE LENGTH(c.id) > 990")
    second = _query(simulator, "SELECT c.id FROM c WHERE LENGTH(c.id) > 990")
    assert first.status_code == 200 and second.status_code == 200  # 22.5 RU, then 45 RU: the second overshoots
    throttled = _query(simulator, "SELECT c.id FROM c WHERE LENGTH(c.id) > 990")
    assert throttled.status_code == 429
    assert throttled.headers["x-ms-substatus"] == "3200"
    assert 0 < int(throttled.headers["x-ms-retry-after-ms"]) <= 1000
    assert "Request rate is large" in throttled.json()["message"]
    # Normal priority takes from the workload's share: not throttled on the spare RU/s (no provisioned RU/s given).
    assert _query(simulator, "SELECT c.id FROM c WHERE LENGTH(c.id) > 990", low_priority=False).status_code == 200
    simulator.advance(1.0)  # a simulated second later the window is empty again
    assert _query(simulator, "SELECT c.id FROM c WHERE LENGTH(c.id) > 990").status_code == 200
    with simulator.state.lock:
        statuses = [(entry["priority"], entry["status"]) for entry in dataplane.request_charges(simulator.state)]
    assert statuses == [("Low", 200), ("Low", 200), ("Low", 429), ("High", 200), ("Low", 200)]
    assert [entry["status"] for entry in simulator.requests() if entry.get("plane") == "data"] == [
        200,
        200,
        429,
        200,
        200,
    ]


def test_normal_priority_is_throttled_on_the_provisioned_throughput(
    start_simulator: Callable[..., AzureSimulator],
) -> None:
    world, _account = _world({"documentCount": 100_000, "spareRuPerSecond": 10, "provisionedRuPerSecond": 40})
    simulator = start_simulator(world)
    statuses = [
        _query(simulator, "SELECT c.id FROM c WHERE LENGTH(c.id) > 990", low_priority=False).status_code
        for _ in range(3)
    ]
    assert statuses == [200, 200, 429]


def test_document_count_is_validated() -> None:
    world, account = _world({"documentCount": 0})
    with pytest.raises(WorldError, match="documentCount"):
        load_world(world)
    world["accountData"][account["id"]] = {"documentCount": 5, "databases": {"appdb": {"items": []}}}
    with pytest.raises(WorldError, match="documentCount"):
        load_world(world)
