"""The managed identities of a Cosmos DB account and its default identity (the MSI side of the account).

What ARM accepts in an account's `identity` (system-assigned, user-assigned, both or none) and what the account
looks like after a PATCH of it; the `defaultIdentity` property's format, the check that it names an identity the
account has, and the principal it resolves to (the one Key Vault sees when Cosmos DB reaches the CMK). The
behaviours and their sources are in sandbox/worlds/README.md ("Behaviour reference").
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from typing import Any

from sandbox.azure.errors import ArmError, bad_request, with_activity_id
from sandbox.azure.ids import IDENTITY_TYPE, JsonDict, id_key
from sandbox.azure.state import CloudState

DEFAULT_IDENTITY_FORMAT_MESSAGE = (
    "The given default identity for {name} is not valid. The format for the default identity is not valid, please "
    "use 'FirstPartyIdentity'/'SystemAssignedIdentity'/'UserAssignedIdentity=<UA_resource_id>'"
)

_DEFAULT_IDENTITY = re.compile(
    r"^(?:(?P<first>FirstPartyIdentity)|(?P<system>SystemAssignedIdentity)|"
    r"UserAssignedIdentity=(?P<user>/subscriptions/[^&]+)(?:&FederatedClientId=(?P<federated>[0-9a-fA-F-]{36}))?)$"
)


def _identity_types(type_value: Any) -> set[str]:
    if type_value is None:
        return set()
    return {part.strip().lower() for part in str(type_value).split(",") if part.strip()}


def _find_case_insensitive(mapping: JsonDict, key: str) -> str | None:
    for candidate in mapping:
        if id_key(candidate) == id_key(key):
            return candidate
    return None


def resolve_identity(state: CloudState, account: JsonDict, patch_identity: Any, *, final: bool) -> JsonDict:
    """The account identity after applying `patch_identity`; raises 400 for what ARM refuses.

    With `final=False` (validation at PATCH time) a new system identity has no principal yet.
    """
    if not isinstance(patch_identity, dict):
        raise bad_request("The 'identity' property must be an object.")
    current: JsonDict = account.get("identity") or {"type": "None"}
    current_types = _identity_types(current.get("type"))
    requested_types = (
        _identity_types(patch_identity["type"]) if patch_identity.get("type") is not None else set(current_types)
    )
    allowed = {"systemassigned", "userassigned", "none"}
    if not requested_types <= allowed or ("none" in requested_types and len(requested_types) > 1):
        raise bad_request(
            f"The identity type '{patch_identity.get('type')}' is not valid. Use 'SystemAssigned', 'UserAssigned', "
            "'SystemAssigned,UserAssigned' or 'None'."
        )
    patch_users = patch_identity.get("userAssignedIdentities") or {}
    if not isinstance(patch_users, dict):
        raise bad_request("'identity.userAssignedIdentities' must map identity resource ids to {}.")
    if requested_types in (set(), {"none"}):
        return {"type": "None"}
    result: JsonDict = {}
    if "systemassigned" in requested_types:
        if "systemassigned" in current_types and current.get("principalId"):
            result["principalId"] = current["principalId"]
            result["tenantId"] = current.get("tenantId", state.tenant_id)
        else:
            result["principalId"] = str(uuid.uuid4()) if final else None
            result["tenantId"] = state.tenant_id
    if "userassigned" in requested_types:
        users: JsonDict = dict(current.get("userAssignedIdentities") or {}) if "userassigned" in current_types else {}
        for identity_id, value in patch_users.items():
            existing = _find_case_insensitive(users, identity_id)
            if value is None:
                if existing is not None:
                    users.pop(existing)
                continue
            uami = state.resources.get(identity_id)
            if uami is None or str(uami.get("type", "")).lower() != IDENTITY_TYPE:
                raise bad_request(
                    f"The user assigned identity '{identity_id}' of account '{account['name']}' was not found. "
                    "Create it or check the resource id.",
                    "FailedIdentityOperation",
                )
            uami_properties = uami.get("properties") or {}
            if existing is not None:
                users.pop(existing)
            users[identity_id] = {
                "principalId": uami_properties.get("principalId"),
                "clientId": uami_properties.get("clientId"),
            }
        if not users:
            raise bad_request("Identity type 'UserAssigned' requires at least one entry in userAssignedIdentities.")
        result["userAssignedIdentities"] = users
    elif patch_users and any(value is not None for value in patch_users.values()):
        raise bad_request("userAssignedIdentities can only be given with identity type 'UserAssigned'.")
    type_names = []
    if "systemassigned" in requested_types:
        type_names.append("SystemAssigned")
    if "userassigned" in requested_types:
        type_names.append("UserAssigned")
    return {"type": ",".join(type_names), **result}


@dataclass(frozen=True)
class DefaultIdentity:
    kind: str  # FirstParty | SystemAssigned | UserAssigned
    user_assigned_id: str | None = None


def parse_default_identity(value: Any, account_name: str) -> DefaultIdentity:
    match = _DEFAULT_IDENTITY.match(str(value)) if isinstance(value, str) else None
    if match is None:
        raise bad_request(with_activity_id(DEFAULT_IDENTITY_FORMAT_MESSAGE.format(name=account_name)))
    if match.group("first"):
        return DefaultIdentity("FirstParty")
    if match.group("system"):
        return DefaultIdentity("SystemAssigned")
    return DefaultIdentity("UserAssigned", match.group("user"))


def default_identity_principal(
    state: CloudState, account: JsonDict, identity: JsonDict | None = None
) -> tuple[str | None, str]:
    """(principal object id, label) of the account's default identity; principal None if it does not resolve."""
    properties = account.get("properties") or {}
    value = properties.get("defaultIdentity") or "FirstPartyIdentity"
    identity = identity if identity is not None else (account.get("identity") or {})
    try:
        parsed = parse_default_identity(value, str(account.get("name", "")))
    except ArmError:
        return None, f"'{value}'"
    if parsed.kind == "FirstParty":
        return state.settings.first_party_principal_id, "'FirstPartyIdentity' (the Azure Cosmos DB first-party app)"
    if parsed.kind == "SystemAssigned":
        if "systemassigned" not in _identity_types(identity.get("type")):
            return None, "'SystemAssignedIdentity'"
        principal = identity.get("principalId")
        return (str(principal) if principal else None), "'SystemAssignedIdentity'"
    users: JsonDict = identity.get("userAssignedIdentities") or {}
    found = _find_case_insensitive(users, parsed.user_assigned_id or "")
    label = f"'UserAssignedIdentity={parsed.user_assigned_id}'"
    if found is None:
        return None, label
    principal = (users[found] or {}).get("principalId")
    return (str(principal) if principal else None), label


def check_default_identity(
    state: CloudState, account: JsonDict, value: Any, resulting_identity: JsonDict
) -> DefaultIdentity:
    name = str(account.get("name", ""))
    parsed = parse_default_identity(value, name)
    types = _identity_types(resulting_identity.get("type"))
    if parsed.kind == "SystemAssigned" and "systemassigned" not in types:
        raise bad_request(
            with_activity_id(
                f"The given default identity for {name} is not valid. 'SystemAssignedIdentity' requires the account "
                "to have a system assigned identity."
            )
        )
    if parsed.kind == "UserAssigned":
        users: JsonDict = resulting_identity.get("userAssignedIdentities") or {}
        if "userassigned" not in types or _find_case_insensitive(users, parsed.user_assigned_id or "") is None:
            raise bad_request(
                with_activity_id(
                    f"The given default identity for {name} is not valid. The user assigned identity "
                    f"'{parsed.user_assigned_id}' is not assigned to the account."
                )
            )
    return parsed
