"""Reading the caller from X-MS-CLIENT-PRINCIPAL, the auth modes, and the report's record of who did what."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from cmk.auth import (
    FUNCTION_KEY_CALLER,
    Role,
    Unauthenticated,
    caller_from_headers,
    encode_principal,
    parse_principal,
    same_principal,
)
from cmk.rollouts import report_csv, unplanned_row

OID = "4f1a2b3c-5d6e-4f70-8a9b-0c1d2e3f4a5b"


def _principal(claims: list[dict[str, str]], **extra: Any) -> str:
    return base64.b64encode(json.dumps({"auth_typ": "aad", "claims": claims, **extra}).encode()).decode()


@pytest.fixture
def entra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CMK_AUTH_MODE", "entra")
    monkeypatch.setenv("WEBSITE_AUTH_ENABLED", "True")


def test_roles_object_id_and_name_come_from_the_claims_app_service_passes() -> None:
    caller = parse_principal(encode_principal(OID, name="Ada Lovelace", roles=("CMK.Approver", "CMK.Reader")))
    assert (caller.object_id, caller.display_name) == (OID, "Ada Lovelace")
    assert caller.may(Role.APPROVER) and caller.may(Role.READER) and not caller.may(Role.OPERATOR)


def test_role_typ_names_the_role_claim_and_v1_role_claims_count_too() -> None:
    custom = _principal([{"typ": "oid", "val": OID}, {"typ": "x-roles", "val": "CMK.Operator"}], role_typ="x-roles")
    assert parse_principal(custom).may(Role.OPERATOR)
    v1 = "http://schemas.microsoft.com/ws/2008/06/identity/claims/role"
    assert parse_principal(_principal([{"typ": "oid", "val": OID}, {"typ": v1, "val": "CMK.Reader"}])).may(Role.READER)


def test_automation_without_a_name_is_named_by_its_application_id() -> None:
    caller = parse_principal(_principal([{"typ": "oid", "val": OID}, {"typ": "azp", "val": "app-123"}]))
    assert caller.display_name == "app-123" and caller.roles == frozenset()
    assert parse_principal(_principal([{"typ": "oid", "val": OID}]), fallback_name="x@contoso.com").display_name == (
        "x@contoso.com"
    )


@pytest.mark.parametrize(
    "value",
    ["", "not base64!", base64.b64encode(b"[1]").decode(), _principal([]), _principal([{"typ": "name", "val": "x"}])],
)
def test_a_principal_that_cannot_be_read_or_names_nobody_is_unauthenticated(value: str) -> None:
    with pytest.raises(Unauthenticated):
        parse_principal(value)


def test_function_key_mode_names_a_key_holder_with_every_role(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CMK_AUTH_MODE", raising=False)
    caller = caller_from_headers({"x-ms-client-principal": encode_principal(OID, roles=())})
    assert caller is FUNCTION_KEY_CALLER and all(caller.may(role) for role in Role)
    assert not same_principal({"objectId": "", "displayName": "a function key holder"}, caller)


@pytest.mark.usefixtures("entra")
def test_entra_mode_needs_the_platform_header() -> None:
    with pytest.raises(Unauthenticated, match="No authenticated caller"):
        caller_from_headers({})
    caller = caller_from_headers({"x-ms-client-principal": encode_principal(OID, roles=("CMK.Reader",))})
    assert caller.object_id == OID and caller.may(Role.READER)


def test_entra_mode_trusts_no_header_while_platform_authentication_is_off(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CMK_AUTH_MODE", "entra")
    monkeypatch.delenv("WEBSITE_AUTH_ENABLED", raising=False)
    with pytest.raises(Unauthenticated, match="App Service Authentication is off"):
        caller_from_headers({"x-ms-client-principal": encode_principal(OID, roles=("CMK.Operator",))})


def test_an_unknown_mode_is_a_configuration_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CMK_AUTH_MODE", "open")
    with pytest.raises(ValueError, match="CMK_AUTH_MODE"):
        caller_from_headers({})


def test_the_same_principal_is_the_same_object_id_whatever_its_case() -> None:
    caller = parse_principal(encode_principal(OID, name="a"))
    assert same_principal({"objectId": OID.upper(), "displayName": "someone else"}, caller)
    assert not same_principal({"objectId": "0" + OID[1:], "displayName": "a"}, caller)
    assert not same_principal(None, caller)


def test_report_csv_says_who_requested_approved_and_rejected() -> None:
    row = unplanned_row("/subscriptions/s/acct", "Refused", "no")
    row["requestedBy"] = {"objectId": OID, "displayName": "Otto", "at": "2026-01-01T00:00:00Z"}
    row["rejectedBy"] = {"objectId": "", "displayName": "a function key holder"}
    lines = report_csv([row]).splitlines()
    assert lines[0].endswith(",requestedBy,approvedBy,rejectedBy")
    assert lines[1].endswith(f",Otto ({OID}) at 2026-01-01T00:00:00Z,,a function key holder")
