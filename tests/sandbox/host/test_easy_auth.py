"""The local emulation of App Service Authentication (serve --auth entra): which tokens pass, what the app sees."""

from __future__ import annotations

import base64
import json

import pytest

from sandbox.host.easy_auth import DEFAULT_AUDIENCE, Unauthenticated, authenticate, mint_token


def _decoded(header: str) -> dict[str, object]:
    value: dict[str, object] = json.loads(base64.b64decode(header))
    return value


def test_a_user_token_becomes_the_principal_headers_app_service_sets() -> None:
    token = mint_token("11111111-2222-3333-4444-555555555555", name="Ada", roles=["CMK.Approver"])
    headers = authenticate({"Authorization": f"Bearer {token}"}, audience=DEFAULT_AUDIENCE).headers()
    assert headers["x-ms-client-principal-id"] == "11111111-2222-3333-4444-555555555555"
    assert headers["x-ms-client-principal-name"] == "Ada" and headers["x-ms-client-principal-idp"] == "aad"
    principal = _decoded(headers["x-ms-client-principal"])
    assert principal["role_typ"] == "roles" and principal["auth_typ"] == "aad"
    assert {"typ": "roles", "val": "CMK.Approver"} in principal["claims"]  # type: ignore[operator]


def test_automation_without_a_name_is_named_by_its_application() -> None:
    token = mint_token(app_id="pipeline-app", roles=["CMK.Operator"])
    headers = authenticate({"authorization": f"bearer {token}"}).headers()
    assert headers["x-ms-client-principal-name"] == "pipeline-app"


@pytest.mark.parametrize(
    "authorization",
    [
        "",
        "Basic dXNlcjpwYXNz",
        "Bearer ",
        "Bearer not-a-jwt",
        f"Bearer {mint_token('x', lifetime_seconds=-1)}",
        f"Bearer {mint_token('x', audience='api://another-app')}",
        "Bearer e30.e30.",  # no object id
    ],
)
def test_no_token_an_expired_one_or_one_for_another_app_is_a_401(authorization: str) -> None:
    with pytest.raises(Unauthenticated):
        authenticate({"Authorization": authorization}, audience=DEFAULT_AUDIENCE)
