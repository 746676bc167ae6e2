"""HTTP triggers, the Event Grid webhook and the Durable HTTP management API, over real HTTP."""

from __future__ import annotations

import time
import uuid
from typing import Any

import pytest

from sandbox.host import LocalHost

from .conftest import HostFactory, Reply, http

DURABLE = "/runtime/webhooks/durabletask"


def _poll(url: str, until: int = 200, timeout: float = 10.0) -> Reply:
    deadline = time.monotonic() + timeout
    while True:
        reply = http("GET", url)
        if reply.status == until or time.monotonic() > deadline:
            return reply
        time.sleep(0.02)


def _wait_running(host: LocalHost, instance_id: str) -> None:
    deadline = time.monotonic() + 10
    while (host.instance(instance_id) or {}).get("runtimeStatus") != "Running":
        assert time.monotonic() < deadline
        time.sleep(0.01)


def test_http_starter_uses_the_real_client_and_its_check_status_links(host: LocalHost) -> None:
    started = http("POST", f"{host.base_url}/api/orchestrators/reporter?instanceId=r1")

    assert started.status == 202
    links = started.json()
    assert started.headers["Location"] == links["statusQueryGetUri"]
    assert started.headers["Retry-After"] == "10"
    assert links["id"] == "r1"
    assert links["statusQueryGetUri"] == f"{host.base_url}{DURABLE}/instances/r1?taskHub=ToyHub&connection=Storage"
    assert set(links) >= {"sendEventPostUri", "terminatePostUri", "purgeHistoryDeleteUri", "suspendPostUri"}
    _wait_running(host, "r1")

    running = http("GET", links["statusQueryGetUri"])
    assert running.status == 202
    assert running.headers["Retry-After"] == "5" and running.headers["Location"] == links["statusQueryGetUri"]
    assert running.json()["customStatus"] == {"phase": "waiting", "step": 1}

    raised = http("POST", links["sendEventPostUri"].replace("{eventName}", "go"), json_body={"ok": True})
    assert raised.status == 202

    done = _poll(links["statusQueryGetUri"])
    assert done.status == 200
    assert done.json()["runtimeStatus"] == "Completed"
    assert done.json()["output"] == {"ok": True}, "an event posted as a JSON object arrives as an object"


def test_client_binding_raises_events_and_reads_status(host: LocalHost) -> None:
    http("POST", f"{host.base_url}/api/orchestrators/reporter?instanceId=c1")
    _wait_running(host, "c1")

    assert http("POST", f"{host.base_url}/api/client/c1/raise?event=go", json_body=[1, 2]).status == 202
    host.wait_for("c1")

    status = http("GET", f"{host.base_url}/api/client/c1/status").json()
    assert status["runtimeStatus"] == "Completed"
    assert status["output"] == "[1, 2]", "the Python client JSON-encodes event data before posting it"
    assert status["customStatus"] == {"phase": "done", "step": 2}


def test_starting_a_running_instance_id_again_is_refused(host: LocalHost) -> None:
    assert http("POST", f"{host.base_url}/api/orchestrators/reporter?instanceId=dup").status == 202
    _wait_running(host, "dup")
    first_execution = (host.instance("dup") or {})["executionId"]

    again = http("POST", f"{host.base_url}/api/orchestrators/reporter?instanceId=dup")
    assert again.status == 409
    assert "An Orchestration instance with the status Running already exists." in again.text
    webhook = http("POST", f"{host.base_url}{DURABLE}/orchestrators/reporter/dup", json_body=None)
    assert webhook.status == 409
    assert webhook.json() == {"Message": "An Orchestration instance with the status Running already exists."}

    host.raise_event("dup", "go", None)
    host.wait_for("dup")
    restarted = http("POST", f"{host.base_url}/api/orchestrators/reporter?instanceId=dup")
    assert restarted.status == 202, "a finished instance ID may be started again"
    assert (host.instance("dup") or {})["executionId"] != first_execution


def test_starting_an_unknown_orchestrator_is_a_bad_request(host: LocalHost) -> None:
    direct = http("POST", f"{host.base_url}{DURABLE}/orchestrators/nope", json_body={"a": 1})
    assert direct.status == 400
    assert "The function 'nope' doesn't exist" in direct.json()["ExceptionMessage"]

    via_client = http("POST", f"{host.base_url}/api/orchestrators/nope")
    assert "The function 'nope' doesn't exist" in via_client.text


