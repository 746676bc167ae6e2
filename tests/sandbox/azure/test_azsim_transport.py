"""HTTPS, the managed-identity endpoint, authentication, api-version, routing errors and the request log."""

from __future__ import annotations

import time
from collections.abc import Callable

import certifi
import pytest
import requests
from azure.core.exceptions import ClientAuthenticationError
from azure.identity import DefaultAzureCredential, ManagedIdentityCredential
from azure.mgmt.cosmosdb import CosmosDBManagementClient

from sandbox.azure import AzureSimulator, mint_token, read_token
from sandbox.azure.testing import ADMIN, RG, SUB, SYSTEM, StandardWorld, call, cosmos_client, standard_world

ORDERS = f"/subscriptions/{SUB}/resourceGroups/{RG}/providers/Microsoft.DocumentDB/databaseAccounts/cosmos-orders"


def test_https_needs_the_simulator_ca(sim: AzureSimulator) -> None:
    assert sim.base_url.startswith("https://127.0.0.1:")
    with pytest.raises(requests.exceptions.SSLError):
        # the public trust store does not know the local CA (REQUESTS_CA_BUNDLE, set by the fixture, does)
        requests.get(sim.base_url + ORDERS, verify=certifi.where(), timeout=10)
    assert call(sim, "GET", ORDERS).status_code == 200
    localhost = requests.get(
        sim.base_url.replace("127.0.0.1", "localhost") + "/_sandbox/health", verify=sim.ca_bundle_path, timeout=10
    )
    assert localhost.status_code == 200


def test_identity_endpoint_speaks_the_app_service_protocol(sim: AzureSimulator, std: StandardWorld) -> None:
    endpoint = sim.identity_endpoint
    assert endpoint.startswith("http://127.0.0.1:")
    params = {"api-version": "2019-08-01", "resource": "https://management.azure.com/"}
    assert requests.get(endpoint, params=params, timeout=10).status_code == 401
    headers = {"X-IDENTITY-HEADER": sim.identity_header}
    system = requests.get(endpoint, params=params, headers=headers, timeout=10).json()
    assert set(system) == {"access_token", "expires_on", "resource", "token_type", "client_id"}
    assert system["token_type"] == "Bearer" and system["resource"] == "https://management.azure.com/"
    assert abs(int(system["expires_on"]) - (time.time() + 24 * 3600)) < 120  # real wall clock
    claims = read_token(system["access_token"])
    assert claims.principal_id == SYSTEM and claims.tenant_id == sim.tenant_id
    assert claims.audience == "https://management.azure.com/"
    uami = std.uami["properties"]
    for parameter, value in (
        ("client_id", uami["clientId"]),
        ("mi_res_id", std.uami["id"]),
        ("object_id", uami["principalId"]),
    ):
        token = requests.get(endpoint, params={**params, parameter: value}, headers=headers, timeout=10).json()
        assert read_token(token["access_token"]).principal_id == uami["principalId"], parameter
        assert token["client_id"] == uami["clientId"]
    unknown = requests.get(endpoint, params={**params, "client_id": "not-in-world"}, headers=headers, timeout=10).json()
    again = requests.get(endpoint, params={**params, "client_id": "not-in-world"}, headers=headers, timeout=10).json()
    assert read_token(unknown["access_token"]).principal_id == read_token(again["access_token"]).principal_id


def test_sdk_credentials_pick_the_principal(start_simulator: Callable[..., AzureSimulator]) -> None:
    principal = standard_world().uami["properties"]["principalId"]
    std = standard_world(grants=[SYSTEM, principal])  # the app's grants for both: both may read the account
    sim = start_simulator(std.world)
    user_assigned = ManagedIdentityCredential(client_id=std.uami["properties"]["clientId"])
    CosmosDBManagementClient(user_assigned, SUB, base_url=sim.base_url).database_accounts.get(RG, "cosmos-orders")
    cosmos_client(sim, DefaultAzureCredential()).database_accounts.get(RG, "cosmos-orders")
    arm_requests = [
        entry for entry in sim.requests() if entry.get("action") == "Microsoft.DocumentDB/databaseAccounts/read"
    ]
    assert [entry["principal"] for entry in arm_requests] == [std.uami["properties"]["principalId"], SYSTEM]


