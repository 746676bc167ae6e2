"""With --require-keys the local host is no more open than Azure: the Durable extension's endpoints and the Event
Grid webhook need their system key (or the master key), /admin/* the master key, and the extension's keyless local
listener (the client's rpcBaseUrl) is not on the public port at all."""

from __future__ import annotations

import time
import uuid

import pytest

from sandbox.host import LocalHost

from .conftest import HostFactory, http

DURABLE = "/runtime/webhooks/durabletask"
EVENT_GRID = "/runtime/webhooks/eventgrid"


def _running(host: LocalHost) -> str:
    instance_id = host.start_new("reporter", instance_id=f"keys-{uuid.uuid4().hex[:8]}")
    deadline = time.monotonic() + 10
    while (host.instance(instance_id) or {}).get("runtimeStatus") != "Running":
        assert time.monotonic() < deadline
        time.sleep(0.01)
    return instance_id


def _event() -> list[dict[str, object]]:
    return [
        {
            "id": str(uuid.uuid4()),
            "topic": "/subscriptions/s",
            "subject": "accounts/a1",
            "eventType": "Microsoft.Resources.ResourceWriteSuccess",
            "eventTime": "2026-01-01T00:00:00Z",
            "data": {},
            "dataVersion": "1",
        }
    ]


@pytest.fixture
def keyed(start_host: HostFactory) -> LocalHost:
    return start_host(require_keys=True)


def test_raising_an_event_on_the_public_port_needs_the_durable_system_key(keyed: LocalHost) -> None:
    assert keyed.keys is not None
    instance_id = _running(keyed)
    url = f"{keyed.base_url}{DURABLE}/instances/{instance_id}/raiseEvent/go"

    assert http("POST", url, json_body={"approved": True}).status == 401
    assert http("POST", f"{url}?code={keyed.keys.default_function}", json_body=1).status == 401
    assert http("POST", f"{url}?code={keyed.keys.eventgrid_extension}", json_body=1).status == 401
    assert http("POST", url, json_body=1, headers={"x-functions-key": keyed.keys.default_function}).status == 401
    assert (keyed.instance(instance_id) or {})["runtimeStatus"] == "Running", "no refused call reached the instance"

    assert http("POST", f"{url}?code={keyed.keys.durabletask_extension}", json_body="by the system key").status == 202
    assert keyed.wait_for(instance_id)["output"] == "by the system key"


def test_every_management_operation_on_the_public_port_needs_the_key(keyed: LocalHost) -> None:
    assert keyed.keys is not None
    instance_id = _running(keyed)
    base = f"{keyed.base_url}{DURABLE}"
    for method, path in (
        ("GET", "/instances"),
        ("GET", f"/instances/{instance_id}"),
        ("POST", f"/instances/{instance_id}/terminate?reason=x"),
        ("POST", f"/instances/{instance_id}/suspend"),
        ("DELETE", f"/instances/{instance_id}"),
        ("POST", "/orchestrators/reporter"),
        ("GET", "/entities/e/k"),
        ("GET", ""),
    ):
        assert http(method, f"{base}{path}").status == 401, (method, path)
    assert http("GET", f"{base}/instances?code={keyed.keys.master}").status == 200, "the master key opens it too"
    assert (keyed.instance(instance_id) or {})["runtimeStatus"] == "Running"
    keyed.terminate(instance_id, "done")


@pytest.mark.parametrize("require_keys", [False, True])
def test_the_keyless_local_listener_is_not_on_the_public_port(start_host: HostFactory, require_keys: bool) -> None:
    host = start_host(require_keys=require_keys)
    instance_id = _running(host)
    for path in (f"/durabletask/instances/{instance_id}/raiseEvent/go", "/durabletask/instances/"):
        assert http("POST", f"{host.base_url}{path}", json_body=1).status == 404, path
    assert host.rpc_url and host.rpc_url != host.base_url
    # The worker's client reaches it there, keyless, as it reaches 127.0.0.1:17071 on Azure.
    assert http("GET", f"{host.rpc_url}/durabletask/instances/{instance_id}").status == 202
    assert http("POST", f"{host.base_url}/api/client/{instance_id}/raise?event=go", json_body=[1]).status in (
        (401,) if require_keys else (202,)
    )
    if host.keys is not None:
        url = f"{host.base_url}/api/client/{instance_id}/raise?event=go&code={host.keys.default_function}"
        assert http("POST", url, json_body=[1]).status == 202
    assert host.wait_for(instance_id)["runtimeStatus"] == "Completed"


def test_admin_needs_the_master_key(keyed: LocalHost) -> None:
    assert keyed.keys is not None
    status = f"{keyed.base_url}/admin/host/status"
    assert http("GET", status).status == 401
    assert http("GET", f"{status}?code={keyed.keys.default_function}").status == 401
    assert http("GET", f"{status}?code={keyed.keys.durabletask_extension}").status == 401
    assert http("GET", f"{keyed.base_url}/admin/functions/reporter").status == 401
    assert http("POST", f"{keyed.base_url}/admin/host/synctriggers").status == 401
    reply = http("GET", status, headers={"x-functions-key": keyed.keys.master})
    assert reply.status == 200 and "reporter" in reply.json()["functions"]
    assert http("GET", f"{keyed.base_url}/admin/host/ping").status == 200, "ping is anonymous, as on Azure"


def test_the_event_grid_webhook_needs_its_system_key_before_it_says_anything(keyed: LocalHost) -> None:
    assert keyed.keys is not None
    hook = f"{keyed.base_url}{EVENT_GRID}?functionName=on_resource_event"
    assert http("POST", hook, json_body=_event()).status == 401
    assert http("POST", f"{keyed.base_url}{EVENT_GRID}?functionName=nope", json_body=_event()).status == 401
    assert http("POST", f"{hook}&code={keyed.keys.default_function}", json_body=_event()).status == 401
    assert http("POST", f"{hook}&code={keyed.keys.durabletask_extension}", json_body=_event()).status == 401
    assert http("POST", f"{hook}&code={keyed.keys.eventgrid_extension}", json_body=_event()).status == 202
    assert http("POST", f"{hook}&code={keyed.keys.master}", json_body=_event()).status == 202


def test_without_keys_required_everything_is_open_as_with_core_tools(host: LocalHost) -> None:
    instance_id = _running(host)
    assert http("GET", f"{host.base_url}/admin/host/status").status == 200
    assert http("POST", f"{host.base_url}{EVENT_GRID}?functionName=on_resource_event", json_body=_event()).status == 202
    url = f"{host.base_url}{DURABLE}/instances/{instance_id}/raiseEvent/go"
    assert http("POST", url, json_body=1).status == 202
    host.wait_for(instance_id)
