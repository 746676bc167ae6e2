"""Event Grid ResourceWrite* events pushed to webhook subscribers, with retries and duplicates."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
import requests

from sandbox.azure import AzureSimulator
from sandbox.azure.testing import RG, SUB, SYSTEM, TENANT, call, standard_world

ORDERS = f"/subscriptions/{SUB}/resourceGroups/{RG}/providers/Microsoft.DocumentDB/databaseAccounts/cosmos-orders"


class Receiver:
    """A webhook endpoint that records deliveries and fails the first `failures` of them."""

    def __init__(self, failures: int = 0) -> None:
        self.deliveries: list[tuple[dict[str, str], Any]] = []
        self.failures = failures
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                length = int(self.headers.get("Content-Length", 0))
                payload = json.loads(self.rfile.read(length))
                receiver.deliveries.append(({key.lower(): value for key, value in self.headers.items()}, payload))
                status = 500 if receiver.failures > 0 else 200
                receiver.failures -= 1
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                """Quiet."""

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/api/events"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver_factory() -> Iterator[Callable[..., Receiver]]:
    receivers: list[Receiver] = []

    def make(failures: int = 0) -> Receiver:
        receiver = Receiver(failures)
        receivers.append(receiver)
        return receiver

    yield make
    for receiver in receivers:
        receiver.close()


def wait_for(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.02)


def test_write_success_is_published_when_the_operation_completes(
    start_simulator: Callable[..., AzureSimulator], receiver_factory: Callable[..., Receiver]
) -> None:
    receiver = receiver_factory()
    subscription = {"name": "cmk-rollout", "endpoint": receiver.url, "schema": "EventGridSchema"}
    simulator = start_simulator(standard_world(eventSubscriptions=[subscription]).world)
    call(simulator, "PATCH", ORDERS, {"tags": {"team": "orders"}})
    time.sleep(0.2)
    assert receiver.deliveries == []  # nothing while the operation runs
    simulator.advance(simulator.settings.update_operation_seconds)
    wait_for(lambda: len(receiver.deliveries) == 1)
    headers, payload = receiver.deliveries[0]
    assert headers["aeg-event-type"] == "Notification" and headers["aeg-subscription-name"] == "CMK-ROLLOUT"
    (event,) = payload
    assert event["eventType"] == "Microsoft.Resources.ResourceWriteSuccess"
    assert event["subject"] == ORDERS and event["topic"] == f"/subscriptions/{SUB}"
    assert event["dataVersion"] == "2" and event["metadataVersion"] == "1"
    data = event["data"]
    assert data["operationName"] == "Microsoft.DocumentDB/databaseAccounts/write"
    assert data["status"] == "Succeeded" and data["resourceUri"] == ORDERS and data["tenantId"] == TENANT
    assert data["authorization"]["evidence"]["principalId"] == SYSTEM
    assert data["claims"]["http://schemas.microsoft.com/identity/claims/objectidentifier"] == SYSTEM
    assert data["httpRequest"]["method"] == "PATCH"
    (record,) = simulator.events()
    assert record["outcome"] == "delivered" and record["eventId"] == event["id"]


def test_cloud_events_with_filters_registered_at_run_time(
    start_simulator: Callable[..., AzureSimulator], receiver_factory: Callable[..., Receiver]
) -> None:
    receiver = receiver_factory()
    std = standard_world()
    simulator = start_simulator(std.world)
    registration = requests.post(
        f"{simulator.base_url}/_sandbox/eventSubscriptions",
        json={
            "endpoint": receiver.url,
            "schema": "CloudEventSchemaV1_0",
            "subjectBeginsWith": f"/subscriptions/{SUB}/resourceGroups/{RG}/providers/Microsoft.DocumentDB",
            "includedEventTypes": ["Microsoft.Resources.ResourceWriteFailure"],
        },
        verify=simulator.ca_bundle_path,
        timeout=10,
    )
    assert registration.status_code == 200
    call(simulator, "PATCH", ORDERS, {"tags": {"a": "b"}})  # a success: filtered out
    simulator.advance(60)
    call(simulator, "PATCH", ORDERS, {"properties": {"keyVaultKeyUri": "https://kv-gone.vault.azure.net/keys/k"}})
    simulator.advance(24 * 3600)
    wait_for(lambda: len(receiver.deliveries) == 1)
    headers, event = receiver.deliveries[0]
    assert headers["content-type"].startswith("application/cloudevents+json")
    assert event["specversion"] == "1.0" and event["source"] == f"/subscriptions/{SUB}"
    assert event["type"] == "Microsoft.Resources.ResourceWriteFailure" and event["subject"] == ORDERS
    assert event["data"]["status"] == "Failed"
    time.sleep(0.2)
    assert len(receiver.deliveries) == 1


def test_failed_deliveries_are_retried_on_the_simulated_schedule(
    start_simulator: Callable[..., AzureSimulator], receiver_factory: Callable[..., Receiver]
) -> None:
    receiver = receiver_factory(failures=2)
    simulator = start_simulator(standard_world(eventSubscriptions=[{"endpoint": receiver.url}]).world)
    call(simulator, "PATCH", ORDERS, {"tags": {"a": "b"}})
    simulator.advance(simulator.settings.update_operation_seconds)
    # Each retry is scheduled when the simulator has recorded the failed attempt: wait for that record before moving
    # time, or the move can come first (a loaded machine) and the retry lands after it.
    wait_for(lambda: len(receiver.deliveries) == 1 and len(simulator.events()) == 1)
    time.sleep(0.2)
    assert len(receiver.deliveries) == 1  # the next attempt waits 10 simulated seconds
    simulator.advance(10)
    wait_for(lambda: len(receiver.deliveries) == 2 and len(simulator.events()) == 2)
    simulator.advance(30)
    wait_for(lambda: len(receiver.deliveries) == 3 and len(simulator.events()) == 3)
    outcomes = [(record["attempt"], record["outcome"], record["httpStatus"]) for record in simulator.events()]
    assert outcomes == [(1, "retrying", 500), (2, "retrying", 500), (3, "delivered", 200)]
    assert [headers["aeg-delivery-count"] for headers, _ in receiver.deliveries] == ["0", "1", "2"]
    assert len({payload[0]["id"] for _, payload in receiver.deliveries}) == 1


def test_duplicates_can_be_switched_on(
    start_simulator: Callable[..., AzureSimulator], receiver_factory: Callable[..., Receiver]
) -> None:
    receiver = receiver_factory()
    world = standard_world(eventSubscriptions=[{"endpoint": receiver.url}], eventDelivery={"duplicateProbability": 1.0})
    simulator = start_simulator(world.world)
    call(simulator, "PATCH", ORDERS, {"tags": {"a": "b"}})
    simulator.advance(simulator.settings.update_operation_seconds)
    wait_for(lambda: len(receiver.deliveries) == 2)
    assert receiver.deliveries[0][1][0]["id"] == receiver.deliveries[1][1][0]["id"]


def test_synchronous_writes_publish_immediately(
    start_simulator: Callable[..., AzureSimulator], receiver_factory: Callable[..., Receiver]
) -> None:
    receiver = receiver_factory()
    std = standard_world(eventSubscriptions=[{"endpoint": receiver.url}])
    simulator = start_simulator(std.world)
    body = {
        "properties": {"accessPolicies": [{"tenantId": TENANT, "objectId": SYSTEM, "permissions": {"keys": ["get"]}}]}
    }
    assert call(simulator, "PUT", f"{std.vault['id']}/accessPolicies/add", body).status_code == 200
    wait_for(lambda: len(receiver.deliveries) == 1)
    event = receiver.deliveries[0][1][0]
    assert event["data"]["operationName"] == "Microsoft.KeyVault/vaults/accessPolicies/write"
    assert event["subject"] == std.vault["id"]