def test_requests_without_a_bearer_token_are_401(sim: AzureSimulator) -> None:
    response = call(sim, "GET", ORDERS, token="")
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "AuthenticationFailed"
    assert "WWW-Authenticate" in response.headers
    data_plane = requests.get(f"{sim.base_url}/cosmos/cosmos-orders/", verify=sim.ca_bundle_path, timeout=10)
    assert data_plane.status_code == 401


def test_tokens_for_another_audience_are_401(sim: AzureSimulator) -> None:
    token = mint_token(SYSTEM, tenant_id=sim.tenant_id, audience="https://vault.azure.net")
    response = call(sim, "GET", ORDERS, token=token)
    assert response.status_code == 401 and response.json()["error"]["code"] == "InvalidAuthenticationTokenAudience"


def test_sdk_surfaces_401_as_client_authentication_error(sim: AzureSimulator) -> None:
    client = CosmosDBManagementClient(
        sim.credential(), SUB, base_url=sim.base_url, credential_scopes=["https://vault.azure.net/.default"]
    )
    with pytest.raises(ClientAuthenticationError):
        client.database_accounts.get(RG, "cosmos-orders")


def test_api_version_is_required(sim: AzureSimulator) -> None:
    response = call(sim, "GET", ORDERS, api_version=None)
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "MissingApiVersionParameter"


def test_routing_errors(sim: AzureSimulator) -> None:
    unknown_route = call(sim, "GET", "/something/else")
    assert unknown_route.status_code == 404 and unknown_route.json()["error"]["code"] == "NotFound"
    unknown_subscription = call(sim, "GET", ORDERS.replace(SUB, "0f0e0d0c-0b0a-4909-8807-060504030201"))
    assert unknown_subscription.status_code == 404
    assert unknown_subscription.json()["error"]["code"] == "SubscriptionNotFound"
    # ARM authorizes before the resource provider sees the method: the app's role has no delete...
    refused = call(sim, "DELETE", ORDERS)
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "AuthorizationFailed"
    assert "'Microsoft.DocumentDB/databaseAccounts/delete'" in refused.json()["error"]["message"]
    assert call(sim, "DELETE", ORDERS, principal=ADMIN).status_code == 405  # ...an Owner reaches the RP


def test_malformed_json_is_400(sim: AzureSimulator) -> None:
    response = call(sim, "PATCH", ORDERS, raw_body=b'{"properties": {"keyVaultKeyUri": ')
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "InvalidRequestContent"


def test_request_log_records_who_did_what(sim: AzureSimulator) -> None:
    before = sim.requests()[-1]["sequence"] if sim.requests() else 0
    call(sim, "GET", ORDERS)
    call(sim, "PATCH", ORDERS, {"tags": {"env": "prod"}})
    entries = sim.requests(since=before)
    assert [(entry["method"], entry["status"], entry["action"]) for entry in entries] == [
        ("GET", 200, "Microsoft.DocumentDB/databaseAccounts/read"),
        ("PATCH", 200, "Microsoft.DocumentDB/databaseAccounts/write"),
    ]
    assert entries[1]["body"] == {"tags": {"env": "prod"}}
    assert entries[1]["principal"] == SYSTEM and entries[1]["path"].endswith("api-version=2026-03-15")
    over_http = requests.get(
        f"{sim.base_url}/_sandbox/requests",
        params={"since": entries[0]["sequence"]},
        verify=sim.ca_bundle_path,
        timeout=10,
    ).json()
    assert [entry["sequence"] for entry in over_http["value"]] == [entries[1]["sequence"]]


def test_sandbox_clock_routes_need_no_token(sim: AzureSimulator) -> None:
    clock = requests.get(f"{sim.base_url}/_sandbox/clock", verify=sim.ca_bundle_path, timeout=10).json()
    advanced = requests.post(
        f"{sim.base_url}/_sandbox/clock/advance", json={"seconds": 3600}, verify=sim.ca_bundle_path, timeout=10
    ).json()
    assert advanced["epochSeconds"] - clock["epochSeconds"] == pytest.approx(3600, abs=5)


def test_an_external_clock_is_shared(start_simulator: Callable[..., AzureSimulator], std: StandardWorld) -> None:
    from sandbox.clock import SimClock

    clock = SimClock(time_scale=60)
    simulator = start_simulator(std.world, clock=clock)
    assert simulator.clock is clock
    call(simulator, "PATCH", ORDERS, {"tags": {"a": "b"}})
    clock.advance(simulator.settings.update_operation_seconds)  # someone else moves the shared clock
    assert simulator.operations()[0]["status"] == "Succeeded"
