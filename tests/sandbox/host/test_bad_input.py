"""The local host answers bad input as the Functions host does (4xx), never with a 500 of its own."""

from __future__ import annotations

import pytest

from sandbox.host import LocalHost
from sandbox.host.http_server import routing_path

from .conftest import HostFactory, http

DURABLE = "/runtime/webhooks/durabletask"


@pytest.mark.parametrize("code", ["%C3%A9", "%FF", "%E2%82%AC" * 20, ""])
def test_a_key_outside_ascii_is_refused_with_401(start_host: HostFactory, code: str) -> None:
    host = start_host(require_keys=True)
    assert http("POST", f"{host.base_url}/api/orchestrators/echo?code={code}", json_body=1).status == 401
    assert http("GET", f"{host.base_url}{DURABLE}/instances?code={code}").status == 401
    assert (
        http(
            "POST", f"{host.base_url}/api/orchestrators/echo", json_body=1, headers={"x-functions-key": "\u00e9"}
        ).status
        == 401
    )


@pytest.mark.parametrize("token", ["garbage", "eyJ4IjogMX0=", "W10=", "eyJhZnRlciI6IDV9", "%%%"])
def test_a_continuation_token_the_store_did_not_hand_out_is_a_400(host: LocalHost, token: str) -> None:
    for base in (f"{host.base_url}{DURABLE}", f"{host.rpc_url}/durabletask"):
        reply = http("GET", f"{base}/instances", headers={"x-ms-continuation-token": token})
        assert reply.status == 400, (base, reply.text)
        assert "continuation token" in reply.json()["ExceptionMessage"]


def test_json_nested_too_deep_is_a_400_on_the_management_api_and_the_event_grid_webhook(host: LocalHost) -> None:
    deep = ("[" * 5000 + "]" * 5000).encode()
    json_type = {"Content-Type": "application/json"}
    assert http("POST", f"{host.base_url}{DURABLE}/orchestrators/echo", data=deep, headers=json_type).status == 400
    instance_id = host.start_new("reporter")
    raised = http(
        "POST", f"{host.base_url}{DURABLE}/instances/{instance_id}/raiseEvent/go", data=deep, headers=json_type
    )
    assert raised.status == 400
    hook = f"{host.base_url}/runtime/webhooks/eventgrid?functionName=on_resource_event"
    assert http("POST", hook, data=deep, headers=json_type).status == 400
    validation = http("POST", hook, data=b'["x"]', headers={**json_type, "aeg-event-type": "SubscriptionValidation"})
    assert validation.status == 200 and validation.json() == {"validationResponse": None}
    host.terminate(instance_id, "done")


def test_an_encoded_slash_stays_inside_its_route_value() -> None:
    assert routing_path("/api/items/a%2Fb") == "/api/items/a%2Fb"
    assert routing_path("/api/items/a%2fb%20c") == "/api/items/a%2fb c"
    assert routing_path("/api/hello/%C3%A9?x=1") == "/api/hello/\u00e9"


def test_an_encoded_slash_does_not_reach_another_route(host: LocalHost) -> None:
    assert http("GET", f"{host.base_url}/api/HELLO/bob").text == "hello bob"
    assert http("GET", f"{host.base_url}/api/hello/a%2Fb").text == "hello a%2Fb"