def test_management_status_codes(host: LocalHost) -> None:
    base = f"{host.base_url}{DURABLE}/instances"
    assert http("GET", f"{base}/missing").status == 404
    assert http("POST", f"{base}/missing/terminate?reason=x").status == 404
    assert http("POST", f"{base}/missing/raiseEvent/go", json_body=1).status == 404

    http("POST", f"{host.base_url}/api/orchestrators/reporter?instanceId=m1")
    _wait_running(host, "m1")
    assert http("DELETE", f"{base}/m1").status == 412, "only terminal instances can be purged"
    wrong_type = http("POST", f"{base}/m1/raiseEvent/go", data=b"hi", headers={"Content-Type": "text/plain"})
    assert wrong_type.status == 400
    assert http("POST", f"{base}/m1/terminate?reason=stop").status == 202
    assert host.wait_for("m1")["output"] == "stop"

    assert http("POST", f"{base}/m1/raiseEvent/go", json_body=1).status == 410
    assert http("POST", f"{base}/m1/terminate?reason=again").status == 410
    history = http("GET", f"{base}/m1?showHistory=true&showHistoryOutput=true")
    assert history.status == 200
    kinds = [event["EventType"] for event in history.json()["historyEvents"]]
    assert kinds == ["ExecutionStarted", "ExecutionTerminated", "ExecutionCompleted"]
    assert http("POST", f"{base}/m1/rewind?reason=x").status == 412, "only failed instances can be rewound"
    restarted = http("POST", f"{base}/m1/restart")
    assert restarted.status == 202 and restarted.json()["id"] != "m1"
    assert (host.instance(restarted.json()["id"]) or {})["name"] == "reporter"
    purged = http("DELETE", f"{base}/m1")
    assert purged.status == 200 and purged.json() == {"instancesDeleted": 1}
    assert http("GET", f"{base}/m1").status == 404
    assert http("DELETE", f"{base}/m1").status == 404


def test_status_history_names_functions_and_their_results(host: LocalHost) -> None:
    instance_id = host.start_new("chain", {"start": 5})
    host.wait_for(instance_id)

    reply = http("GET", f"{host.base_url}{DURABLE}/instances/{instance_id}?showHistory=true&showHistoryOutput=true")

    events = reply.json()["historyEvents"]
    assert events[0] == {"EventType": "ExecutionStarted", "FunctionName": "chain", "Timestamp": events[0]["Timestamp"]}
    completed = [e for e in events if e["EventType"] == "TaskCompleted"]
    assert [e["Result"] for e in completed] == [6, 7, 8]
    assert all(e["FunctionName"] == "add_one" and "ScheduledTime" in e for e in completed)
    assert events[-1]["EventType"] == "ExecutionCompleted" and events[-1]["OrchestrationStatus"] == "Completed"


def test_listing_pages_past_100_instances_with_the_continuation_token(host: LocalHost) -> None:
    ids = [host.start_new("echo", n, instance_id=f"page-{n:03d}") for n in range(120)]
    for instance_id in ids:
        host.wait_for(instance_id)
    url = f"{host.base_url}{DURABLE}/instances?instanceIdPrefix=page-"

    first = http("GET", url)
    token = first.headers["x-ms-continuation-token"]
    second = http("GET", url, headers={"x-ms-continuation-token": token})

    assert first.status == 200 and len(first.json()) == 100 and token
    assert [item["instanceId"] for item in first.json() + second.json()] == ids
    assert second.headers["x-ms-continuation-token"] == ""
    pages = [len(http("GET", url + "&top=50", headers={"x-ms-continuation-token": t}).json()) for t in ("",)]
    assert pages == [50]
    assert http("GET", url + "&runtimeStatus=Running,Pending").json() == []
    # The Python client's get_status_all() ignores the token, so it sees one page (azure-functions-durable #580).
    assert http("GET", f"{host.base_url}/api/client/any/count_all").json() == 100

    base = f"{host.base_url}{DURABLE}/instances"
    assert http("DELETE", f"{base}/?runtimeStatus=Completed").status == 400, "createdTimeFrom is required"
    purged = http("DELETE", f"{base}/?createdTimeFrom=2000-01-01T00:00:00.000000Z&runtimeStatus=Completed")
    assert purged.status == 200 and purged.json() == {"instancesDeleted": 120}
    assert http("GET", url).json() == []


def _event_grid_event(data: Any) -> dict[str, Any]:
    return {
        "id": str(uuid.uuid4()),
        "topic": "/subscriptions/s/resourceGroups/rg",
        "subject": "accounts/a1",
        "eventType": "Microsoft.Resources.ResourceWriteSuccess",
        "eventTime": "2026-01-01T00:00:00Z",
        "data": data,
        "dataVersion": "1",
    }


