"""Bad input never costs anything: through the HTTP API on the local host (function keys required, as in Azure),
every request below is refused with a 4xx and the error shape, starts no orchestration and sends nothing to Azure.

These are the hand-made requests of issue 12 that answered 500 or were accepted; the property-based fuzz test
(tests/test_api_fuzz.py) covers the rest of the input space.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from sandbox.azure import builders as b
from sandbox.azure.testing import IDENTITY_ENV, TENANT
from sandbox.stack import LocalAzureStack

SUB = "3b1f6c2e-8d4a-4f0b-9c7e-2a5d1e0f6b3c"
RG = "rg-input"
ACCOUNT = f"/subscriptions/{SUB}/resourceGroups/{RG}/providers/Microsoft.DocumentDB/databaseAccounts/orders"
KEY = "https://kv-input.vault.azure.net/keys/cosmos-cmk"
BAD_KEY_URIS = [
    "https://kv.vault.azure.net:abc/keys/k",
    "https://kv.vault.azure.net:99999/keys/k",
    "https://kv.vault.azure.net:-1/keys/k",
    "https://[::1/keys/k",
]


def _world() -> dict[str, Any]:
    vault = b.key_vault(SUB, RG, "kv-input", tenant_id=TENANT)
    return b.world([vault, b.vault_key(vault, "cosmos-cmk"), b.cosmos_account(SUB, RG, "orders")], tenant_id=TENANT)


class Api:
    def __init__(self, stack: LocalAzureStack) -> None:
        assert stack.host is not None and stack.host.keys is not None
        self.stack = stack
        self.keys = stack.host.keys
        self.session = requests.Session()
        self.session.headers["x-functions-key"] = self.keys.default_function

    def call(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        return self.session.request(method, f"{self.stack.host_url}/api/{path}", timeout=60, **kwargs)

    def instances(self) -> list[dict[str, Any]]:
        url = f"{self.stack.host_url}/runtime/webhooks/durabletask/instances"
        listed: list[dict[str, Any]] = requests.get(url, params={"code": self.keys.master}, timeout=30).json()
        return listed

    def azure_calls(self) -> list[dict[str, Any]]:
        """What reached the simulated Azure Resource Manager (token requests to the identity endpoint aside)."""
        return [
            r for r in self.stack.simulator.requests() if r["path"].lower().startswith(("/subscriptions", "/providers"))
        ]


@pytest.fixture(scope="module")
def api() -> Iterator[Api]:
    with pytest.MonkeyPatch.context() as patch:
        for name in IDENTITY_ENV:
            patch.delenv(name, raising=False)
        with LocalAzureStack(_world(), time_scale=100, require_keys=True) as stack:
            yield Api(stack)


def _refused(api: Api, reply: requests.Response, status: int = 400, code: str | None = None) -> dict[str, Any]:
    """The reply is `status` with the error shape and no stack trace, and nothing started or reached Azure."""
    assert reply.status_code == status, reply.text[:500]
    body = reply.json()
    assert set(body["error"]) >= {"code", "message"}, body
    assert isinstance(body["error"]["code"], str) and isinstance(body["error"]["message"], str)
    assert "Traceback" not in reply.text and 'File "' not in reply.text
    assert len(reply.content) < 4096, "an error never echoes the request back whole"
    if code is not None:
        assert body["error"]["code"] == code, body
    assert api.instances() == [], "an invalid request started an orchestration"
    assert api.azure_calls() == [], "an invalid request reached Azure"
    error: dict[str, Any] = body["error"]
    return error


@pytest.mark.parametrize("key_uri", BAD_KEY_URIS)
def test_a_key_uri_whose_port_is_not_a_number_is_a_400_on_accounts_and_rollouts(api: Api, key_uri: str) -> None:
    _refused(
        api, api.call("POST", "cmk/accounts", json={"accountId": ACCOUNT, "keyUri": key_uri}), code="InvalidKeyUri"
    )
    _refused(
        api, api.call("POST", "cmk/rollouts", json={"accounts": [ACCOUNT], "keyUri": key_uri}), code="InvalidKeyUri"
    )
    for policy in ({"default": key_uri}, {"bySubscription": {SUB: key_uri}}, {"byRegion": {"westeurope": key_uri}}):
        reply = api.call("POST", "cmk/rollouts", json={"accounts": [ACCOUNT], "keyPolicy": policy})
        _refused(api, reply, code="InvalidKeyPolicy")


@pytest.mark.parametrize("body", ['"x"', "5", "[1]", "null", "true"])
@pytest.mark.parametrize("action", ["terminate", "approve", "reject"])
def test_an_admin_action_whose_body_is_not_an_object_is_a_400(api: Api, action: str, body: str) -> None:
    reply = api.call("POST", f"cmk/instances/cmk-x-1/{action}", data=body, headers={"Content-Type": "application/json"})
    _refused(api, reply, code="InvalidRequestBody")


@pytest.mark.parametrize("body", [{"reason": 5}, {"reason": "x", "by": "me"}, {"reason": "x" * 2001}])
def test_terminate_checks_its_body(api: Api, body: dict[str, Any]) -> None:
    _refused(api, api.call("POST", "cmk/instances/cmk-x-1/terminate", json=body), code="InvalidRequestBody")


@pytest.mark.parametrize("path", ["cmk/accounts", "cmk/rollouts", "cmk/instances/cmk-x-1/approve"])
def test_json_nested_5000_deep_is_a_400(api: Api, path: str) -> None:
    deep = "[" * 5000 + "]" * 5000
    _refused(api, api.call("POST", path, data=deep, headers={"Content-Type": "application/json"}), code="InvalidJson")
    nested = '{"accountId": ' + "[" * 40 + "]" * 40 + "}"
    _refused(api, api.call("POST", path, data=nested, headers={"Content-Type": "application/json"}), code="InvalidJson")


def test_a_body_over_1_mib_is_a_413(api: Api) -> None:
    body = json.dumps({"accountId": ACCOUNT, "keyUri": KEY, "identity": "x" * (1024 * 1024)})
    reply = api.call("POST", "cmk/accounts", data=body, headers={"Content-Type": "application/json"})
    _refused(api, reply, status=413, code="RequestBodyTooLarge")


def test_a_rollout_naming_more_than_10000_accounts_is_a_400(api: Api) -> None:
    # 10,001 real ids need about 1.3 MB (a 413); the count is checked before any id is read, so short entries show it.
    body = json.dumps({"accounts": ["a"] * 10_001, "keyUri": KEY})
    assert len(body) < 1024 * 1024
    reply = api.call("POST", "cmk/rollouts", data=body, headers={"Content-Type": "application/json"})
    _refused(api, reply, code="TooManyAccounts")
    short = f"/subscriptions/{SUB}/resourceGroups/r/providers/Microsoft.DocumentDB/databaseAccounts/a"
    named = json.dumps({"accounts": [f"{short}{index:05d}" for index in range(10_001)], "keyUri": KEY})
    reply = api.call("POST", "cmk/rollouts", data=named, headers={"Content-Type": "application/json"})
    _refused(api, reply, status=413, code="RequestBodyTooLarge")


@pytest.mark.parametrize(
    "account_id",
    [
        f"/subscriptions/{SUB}/resourceGroups/../providers/Microsoft.DocumentDB/databaseAccounts/orders",
        f"/subscriptions/{SUB}/resourceGroups/./providers/Microsoft.DocumentDB/databaseAccounts/orders",
        f"/subscriptions/{SUB}/resourceGroups/rg./providers/Microsoft.DocumentDB/databaseAccounts/orders",
        f"/subscriptions/{SUB}/resourceGroups/{RG}/providers/Microsoft.DocumentDB/databaseAccounts/../orders",
        f"/subscriptions/{SUB}/resourceGroups/{RG}//providers/Microsoft.DocumentDB/databaseAccounts/orders",
        f"/subscriptions/{SUB}/resourceGroups/%2E%2E/providers/Microsoft.DocumentDB/databaseAccounts/orders",
    ],
)
def test_an_account_id_with_dot_segments_is_a_400(api: Api, account_id: str) -> None:
    _refused(
        api, api.call("POST", "cmk/accounts", json={"accountId": account_id, "keyUri": KEY}), code="InvalidAccountId"
    )
    reply = api.call("POST", "cmk/rollouts", json={"accounts": [account_id], "keyUri": KEY})
    _refused(api, reply, code="InvalidAccountId")


@pytest.mark.parametrize("name", ["orders-db", "..", "not-a-guid", "/subscriptions/x"])
def test_a_key_policy_by_subscription_keyed_by_something_else_is_a_400(api: Api, name: str) -> None:
    reply = api.call("POST", "cmk/rollouts", json={"accounts": [ACCOUNT], "keyPolicy": {"bySubscription": {name: KEY}}})
    _refused(api, reply, code="InvalidKeyPolicy")


@pytest.mark.parametrize("group", ["..", ".", "rg.", "a b", "x'y"])
def test_a_scope_resource_group_that_is_not_a_name_is_a_400(api: Api, group: str) -> None:
    body = {"scope": {"subscriptions": [SUB], "resourceGroups": [group]}, "keyUri": KEY}
    _refused(api, api.call("POST", "cmk/rollouts", json=body), code="InvalidResourceGroup")


@pytest.mark.parametrize("token", ["garbage", "v1.Z2FyYmFnZQ.0000000000000000", "v1..", "x" * 5000, "é"])
def test_a_continuation_token_not_handed_out_is_a_400(api: Api, token: str) -> None:
    _refused(
        api, api.call("GET", "cmk/instances", params={"continuationToken": token}), code="InvalidContinuationToken"
    )


@pytest.mark.parametrize("top", ["0", "501", "²", "-1", "1.5", "abc"])
def test_top_outside_1_to_500_is_a_400(api: Api, top: str) -> None:
    _refused(api, api.call("GET", "cmk/instances", params={"top": top}), code="InvalidTop")


def test_a_non_ascii_function_key_is_a_401(api: Api) -> None:
    for url in (
        f"{api.stack.host_url}/api/cmk/instances?code=%C3%A9",
        f"{api.stack.host_url}/api/cmk/instances?code=%FF",
        f"{api.stack.host_url}/runtime/webhooks/durabletask/instances?code=%C3%A9",
    ):
        assert requests.get(url, timeout=30).status_code == 401, url
    assert (
        requests.get(
            f"{api.stack.host_url}/api/cmk/instances",
            headers={"x-functions-key": "é".encode().decode("latin-1")},
            timeout=30,
        ).status_code
        == 401
    )


@pytest.mark.parametrize(
    ("method", "path", "allow"),
    [
        ("TRACE", "cmk/instances/abc/approve", "POST"),
        ("PUT", "cmk/instances/abc/terminate", "POST"),
        ("DELETE", "cmk/instances/abc", "GET"),
        ("GET", "cmk/instances/abc/approve", "POST"),
        ("PATCH", "openapi.json", "GET"),
    ],
)
def test_a_method_a_route_does_not_take_is_a_405_with_allow(api: Api, method: str, path: str, allow: str) -> None:
    reply = api.call(method, path)
    _refused(api, reply, status=405, code="MethodNotAllowed")
    assert reply.headers["Allow"] == allow


def test_trace_on_a_start_route_is_a_405_naming_what_it_takes(api: Api) -> None:
    for path in ("cmk/accounts", "cmk/rollouts"):
        reply = api.call("TRACE", path)
        _refused(api, reply, status=405, code="MethodNotAllowed")
        assert "POST" in reply.headers["Allow"].split(", ")


def test_an_unknown_path_is_a_404_with_the_error_shape(api: Api) -> None:
    _refused(api, api.call("GET", "cmk/nothing-here"), status=404, code="NotFound")
    _refused(api, api.call("GET", "cmk/instances/a%2Fb"), status=404, code="InstanceNotFound")


@pytest.mark.parametrize("instance_id", ["a b", "x?y", "a#b", "é", "a" * 300])
def test_an_instance_id_no_instance_can_have_is_a_404_without_a_lookup(api: Api, instance_id: str) -> None:
    from urllib.parse import quote

    _refused(api, api.call("GET", f"cmk/instances/{quote(instance_id, safe='')}"), status=404, code="InstanceNotFound")
    reply = api.call("POST", f"cmk/instances/{quote(instance_id, safe='')}/terminate")
    _refused(api, reply, status=404, code="InstanceNotFound")


def test_rollouts_without_accounts_or_scope_are_a_400(api: Api) -> None:
    _refused(api, api.call("POST", "cmk/rollouts", json={}), code="NoAccounts")
    _refused(api, api.call("POST", "cmk/rollouts", json={"keyUri": KEY}), code="NoAccounts")


def test_the_simulated_event_grid_calls_the_webhook_with_its_system_key(api: Api) -> None:
    with api.stack.simulator.state.lock:
        endpoints = [str(s["endpoint"]) for s in api.stack.simulator.state.events.subscriptions]
    assert len(endpoints) == 1 and endpoints[0].endswith(f"&code={api.keys.eventgrid_extension}")
    handshake: list[dict[str, Any]] = [{"id": "1", "eventType": "Validation", "data": {"validationCode": "c-1"}}]
    headers = {"aeg-event-type": "SubscriptionValidation"}
    assert requests.post(endpoints[0], json=handshake, headers=headers, timeout=30).json() == {
        "validationResponse": "c-1"
    }
    keyless = endpoints[0].split("&code=")[0]
    assert requests.post(keyless, json=handshake, headers=headers, timeout=30).status_code == 401


@pytest.mark.parametrize("content_type", ["text/plain", "multipart/form-data", "application/x-www-form-urlencoded", ""])
def test_a_body_not_sent_as_json_is_a_415(api: Api, content_type: str) -> None:
    body = json.dumps({"accountId": ACCOUNT, "keyUri": KEY, "dryRun": True})
    reply = api.call("POST", "cmk/accounts", data=body, headers={"Content-Type": content_type})
    _refused(api, reply, status=415, code="UnsupportedMediaType")


@pytest.mark.parametrize(
    "path", ["cmk/accounts?x=1", "cmk/rollouts?dryRun=true", "cmk/instances/cmk-x-1/approve?by=me"]
)
def test_a_route_that_changes_something_takes_no_unknown_query_parameter(api: Api, path: str) -> None:
    body = {"accountId": ACCOUNT, "keyUri": KEY} if "accounts" in path else {"accounts": [ACCOUNT], "keyUri": KEY}
    _refused(api, api.call("POST", path, json=body if "approve" not in path else {}), code="UnknownParameter")


@pytest.mark.parametrize("field", ["identity", "dryRun", "approval"])
def test_null_is_not_absent_in_an_account_request(api: Api, field: str) -> None:
    _refused(api, api.call("POST", "cmk/accounts", json={"accountId": ACCOUNT, "keyUri": KEY, field: None}))


@pytest.mark.parametrize(
    "field", ["maxConcurrency", "maxConcurrencyPerSubscription", "maxPreparing", "dryRun", "identity"]
)
def test_null_is_not_absent_in_a_rollout_request(api: Api, field: str) -> None:
    _refused(api, api.call("POST", "cmk/rollouts", json={"accounts": [ACCOUNT], "keyUri": KEY, field: None}))


@pytest.mark.parametrize(
    "value", ["", "2026-01-01", "2026-01-01 00:00:00Z", "2026-01-01T00:00:00", "٢٠٢٦-01-01T00:00:00Z"]
)
def test_created_times_are_rfc_3339(api: Api, value: str) -> None:
    _refused(api, api.call("GET", "cmk/instances", params={"createdFrom": value}), code="InvalidTime")


def test_list_filters_that_are_given_empty_are_checked(api: Api) -> None:
    _refused(api, api.call("GET", "cmk/instances", params={"top": ""}), code="InvalidTop")
    _refused(api, api.call("GET", "cmk/instances", params={"prefix": ""}), code="InvalidPrefix")
    assert api.call("GET", "cmk/instances", params={"createdFrom": "2026-01-01T23:59:60+05:30"}).status_code == 200


@pytest.mark.parametrize("report_format", ["xml", "JSON", ""])
def test_a_report_format_outside_csv_and_json_is_a_400(api: Api, report_format: str) -> None:
    reply = api.call("GET", "cmk/rollouts/cmk-rollout-x/report", params={"format": report_format})
    _refused(api, reply, code="InvalidFormat")


@pytest.mark.parametrize("statuses", ["", ",", "Running,", "Running,,Pending", "running", "Unknown"])
def test_runtime_status_names_known_statuses_only(api: Api, statuses: str) -> None:
    reply = api.call("GET", "cmk/instances", params={"runtimeStatus": statuses})
    _refused(api, reply, code="InvalidRuntimeStatus")
    assert api.call("GET", "cmk/instances", params={"runtimeStatus": "Running, Pending"}).status_code == 200


@pytest.mark.parametrize(
    "raise_",
    [
        None,
        {"factor": 2},
        {"factor": 0.5, "maxRuPerSecond": 50000},
        {"factor": 2, "maxRuPerSecond": 100},
        {"factor": 2, "maxRuPerSecond": 50000, "until": "tomorrow"},
    ],
)
def test_a_malformed_throughput_raise_is_a_400_on_accounts_and_rollouts(api: Api, raise_: Any) -> None:
    for path, body in (
        ("cmk/accounts", {"accountId": ACCOUNT, "keyUri": KEY}),
        ("cmk/rollouts", {"accounts": [ACCOUNT], "keyUri": KEY}),
    ):
        error = _refused(api, api.call("POST", path, json={**body, "throughputRaise": raise_}))
        assert error["code"] == "InvalidThroughputRaise" and "throughputRaise" in error["message"]
