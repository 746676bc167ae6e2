"""Giving the account the managed identity the key needs, one PATCH at a time.

Each call looks at the account and makes at most one change: add the identity, or point `defaultIdentity` at it.
Both are asynchronous in Cosmos DB, so the caller waits for the returned operation and calls again; a call on an
account that is already right changes nothing. The key PATCH itself must carry nothing else (Azure refuses
"Customer Managed Key settings and other properties at the same time"), which is why these are separate steps.
"""

from __future__ import annotations

from typing import Any, Literal, TypedDict

from azure.core.exceptions import HttpResponseError, ServiceResponseError
from azure.core.pipeline import PipelineResponse
from azure.mgmt.cosmosdb import models

from cmk import clients, inventory
from cmk.inventory import AccountFacts
from cmk.operations import OperationKind, OperationRef, operation_from_headers
from cmk.preflight import PlannedIdentity, default_identity_for
from cmk.resource_ids import parse_account_id

SYSTEM = "SystemAssigned"
USER = "UserAssigned"


class IdentityStep(TypedDict):
    status: Literal["ready", "pending", "missing"]
    action: Literal["none", "assignIdentity", "setDefaultIdentity", "waitForAccount"]
    principalId: str | None
    tenantId: str | None
    defaultIdentity: str
    operation: OperationRef | None


def ensure_identity(account_id: str, identity: PlannedIdentity) -> IdentityStep:
    """Advance the account one step towards using `identity` as its default identity."""
    account_ref = parse_account_id(account_id)
    desired_default = default_identity_for(identity)
    account = inventory.read_account(account_ref)
    if account is None:
        return _step("missing", "none", None, None, desired_default, None)
    if account["provisioningState"].lower() != "succeeded":
        return _step("pending", "waitForAccount", None, None, desired_default, None)

    types = _identity_types(account)
    assigned_users = {resource_id.lower(): resource_id for resource_id in account["userAssignedIdentities"]}
    wanted_type = identity["type"]
    wanted_user = identity.get("resourceId")
    has_it = SYSTEM in types if wanted_type == SYSTEM else (wanted_user or "").lower() in assigned_users
    if not has_it:
        keep_users = [*assigned_users.values(), *([wanted_user] if wanted_user else [])]
        body = _identity_patch(types | {wanted_type}, keep_users)
        operation = _patch_once(account_id, "identity", models.DatabaseAccountUpdateParameters(identity=body))
        if operation is None:
            return _step("pending", "waitForAccount", None, None, desired_default, None)
        return _step("pending", "assignIdentity", None, None, desired_default, operation)

    principal_id, tenant_id = _principal(account, identity)
    if principal_id is None:
        # The identity operation has not finished handing out a principal yet.
        return _step("pending", "waitForAccount", None, None, desired_default, None)
    if (account["defaultIdentity"] or "").lower() != desired_default.lower():
        parameters = models.DatabaseAccountUpdateParameters(
            properties=models.DatabaseAccountUpdateProperties(default_identity=desired_default)
        )
        operation = _patch_once(account_id, "defaultIdentity", parameters)
        if operation is None:
            return _step("pending", "waitForAccount", principal_id, tenant_id, desired_default, None)
        return _step("pending", "setDefaultIdentity", principal_id, tenant_id, desired_default, operation)
    return _step("ready", "none", principal_id, tenant_id, desired_default, None)


def _identity_types(account: AccountFacts) -> set[str]:
    return {part.strip() for part in account["identityType"].split(",") if part.strip() and part.strip() != "None"}


def _identity_patch(types: set[str], user_assigned: list[str]) -> models.ManagedServiceIdentity:
    ordered = ",".join(kind for kind in (SYSTEM, USER) if kind in types)
    body: dict[str, Any] = {"type": ordered}
    if USER in types:
        # PATCH replaces the set of user-assigned identities: send the ones the account keeps as well.
        body["userAssignedIdentities"] = {resource_id: {} for resource_id in dict.fromkeys(user_assigned)}
    return models.ManagedServiceIdentity(body)


def _principal(account: AccountFacts, identity: PlannedIdentity) -> tuple[str | None, str | None]:
    if identity["type"] == SYSTEM:
        return account["systemPrincipalId"], account["identityTenantId"]
    wanted = (identity.get("resourceId") or "").lower()
    for resource_id, facts in account["userAssignedIdentities"].items():
        if resource_id.lower() == wanted:
            return facts["principalId"], account["identityTenantId"]
    return None, None


def is_lost_or_busy(error: BaseException) -> bool:
    """A PATCH answer that leaves open whether Azure applied it: no reply (connection reset, timeout), a 5xx after
    which the write may still have been applied, or 409/412 because an operation (perhaps this very PATCH, sent
    before a lost reply) is in progress. The only safe next step is to read the account again."""
    if isinstance(error, ServiceResponseError):
        return True
    return isinstance(error, HttpResponseError) and (error.status_code in (409, 412) or (error.status_code or 0) >= 500)


def _patch_once(
    account_id: str, kind: OperationKind, parameters: models.DatabaseAccountUpdateParameters
) -> OperationRef | None:
    """PATCH once; None when the answer leaves open whether it applied (the caller reads the account again)."""
    try:
        return patch_account(account_id, kind, parameters)
    except (HttpResponseError, ServiceResponseError) as error:
        if is_lost_or_busy(error):
            return None
        raise


def patch_account(
    account_id: str,
    kind: OperationKind,
    parameters: models.DatabaseAccountUpdateParameters,
    expected_key_uri: str | None = None,
) -> OperationRef:
    """Send one PATCH without waiting for it; return where to follow it (Azure-AsyncOperation, Location).

    The SDK's retry policy is off for this one request: azure-core retries PATCH on 500/503/504, and a retry after
    a reply that was lost but applied meets 409/412 (or, for the key, repeats the irreversible step). Callers
    read the account again instead (`is_lost_or_busy`).
    """
    account = parse_account_id(account_id)
    captured: dict[str, Any] = {}

    def capture(response: PipelineResponse[Any, Any]) -> None:
        if response.http_request.method == "PATCH":
            captured["headers"] = response.http_response.headers

    clients.cosmos(account.subscription_id).database_accounts.begin_update(
        account.resource_group, account.name, parameters, polling=False, raw_response_hook=capture, retry_total=0
    )
    return operation_from_headers(account_id, kind, captured.get("headers", {}), expected_key_uri)


def _step(
    status: Literal["ready", "pending", "missing"],
    action: Literal["none", "assignIdentity", "setDefaultIdentity", "waitForAccount"],
    principal_id: str | None,
    tenant_id: str | None,
    default_identity: str,
    operation: OperationRef | None,
) -> IdentityStep:
    return {
        "status": status,
        "action": action,
        "principalId": principal_id,
        "tenantId": tenant_id,
        "defaultIdentity": default_identity,
        "operation": operation,
    }