def _cloud_event(data: Any) -> dict[str, Any]:
    return {
        "specversion": "1.0",
        "id": str(uuid.uuid4()),
        "source": "/subscriptions/s",
        "type": "Microsoft.KeyVault.KeyNewVersionCreated",
        "time": "2026-01-01T00:00:00Z",
        "data": data,
    }


def test_event_grid_webhook_with_both_schemas_and_the_validation_handshake(host: LocalHost) -> None:
    from toyapp_triggers import RECEIVED  # type: ignore[import-not-found]  # the hosted app's module

    RECEIVED.clear()
    hook = f"{host.base_url}/runtime/webhooks/eventgrid?functionName="

    validation = http(
        "POST",
        hook + "on_resource_event",
        json_body=[{**_event_grid_event({"validationCode": "abc-123"}), "eventType": "Validation"}],
        headers={"aeg-event-type": "SubscriptionValidation"},
    )
    assert validation.status == 200 and validation.json() == {"validationResponse": "abc-123"}
    assert RECEIVED == [], "the handshake does not invoke the function"

    batch = [_event_grid_event({"n": 1}), _event_grid_event({"n": 2})]
    notified = http("POST", hook + "on_resource_event", json_body=batch, headers={"aeg-event-type": "Notification"})
    assert notified.status == 202
    assert sorted(item["data"]["n"] for item in RECEIVED) == [1, 2]
    assert {item["schema"] for item in RECEIVED} == {"EventGrid"}

    cloud = _cloud_event({"key": "k1"})
    single = http(
        "POST",
        hook + "on_cloud_event",
        json_body=cloud,
        headers={"Content-Type": "application/cloudevents+json; charset=utf-8"},
    )
    assert single.status == 202
    many = [_cloud_event({"key": "k2"}), _cloud_event({"key": "k3"})]
    batched = http(
        "POST", hook + "on_cloud_event", json_body=many, headers={"Content-Type": "application/cloudevents-batch+json"}
    )
    assert batched.status == 202
    cloud_events = [item for item in RECEIVED if item["schema"] == "CloudEvents"]
    assert sorted(item["data"]["key"] for item in cloud_events) == ["k1", "k2", "k3"]
    assert cloud_events[0]["id"] == cloud["id"]

    handshake = http("OPTIONS", hook + "on_cloud_event", headers={"WebHook-Request-Origin": "eventgrid.azure.net"})
    assert handshake.status == 200 and handshake.headers["WebHook-Allowed-Origin"] == "eventgrid.azure.net"

    refused = http("POST", hook + "on_resource_event", json_body=[_event_grid_event({"fail": True})])
    assert refused.status == 500, "a failed invocation makes Event Grid redeliver"
    assert http("POST", hook + "nope", json_body=[]).status == 404


def test_http_route_templates(host: LocalHost) -> None:
    assert http("GET", f"{host.base_url}/api/items/42").json() == {"id": 42}
    assert http("GET", f"{host.base_url}/api/items/abc").status == 404, "{id:int} rejects non-integers"
    assert http("POST", f"{host.base_url}/api/items/42").status == 404, "the route only allows GET"
    assert http("GET", f"{host.base_url}/api/hello").text == "hello world"
    assert http("GET", f"{host.base_url}/api/HELLO/bob").text == "hello bob"
    assert http("GET", f"{host.base_url}/hello/bob").status == 404, "routes live under the route prefix"


@pytest.mark.parametrize("require_keys", [False, True])
def test_function_keys_are_only_enforced_when_required(start_host: HostFactory, require_keys: bool) -> None:
    host = start_host(require_keys=require_keys)
    assert host.keys is None if not require_keys else host.keys is not None
    start = f"{host.base_url}/api/orchestrators/echo"
    status_url = f"{host.base_url}{DURABLE}/instances/none"

    assert http("GET", f"{host.base_url}/api/hello").status == 200, "anonymous routes never need a key"
    assert http("POST", start, json_body=1).status == (401 if require_keys else 202)
    assert http("GET", status_url).status == (401 if require_keys else 404)
    assert http("GET", f"{host.rpc_url}/durabletask/instances/none").status == 404, "the local listener is keyless"
    assert http("GET", f"{host.base_url}/durabletask/instances/none").status == 404, "and not on the public port"
    if host.keys is not None:
        with_code = http("POST", f"{start}?code={host.keys.default_function}", json_body=1)
        assert with_code.status == 202
        links = with_code.json()
        assert links["statusQueryGetUri"].endswith(f"&code={host.keys.durabletask_extension}")
        assert _poll(links["statusQueryGetUri"]).status == 200, "the links carry the system key"
        header = http("POST", start, json_body=2, headers={"x-functions-key": host.keys.master})
        assert header.status == 202
        assert http("GET", f"{status_url}?code={host.keys.default_function}").status == 401
