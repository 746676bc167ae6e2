"""Microsoft.KeyVault: access-policy updates, and the question Cosmos DB asks a vault: can this principal use a key?"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sandbox.azure.errors import bad_request, resource_not_found
from sandbox.azure.grants import has_data_actions
from sandbox.azure.ids import JsonDict, KeyUri, parse_key_uri
from sandbox.azure.messages import Reply, RequestContext
from sandbox.azure.rbac import CMK_KEY_DATA_ACTIONS
from sandbox.azure.routing import RouteMatch, RouteTable
from sandbox.azure.state import CloudState
from sandbox.azure.vault_store import find_key, find_vault, key_version_properties

ACCESS_POLICY_LIMIT = 1024
CMK_KEY_PERMISSIONS = ("get", "wrapkey", "unwrapkey")
ACTION_ACCESS_POLICY_WRITE = "Microsoft.KeyVault/vaults/accessPolicies/write"
TROUBLESHOOTING = "https://learn.microsoft.com/azure/cosmos-db/cmk-troubleshooting-guide"
ROUTES = RouteTable()


@dataclass(frozen=True)
class KeyProblem:
    """Why a principal cannot use a key; `status_code` is the customerManagedKeyStatus code it maps to."""

    code: str
    message: str
    status_code: str


def vault_network_blocks_trusted_services(vault: JsonDict) -> bool:
    properties = vault.get("properties") or {}
    if str(properties.get("publicNetworkAccess", "Enabled")).lower() == "disabled":
        return True
    acls = properties.get("networkAcls")
    if not isinstance(acls, dict):
        return False
    deny = str(acls.get("defaultAction", "Allow")).lower() == "deny"
    bypass = str(acls.get("bypass", "AzureServices")).lower() == "azureservices"
    return deny and not bypass


def principal_can_use_key(state: CloudState, vault: JsonDict, key: JsonDict, principal_id: str) -> bool:
    """get + wrapKey + unwrapKey through access policies, or through RBAC on RBAC vaults."""
    properties = vault.get("properties") or {}
    if properties.get("enableRbacAuthorization") is True:
        return has_data_actions(state, principal_id, str(key["id"]), CMK_KEY_DATA_ACTIONS)
    for policy in properties.get("accessPolicies") or []:
        if str(policy.get("objectId", "")).lower() != principal_id.lower():
            continue
        permissions = {str(item).lower() for item in (policy.get("permissions") or {}).get("keys") or []}
        if "all" in permissions or all(need in permissions for need in CMK_KEY_PERMISSIONS):
            return True
    return False


def key_problem(state: CloudState, key_uri: str, principal_id: str | None, identity_label: str) -> KeyProblem | None:
    """What stops Cosmos DB (acting as `principal_id`) from wrapping with `key_uri` right now, if anything."""
    parsed = parse_key_uri(key_uri)
    if parsed is None:
        return KeyProblem(
            "InvalidKeyVaultKeyUri",
            f"The key vault key URI '{key_uri}' does not follow the expected format "
            f"https://<vault>.vault.azure.net/keys/<key>. See {TROUBLESHOOTING} (4006).",
            "4006",
        )
    vault = find_vault(state.resources, parsed.vault_name)
    if vault is None:
        return KeyProblem(
            "KeyVaultNotFound",
            f"The Azure Key Vault '{parsed.vault_name}' of the key URI '{key_uri}' was not found. "
            f"See {TROUBLESHOOTING} (4017).",
            "4017",
        )
    if vault_network_blocks_trusted_services(vault):
        return KeyProblem(
            "KeyVaultNetworkBlocked",
            f"The network access rules of the Azure Key Vault '{vault['name']}' block requests from Azure Cosmos DB: "
            "allow public access or let trusted Microsoft services bypass the firewall. "
            f"See {TROUBLESHOOTING} (4016).",
            "4016",
        )
    key = find_key(state.resources, vault, parsed.key_name)
    properties = key_version_properties(state.resources, key, parsed.version) if key is not None else None
    if key is None or properties is None:
        return KeyProblem(
            "KeyNotFound",
            f"The key '{key_uri}' is not found on the Azure Key Vault '{vault['name']}'. See {TROUBLESHOOTING} (4003).",
            "4003",
        )
    state_problem = _key_state_problem(state, parsed, properties, key_uri)
    if state_problem is not None:
        return state_problem
    if principal_id is None or not principal_can_use_key(state, vault, key, principal_id):
        return KeyProblem(
            "KeyVaultAccessDenied",
            f"The default identity {identity_label} (principal '{principal_id}') does not have get, wrapKey and "
            f"unwrapKey permissions on the key '{key_uri}' of the Azure Key Vault '{vault['name']}'"
            + (
                " (RBAC vault: an effective 'Key Vault Crypto Service Encryption User' role assignment is required)"
                if (vault.get("properties") or {}).get("enableRbacAuthorization") is True
                else " (access policy with key permissions get, wrapKey, unwrapKey is required)"
            )
            + f". See {TROUBLESHOOTING} (4002).",
            "4002",
        )
    return None


def _key_state_problem(state: CloudState, parsed: KeyUri, properties: JsonDict, key_uri: str) -> KeyProblem | None:
    attributes = properties.get("attributes") or {}
    now = state.now()
    reason: str | None = None
    if attributes.get("enabled") is False:
        reason = "is disabled"
    elif isinstance(attributes.get("exp"), int | float) and attributes["exp"] <= now:
        reason = "has expired"
    elif isinstance(attributes.get("nbf"), int | float) and attributes["nbf"] > now:
        reason = "is not yet valid (nbf is in the future)"
    elif str(properties.get("kty", "RSA")).upper() not in ("RSA", "RSA-HSM"):
        reason = f"has key type {properties.get('kty')}; customer-managed keys must be RSA or RSA-HSM"
    else:
        operations = {str(item).lower() for item in properties.get("keyOps") or []}
        if operations and not {"wrapkey", "unwrapkey"} <= operations:
            reason = "does not allow the wrapKey and unwrapKey operations"
    if reason is None:
        return None
    return KeyProblem(
        "KeyVaultKeyUnusable",
        f"Unable to wrap or unwrap with the key '{key_uri}': the key {reason}. See {TROUBLESHOOTING} (4005).",
        "4005",
    )


def vault_protection_problem(state: CloudState, key_uri: str) -> KeyProblem | None:
    parsed = parse_key_uri(key_uri)
    vault = find_vault(state.resources, parsed.vault_name) if parsed is not None else None
    if vault is None:
        return None
    properties = vault.get("properties") or {}
    # Soft delete is on unless the vault says `false` (a legacy vault): Key Vault has enforced it on every vault
    # since its 2020-2025 rollout and it cannot be turned off; older api-versions omit the property. Purge
    # protection is off unless the vault says `true` (it is absent or null on vaults that never set it).
    if properties.get("enableSoftDelete") is False or properties.get("enablePurgeProtection") is not True:
        return KeyProblem(
            "KeyVaultPurgeProtectionRequired",
            f"The Azure Key Vault '{vault['name']}' must have soft delete and purge protection enabled to be used "
            "for customer-managed keys.",
            "4005",
        )
    return None


# ----------------------------------------------------------------------------- ARM handlers


@ROUTES.route(
    "PUT",
    "/subscriptions/{subscription}[/resourceGroups/{group}]/providers/Microsoft.KeyVault/vaults/{vault}/accessPolicies/"
    "{kind}",
)
def update_access_policy(state: CloudState, context: RequestContext, match: RouteMatch) -> Reply:
    vault_id, kind = "/".join(match.path.split("/")[:-2]), match["kind"]
    vault = state.resources.get(vault_id)
    if vault is None:
        raise resource_not_found(vault_id)
    operation = kind.lower()
    if operation not in ("add", "replace", "remove"):
        raise bad_request(
            f"The value '{kind}' is not valid for operationKind; use add, replace or remove.", "InvalidOperationKind"
        )
    body = context.body
    entries = (body or {}).get("properties", {}).get("accessPolicies") if isinstance(body, dict) else None
    if not isinstance(entries, list):
        raise bad_request("The request body must contain properties.accessPolicies.", "InvalidRequestContent")
    properties: JsonDict = dict(vault.get("properties") or {})
    vault_tenant = str(properties.get("tenantId", state.tenant_id)).lower()
    policies: list[JsonDict] = [dict(policy) for policy in properties.get("accessPolicies") or []]
    for entry in entries:
        _validate_entry(entry, vault_tenant)
        index = _find_policy(policies, entry)
        if operation == "add":
            if index is None:
                policies.append(_copy_entry(entry))
            else:
                policies[index] = _merge_permissions(policies[index], entry)
        elif operation == "replace":
            if index is None:
                policies.append(_copy_entry(entry))
            else:
                policies[index] = _copy_entry(entry)
        elif index is not None:
            remaining = _remove_permissions(policies[index], entry)
            if remaining is None:
                policies.pop(index)
            else:
                policies[index] = remaining
    if len(policies) > ACCESS_POLICY_LIMIT:
        raise bad_request(
            f"The vault '{vault['name']}' would have more than {ACCESS_POLICY_LIMIT} access policies.",
            "AccessPolicyLimitExceeded",
        )
    properties["accessPolicies"] = policies
    state.resources.put({**vault, "properties": properties})
    policies_id = f"{vault['id']}/accessPolicies/"
    state.hooks.resource_written(context, str(vault["id"]), ACTION_ACCESS_POLICY_WRITE, "Succeeded")
    return Reply(
        200,
        {
            "type": "Microsoft.KeyVault/vaults/accessPolicies",
            "id": policies_id,
            "properties": {"accessPolicies": policies},
        },
    )


def _validate_entry(entry: Any, vault_tenant: str) -> None:
    if not isinstance(entry, dict) or not isinstance(entry.get("objectId"), str):
        raise bad_request("Every access policy entry needs an objectId, a tenantId and permissions.")
    if str(entry.get("tenantId", "")).lower() != vault_tenant:
        raise bad_request(
            f"The access policy for object '{entry['objectId']}' has tenant '{entry.get('tenantId')}', "
            f"but all identities must use the vault's tenant '{vault_tenant}'."
        )
    if not isinstance(entry.get("permissions"), dict):
        raise bad_request(f"The access policy for object '{entry['objectId']}' has no permissions.")


def _find_policy(policies: list[JsonDict], entry: JsonDict) -> int | None:
    for index, policy in enumerate(policies):
        if (
            str(policy.get("objectId", "")).lower() == str(entry["objectId"]).lower()
            and str(policy.get("applicationId") or "").lower() == str(entry.get("applicationId") or "").lower()
        ):
            return index
    return None


def _copy_entry(entry: JsonDict) -> JsonDict:
    copied: JsonDict = {key: value for key, value in entry.items() if value is not None}
    copied["permissions"] = {key: list(value) for key, value in entry["permissions"].items() if value is not None}
    return copied


def _merge_permissions(existing: JsonDict, entry: JsonDict) -> JsonDict:
    merged = dict(existing)
    permissions: dict[str, list[str]] = {key: list(value) for key, value in (existing.get("permissions") or {}).items()}
    for category, values in entry["permissions"].items():
        current = permissions.setdefault(category, [])
        lowered = {item.lower() for item in current}
        for value in values or []:
            if value.lower() not in lowered:
                current.append(value)
                lowered.add(value.lower())
    merged["permissions"] = permissions
    return merged


def _remove_permissions(existing: JsonDict, entry: JsonDict) -> JsonDict | None:
    removal = {
        category: {str(value).lower() for value in values or []} for category, values in entry["permissions"].items()
    }
    if not any(removal.values()):
        return None
    permissions = {
        category: [value for value in values if str(value).lower() not in removal.get(category, set())]
        for category, values in (existing.get("permissions") or {}).items()
    }
    if not any(permissions.values()):
        return None
    return {**existing, "permissions": permissions}
