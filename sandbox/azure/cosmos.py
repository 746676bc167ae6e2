"""Microsoft.DocumentDB/databaseAccounts: reads, the asynchronous PATCH, its operation URLs, and CMK enablement.

The behaviours and their sources are listed in sandbox/worlds/README.md ("Behaviour reference"). In short:
PATCH answers 200 with Azure-AsyncOperation + Location and the *old* body marked `Updating`; the operation
completes on the simulated clock; enabling CMK runs an encryption whose length follows the data size and spare
RU/s, during which every other write is refused; a doomed enablement fails asynchronously with the reason.
"""

from __future__ import annotations

import contextlib
import copy
import re
import uuid
from dataclasses import dataclass
from typing import Any

from sandbox.azure.cosmos_documents import document_endpoint, largest_document_id
from sandbox.azure.errors import ArmError, bad_request, resource_not_found
from sandbox.azure.ids import (
    ACCOUNT_SERVICE_TYPE,
    IDENTITY_TYPE,
    JsonDict,
    id_key,
    parse_key_uri,
    parse_resource_id,
    region_slug,
    same_key_uri,
)
from sandbox.azure.keyvault import KeyProblem, key_problem, vault_protection_problem
from sandbox.azure.messages import Reply, RequestContext, iso
from sandbox.azure.operation_store import Operation, new_operation_id
from sandbox.azure.resources import get_resource
from sandbox.azure.routing import RouteMatch, RouteTable
from sandbox.azure.state import CloudState
from sandbox.azure.throughput_model import KIND_THROUGHPUT, raised_ru_per_second
from sandbox.azure.vault_store import current_key_version, find_key, find_vault

# The operation name of the resource events an account write raises (the request's action is in action_table.py).
ACTION_WRITE = "Microsoft.DocumentDB/databaseAccounts/write"

READ_ONLY_PROPERTIES = frozenset(
    {
        "provisioningState",
        "documentEndpoint",
        "databaseAccountOfferType",
        "writeLocations",
        "readLocations",
        "failoverPolicies",
        "privateEndpointConnections",
        "instanceId",
        "keysMetadata",
        "keyVaultKeyUriVersion",
        "customerManagedKeyStatus",
    }
)
PREVIEW_ONLY_PROPERTIES = ("enableMaterializedViews", "enableAllVersionsAndDeletesChangeFeed")
CMK_CONFIRMED = "Access to the configured customer managed key confirmed."
CMK_MIXED_MESSAGE = "Cannot update Customer Managed Key settings and other properties at the same time."
MAX_ENCRYPTED_ID_BYTES = 990
DEFAULT_IDENTITY_FORMAT_MESSAGE = (
    "The given default identity for {name} is not valid. The format for the default identity is not valid, please "
    "use 'FirstPartyIdentity'/'SystemAssignedIdentity'/'UserAssignedIdentity=<UA_resource_id>'"
)
_ACTIVITY_SUFFIX = "\r\nActivityId: {activity}, Microsoft.Azure.Documents.Common/2.14.0"

KIND_ENABLE_CMK = "enableCustomerManagedKey"
KIND_ROTATE_CMK = "rotateCustomerManagedKey"
KIND_UNCHANGED = "unchanged"
KIND_IDENTITY = "identity"
KIND_UPDATE = "update"
KIND_SQL_ROLE_ASSIGNMENT = "sqlRoleAssignment"
TIMER_CONFIRM_KEY_STATUS = "confirmCustomerManagedKeyStatus"
ACTION_SQL_ROLE_ASSIGNMENT_WRITE = "Microsoft.DocumentDB/databaseAccounts/sqlRoleAssignments/write"
_GUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")

ROUTES = RouteTable()
_ACCOUNT = (
    "/subscriptions/{subscription}[/resourceGroups/{group}]/providers/Microsoft.DocumentDB/databaseAccounts/{account}"
)

_DEFAULT_IDENTITY = re.compile(
    r"^(?:(?P<first>FirstPartyIdentity)|(?P<system>SystemAssignedIdentity)|"
    r"UserAssignedIdentity=(?P<user>/subscriptions/[^&]+)(?:&FederatedClientId=(?P<federated>[0-9a-fA-F-]{36}))?)$"
)


def _with_activity(message: str) -> str:
    return message + _ACTIVITY_SUFFIX.format(activity=uuid.uuid4())


def is_preview(api_version: str) -> bool:
    return api_version.lower().endswith("-preview")


# ----------------------------------------------------------------------------- reads


def account_view(state: CloudState, body: JsonDict, api_version: str, base_url: str) -> JsonDict:
    """The account as a GET at `api_version` shows it right now (in-flight state, preview fields, endpoint)."""
    view = copy.deepcopy(body)
    properties = view.get("properties")
    if isinstance(properties, dict):
        if "documentEndpoint" in properties:
            # The one field that differs from the stored body: the data plane is this simulator.
            properties["documentEndpoint"] = document_endpoint(base_url, str(view.get("name", "")))
        running = state.operations.in_flight(str(view["id"]))
        if running is not None and running.kind not in (KIND_SQL_ROLE_ASSIGNMENT, KIND_THROUGHPUT):
            properties["provisioningState"] = "Updating"
        if not is_preview(api_version):
            for name in PREVIEW_ONLY_PROPERTIES:
                properties.pop(name, None)
    return view


@ROUTES.route("GET", _ACCOUNT)
def get_account(state: CloudState, context: RequestContext, match: RouteMatch) -> Reply:
    return _account_reply(state, context, match.path)


def _account_reply(state: CloudState, context: RequestContext, account_id: str) -> Reply:
    account = state.resources.get(account_id)
    if account is None:
        raise resource_not_found(account_id)
    return Reply(200, account_view(state, account, context.api_version, context.base_url))


# ----------------------------------------------------------------------------- identity helpers


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
        raise bad_request(_with_activity(DEFAULT_IDENTITY_FORMAT_MESSAGE.format(name=account_name)))
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


def _check_default_identity(
    state: CloudState, account: JsonDict, value: Any, resulting_identity: JsonDict
) -> DefaultIdentity:
    name = str(account.get("name", ""))
    parsed = parse_default_identity(value, name)
    types = _identity_types(resulting_identity.get("type"))
    if parsed.kind == "SystemAssigned" and "systemassigned" not in types:
        raise bad_request(
            _with_activity(
                f"The given default identity for {name} is not valid. 'SystemAssignedIdentity' requires the account "
                "to have a system assigned identity."
            )
        )
    if parsed.kind == "UserAssigned":
        users: JsonDict = resulting_identity.get("userAssignedIdentities") or {}
        if "userassigned" not in types or _find_case_insensitive(users, parsed.user_assigned_id or "") is None:
            raise bad_request(
                _with_activity(
                    f"The given default identity for {name} is not valid. The user assigned identity "
                    f"'{parsed.user_assigned_id}' is not assigned to the account."
                )
            )
    return parsed


# ----------------------------------------------------------------------------- writes


@dataclass(frozen=True)
class Plan:
    kind: str
    duration: float
    outcome: str
    error: JsonDict | None
    failure_after: float | None = None


def _is_empty(value: Any) -> bool:
    return value is None or value == {} or value == [] or value == ""


def refuse_if_locked(state: CloudState, account: JsonDict) -> None:
    running = state.operations.in_flight(str(account["id"]))
    if running is None:
        return
    if running.kind == KIND_ENABLE_CMK:
        raise ArmError(
            409,
            "Conflict",
            _with_activity(
                f"Operation on account '{account['name']}' is not allowed while the customer-managed key encryption "
                f"of its existing data is in progress (operation {running.id}, started {iso(running.start)}). "
                "Control-plane changes are unblocked once the encryption completes."
            ),
        )
    raise ArmError(
        412,
        "PreconditionFailed",
        _with_activity(
            f"There is another user operation in progress which requires an exclusive lock on [{account['name']}]. "
            "Please retry after sometime."
        ),
    )


@ROUTES.route("PATCH", _ACCOUNT)
def patch_account(state: CloudState, context: RequestContext, match: RouteMatch) -> Reply:
    account_id = match.path
    account = state.resources.get(account_id)
    if account is None:
        raise resource_not_found(account_id)
    body = context.body
    if not isinstance(body, dict):
        raise bad_request("The request content must be a JSON object.", "InvalidRequestContent")
    properties = body.get("properties")
    if properties is not None and not isinstance(properties, dict):
        raise bad_request("'properties' must be an object.", "InvalidRequestContent")
    refuse_if_locked(state, account)
    if properties is not None and "keyVaultKeyUri" in properties:
        plan = _plan_key_change(state, account, body)
    else:
        plan = _plan_update(state, account, body)
    return start_operation(state, context, account, plan, body)


@ROUTES.route("PUT", _ACCOUNT)
def put_account(state: CloudState, context: RequestContext, match: RouteMatch) -> Reply:
    """CreateOrUpdate on an existing account: a full-body update (account creation is not simulated)."""
    account_id = match.path
    account = state.resources.get(account_id)
    if account is None:
        raise bad_request(
            "The simulator does not create database accounts; describe them in the world file.", "NotSupported"
        )
    body = context.body
    if not isinstance(body, dict) or not isinstance(body.get("properties"), dict):
        raise bad_request("The request content must be a JSON object with 'properties'.", "InvalidRequestContent")
    refuse_if_locked(state, account)
    current_uri = (account.get("properties") or {}).get("keyVaultKeyUri")
    sent_uri = body["properties"].get("keyVaultKeyUri")
    changes_key = not (
        (_is_empty(current_uri) and _is_empty(sent_uri))
        or (isinstance(current_uri, str) and isinstance(sent_uri, str) and same_key_uri(current_uri, sent_uri))
    )
    if changes_key:
        # A PUT always carries the other properties too.
        raise bad_request(_with_activity(CMK_MIXED_MESSAGE))
    update = {key: value for key, value in body.items() if key in ("tags", "identity", "properties")}
    update["properties"] = {key: value for key, value in body["properties"].items() if key != "keyVaultKeyUri"}
    plan = _plan_update(state, account, update)
    return start_operation(state, context, account, plan, update)


def _plan_key_change(state: CloudState, account: JsonDict, body: JsonDict) -> Plan:
    properties: JsonDict = body["properties"]
    mixed = [key for key, value in properties.items() if key != "keyVaultKeyUri" and not _is_empty(value)]
    mixed += [key for key in ("identity", "tags", "location", "kind") if not _is_empty(body.get(key))]
    if mixed:
        raise bad_request(_with_activity(CMK_MIXED_MESSAGE))
    settings = state.settings
    sent = properties["keyVaultKeyUri"]
    current = (account.get("properties") or {}).get("keyVaultKeyUri")
    if _is_empty(sent):
        if not _is_empty(current):
            raise bad_request(
                _with_activity(
                    f"Customer managed key encryption cannot be disabled on account '{account['name']}' once it is "
                    "enabled; keyVaultKeyUri cannot be removed."
                )
            )
        return Plan(KIND_UNCHANGED, settings.unchanged_operation_seconds, "Succeeded", None)
    if not isinstance(sent, str) or parse_key_uri(sent) is None:
        raise bad_request(
            _with_activity(
                f"The provided key vault key uri '{sent}' is invalid; expected "
                "https://<vault-name>.vault.azure.net/keys/<key-name>."
            )
        )
    if isinstance(current, str) and current:
        if same_key_uri(current, sent):
            return Plan(KIND_UNCHANGED, settings.unchanged_operation_seconds, "Succeeded", None)
        principal, label = default_identity_principal(state, account)
        problem = key_problem(state, sent, principal, label)
        duration = settings.key_rotation_seconds
        if problem is not None:
            return Plan(
                KIND_ROTATE_CMK, duration, "Failed", _problem_error(problem), settings.encryption.failure_after_seconds
            )
        return Plan(KIND_ROTATE_CMK, duration, "Succeeded", None)
    facts = state.accounts.facts(str(account["id"]))
    model = settings.encryption
    size = facts.data_size_gib if facts.data_size_gib is not None else model.default_data_size_gib
    spare = facts.spare_ru_per_second if facts.spare_ru_per_second is not None else model.default_spare_ru_per_second
    # Throughput raised since the world began is spare RU/s too (the workload did not grow with it).
    spare += raised_ru_per_second(state, str(account["id"]))
    duration = model.duration_seconds(size, spare)
    error = encryption_problem(state, account, sent)
    if error is not None:
        return Plan(KIND_ENABLE_CMK, duration, "Failed", error, model.failure_after_seconds)
    return Plan(KIND_ENABLE_CMK, duration, "Succeeded", None)


def _problem_error(problem: KeyProblem) -> JsonDict:
    return {
        "code": "BadRequest",
        "message": problem.message,
        "details": [{"code": problem.code, "message": problem.message}],
    }


def _failure(code: str, detail_code: str, message: str) -> JsonDict:
    return {"code": code, "message": message, "details": [{"code": detail_code, "message": message}]}


def _capabilities(account: JsonDict) -> set[str]:
    return {
        str(capability.get("name", "")).lower()
        for capability in (account.get("properties") or {}).get("capabilities") or []
        if isinstance(capability, dict)
    }


def encryption_problem(state: CloudState, account: JsonDict, key_uri: str) -> JsonDict | None:
    """Why enabling CMK on this account with this key fails, evaluated at trigger time (None if it succeeds)."""
    name = account["name"]
    properties: JsonDict = account.get("properties") or {}
    capabilities = _capabilities(account)
    if "enablecassandra" in capabilities:
        return _failure(
            "BadRequest",
            "CassandraNotSupported",
            f"Enabling customer-managed keys on an existing account is not supported for API for Apache Cassandra "
            f"accounts ('{name}').",
        )
    if "enablenosqlvectorsearch" in capabilities:
        return _failure(
            "BadRequest",
            "VectorSearchNotSupported",
            f"Enabling customer-managed keys on an existing account is not supported for accounts with vector "
            f"search enabled ('{name}').",
        )
    builder = any(
        str((service.get("properties") or {}).get("serviceType", "")).lower() == "materializedviewsbuilder"
        for service in state.resources.of_type(ACCOUNT_SERVICE_TYPE)
        if id_key(str(service["id"])).startswith(id_key(str(account["id"])) + "/")
    )
    if properties.get("enableMaterializedViews") is True or builder:
        return _failure(
            "BadRequest",
            "MaterializedViewsNotSupported",
            f"Enabling customer-managed keys on an existing account is not supported for accounts with materialized "
            f"views ('{name}').",
        )
    if properties.get("enableAllVersionsAndDeletesChangeFeed") is True:
        return _failure(
            "BadRequest",
            "AllVersionsAndDeletesChangeFeedNotSupported",
            f"Enabling customer-managed keys on an existing account is not supported for accounts with the all "
            f"versions and deletes change feed mode ('{name}').",
        )
    backup_type = str((properties.get("backupPolicy") or {}).get("type", "Periodic"))
    default_identity = str(properties.get("defaultIdentity") or "FirstPartyIdentity")
    if backup_type.lower() == "continuous" and not default_identity.startswith("UserAssignedIdentity="):
        return _failure(
            "BadRequest",
            "ContinuousBackupRequiresUserAssignedIdentity",
            f"Account '{name}' uses continuous backup: only a user-assigned managed identity is supported as the "
            f"default identity for enabling customer-managed keys (current default identity: '{default_identity}').",
        )
    protection = vault_protection_problem(state, key_uri)
    if protection is not None:
        return _problem_error(protection)
    principal, label = default_identity_principal(state, account)
    problem = key_problem(state, key_uri, principal, label)
    if problem is not None:
        return _problem_error(problem)
    facts = state.accounts.facts(str(account["id"]))
    largest = largest_document_id(facts, account)
    if largest is not None and largest[0] > MAX_ENCRYPTED_ID_BYTES:
        size, location = largest
        return _failure(
            "BadRequest",
            "LargeDocumentIdFound",
            f"Unexpected error on document scan for CMK Migration: found a document whose id is {size} bytes long "
            f"(in {location}); with customer-managed keys ids are limited to {MAX_ENCRYPTED_ID_BYTES} bytes. The "
            "encryption cannot proceed until such documents are deleted.",
        )
    spare = facts.spare_ru_per_second
    if spare is not None and spare < state.settings.encryption.scan_min_spare_ru_per_second:
        return _failure(
            "InternalServerError",
            "DocumentScanThrottled",
            "Unexpected error on document scan for CMK Migration. Please retry the operation.",
        )
    return None


def _plan_update(state: CloudState, account: JsonDict, body: JsonDict) -> Plan:
    settings = state.settings
    properties: JsonDict = body.get("properties") or {}
    current_identity: JsonDict = account.get("identity") or {"type": "None"}
    resulting_identity = current_identity
    if "identity" in body and body["identity"] is not None:
        resulting_identity = resolve_identity(state, account, body["identity"], final=False)
    current_default = (account.get("properties") or {}).get("defaultIdentity") or "FirstPartyIdentity"
    new_default = properties.get("defaultIdentity")
    effective_default = new_default if new_default is not None else current_default
    if new_default is not None or resulting_identity is not current_identity:
        try:
            _check_default_identity(state, account, effective_default, resulting_identity)
        except ArmError as error:
            if new_default is None:
                raise bad_request(
                    _with_activity(
                        f"The identity change of account '{account['name']}' would remove its default identity "
                        f"'{effective_default}'; change the default identity first."
                    )
                ) from error
            raise
    key_uri = (account.get("properties") or {}).get("keyVaultKeyUri")
    if new_default is not None and isinstance(key_uri, str) and key_uri and new_default != current_default:
        # azure-cli PR #17583: a default identity change on a CMK account is validated against Key Vault access.
        candidate = {**account, "properties": {**(account.get("properties") or {}), "defaultIdentity": new_default}}
        principal, label = default_identity_principal(state, candidate, resulting_identity)
        problem = key_problem(state, key_uri, principal, label)
        if problem is not None:
            raise bad_request(
                _with_activity(
                    f"The default identity of account '{account['name']}' stays unchanged: the new default identity "
                    f"failed Key Vault access validation. {problem.message}"
                )
            )
    touches_identity = "identity" in body or new_default is not None
    kind = KIND_IDENTITY if touches_identity else KIND_UPDATE
    duration = settings.identity_operation_seconds if touches_identity else settings.update_operation_seconds
    return Plan(kind, duration, "Succeeded", None)


@ROUTES.route("PUT", _ACCOUNT + "/sqlRoleAssignments/{assignment}")
def put_sql_role_assignment(state: CloudState, context: RequestContext, match: RouteMatch) -> Reply:
    """Data-plane role assignment: an asynchronous account operation (202), holding the account's lock."""
    assignment_id = match.path
    account_id = assignment_id[: id_key(assignment_id).rfind("/sqlroleassignments/")]
    account = state.resources.get(account_id)
    if account is None:
        raise resource_not_found(account_id)
    name = assignment_id.rstrip("/").rsplit("/", 1)[1]
    body = context.body
    properties = body.get("properties") if isinstance(body, dict) else None
    if not isinstance(properties, dict):
        raise bad_request("The request content must be a JSON object with 'properties'.", "InvalidRequestContent")
    role = str(properties.get("roleDefinitionId", ""))
    scope = str(properties.get("scope", ""))
    principal = str(properties.get("principalId", ""))
    account_key = id_key(str(account["id"]))
    if not _GUID.match(name) or not _GUID.match(principal):
        raise bad_request("The role assignment id and the principal id must be GUIDs.")
    if not id_key(role).startswith(account_key + "/sqlroledefinitions/"):
        raise bad_request(f"The role definition '{role}' must be a sqlRoleDefinitions resource of this account.")
    if not (id_key(scope) == account_key or id_key(scope).startswith(account_key + "/")):
        raise bad_request(f"The scope '{scope}' must be the account or a resource within it.")
    refuse_if_locked(state, account)
    created = {
        "id": f"{account['id']}/sqlRoleAssignments/{name}",
        "name": name,
        "type": "Microsoft.DocumentDB/databaseAccounts/sqlRoleAssignments",
        "properties": {"roleDefinitionId": role, "scope": scope, "principalId": principal},
    }
    plan = Plan(KIND_SQL_ROLE_ASSIGNMENT, state.settings.update_operation_seconds, "Succeeded", None)
    reply = start_operation(state, context, account, plan, created)
    return Reply(202, None, headers=reply.headers, empty=True)


def start_operation(state: CloudState, context: RequestContext, account: JsonDict, plan: Plan, body: JsonDict) -> Reply:
    now = state.now()
    end = now + plan.duration
    if plan.outcome == "Failed" and plan.failure_after is not None:
        end = now + min(plan.duration, plan.failure_after)
    parsed = parse_resource_id(str(account["id"]))
    assert parsed is not None
    operation = Operation(
        id=new_operation_id(),
        account_id=str(account["id"]),
        subscription_id=parsed.subscription_id,
        region=region_slug(str(account.get("location", ""))),
        kind=plan.kind,
        changes=copy.deepcopy(body),
        requested_by=context.principal_id,
        requested_by_claims=dict(context.claims.raw) if context.claims else {},
        request_url=context.url,
        request_method=context.method,
        api_version=context.api_version,
        start=now,
        end=end,
        outcome=plan.outcome,
        error=plan.error,
    )
    state.operations.add(operation)
    view = account_view(state, account, context.api_version, context.base_url)
    return Reply(200, view, headers=_async_headers(state, context, operation))


def _async_headers(state: CloudState, context: RequestContext, operation: Operation) -> dict[str, str]:
    base = context.base_url
    api_version = context.api_version
    headers = {
        "Azure-AsyncOperation": (
            f"{base}/subscriptions/{operation.subscription_id}/providers/Microsoft.DocumentDB/locations/"
            f"{operation.region}/operationsStatus/{operation.id}?api-version={api_version}"
        ),
        "Location": f"{base}{operation.account_id}/operationResults/{operation.id}?api-version={api_version}",
    }
    if state.settings.async_retry_after_seconds:
        headers["Retry-After"] = str(state.settings.async_retry_after_seconds)
    return headers


# ----------------------------------------------------------------------------- operation URLs


def _visible_operation(state: CloudState, context: RequestContext, operation_id: str) -> Operation:
    operation = state.operations.get(operation_id)
    # RPC: the RP validates that the caller is the identity that started the operation; others get a 404 so that
    # operation ids do not leak across principals.
    if operation is None or operation.requested_by.lower() != context.principal_id.lower():
        raise ArmError(404, "NotFound", f"The operation '{operation_id}' was not found.")
    return operation


ROUTES.add("GET", _ACCOUNT + "/sqlRoleAssignments/{assignment}", get_resource)


@ROUTES.route(
    "GET",
    "/subscriptions/{subscription}/providers/Microsoft.DocumentDB/locations/{region}/operationsStatus/{operation}",
)
def operation_status(state: CloudState, context: RequestContext, match: RouteMatch) -> Reply:
    """The Azure-AsyncOperation URL: subscription-scoped, as Cosmos DB's is."""
    subscription_id, region, operation_id = match["subscription"], match["region"], match["operation"]
    operation = _visible_operation(state, context, operation_id)
    if operation.subscription_id.lower() != subscription_id.lower() or operation.region != region.lower():
        raise ArmError(404, "NotFound", f"The operation '{operation_id}' was not found.")
    now = state.now()
    if operation.running:
        status = "Dequeued" if now - operation.start < state.settings.dequeued_seconds else "InProgress"
    else:
        status = operation.status
    body: JsonDict = {"status": status}
    if state.settings.operation_status_detail:
        span = max(operation.end - operation.start, 1e-9)
        body = {
            "id": context.path,
            "name": operation.id,
            "status": status,
            "startTime": iso(operation.start),
            **({"endTime": iso(operation.completed_at)} if operation.completed_at is not None else {}),
            "percentComplete": 100.0
            if not operation.running
            else round(min(99.0, (now - operation.start) / span * 100), 1),
        }
    if operation.status == "Failed" and operation.error is not None:
        body["error"] = operation.error
    headers = {}
    if operation.running and state.settings.async_retry_after_seconds:
        headers["Retry-After"] = str(state.settings.async_retry_after_seconds)
    return Reply(200, body, headers=headers)


@ROUTES.route("GET", _ACCOUNT + "/operationResults/{operation}")
def operation_result(state: CloudState, context: RequestContext, match: RouteMatch) -> Reply:
    """The Location URL: 202 while the operation runs, then the account (or the operation's error)."""
    account_id, operation_id = "/".join(match.path.split("/")[:-2]), match["operation"]
    operation = _visible_operation(state, context, operation_id)
    if id_key(operation.account_id) != id_key(account_id):
        raise ArmError(404, "NotFound", f"The operation '{operation_id}' was not found.")
    if operation.running:
        headers = {"Location": f"{context.base_url}{context.path}?api-version={context.api_version}"}
        if state.settings.async_retry_after_seconds:
            headers["Retry-After"] = str(state.settings.async_retry_after_seconds)
        return Reply(202, None, headers=headers, empty=True)
    if operation.status == "Failed":
        error = operation.error or {"code": "InternalServerError", "message": "The operation failed."}
        status = 500 if error.get("code") == "InternalServerError" else 400
        raise ArmError(status, str(error.get("code")), str(error.get("message")), details=error.get("details"))
    return _account_reply(state, context, account_id)


# ----------------------------------------------------------------------------- completion


def complete_operation(state: CloudState, operation: Operation) -> None:
    """Apply a finished operation to the account (on success) and raise its ARM event."""
    account = state.resources.get(operation.account_id)
    if account is None:
        return
    resource_id, action = str(account["id"]), ACTION_WRITE
    if operation.kind == KIND_SQL_ROLE_ASSIGNMENT:
        resource_id, action = str(operation.changes["id"]), ACTION_SQL_ROLE_ASSIGNMENT_WRITE
        if operation.outcome == "Succeeded":
            state.resources.put(copy.deepcopy(operation.changes))
    elif operation.kind == KIND_THROUGHPUT:
        changed = operation.changes["body"]
        resource_id, action = str(changed["id"]), f"{changed['type']}/write"
        if operation.outcome == "Succeeded":
            state.resources.put(copy.deepcopy(changed))
    elif operation.outcome == "Succeeded":
        state.resources.put(_apply(state, account, operation))
    state.hooks.resource_written(
        None,
        resource_id,
        action,
        operation.outcome,
        claims=operation.requested_by_claims,
        http_method=operation.request_method,
        http_url=operation.request_url,
    )


def _apply(state: CloudState, account: JsonDict, operation: Operation) -> JsonDict:
    updated = copy.deepcopy(account)
    properties: JsonDict = updated.setdefault("properties", {})
    changes = operation.changes
    if operation.kind in (KIND_ENABLE_CMK, KIND_ROTATE_CMK):
        sent = str(changes["properties"]["keyVaultKeyUri"])
        properties["keyVaultKeyUri"] = sent
        parsed = parse_key_uri(sent)
        vault = find_vault(state.resources, parsed.vault_name) if parsed is not None else None
        key = find_key(state.resources, vault, parsed.key_name) if vault is not None and parsed is not None else None
        version = parsed.version if parsed is not None and parsed.version else None
        properties["keyVaultKeyUriVersion"] = version or (current_key_version(key) if key is not None else None)
        lag = _key_status_lag(state, operation)
        if lag > 0:
            # The encryption has succeeded, but the account does not confirm the key yet (see keyStatusLagSeconds).
            properties.pop("customerManagedKeyStatus", None)
            state.operations.add_timer(
                {
                    "id": f"{TIMER_CONFIRM_KEY_STATUS}/{operation.id}",
                    "kind": TIMER_CONFIRM_KEY_STATUS,
                    "dueAt": (operation.completed_at or operation.end) + lag,
                    "accountId": operation.account_id,
                    "keyUri": sent,
                }
            )
        else:
            properties["customerManagedKeyStatus"] = CMK_CONFIRMED
        return updated
    if operation.kind == KIND_UNCHANGED:
        return updated
    if "tags" in changes and changes["tags"] is not None:
        updated["tags"] = copy.deepcopy(changes["tags"])
    if "identity" in changes and changes["identity"] is not None:
        # If a user-assigned identity vanished mid-operation, the identity stays as it was.
        with contextlib.suppress(ArmError):
            updated["identity"] = resolve_identity(state, account, changes["identity"], final=True)
    for name, value in (changes.get("properties") or {}).items():
        if name not in READ_ONLY_PROPERTIES:  # ARM ignores read-only properties in a PATCH body
            properties[name] = copy.deepcopy(value)
    return updated


def _key_status_lag(state: CloudState, operation: Operation) -> float:
    if operation.kind != KIND_ENABLE_CMK:
        return 0.0
    facts = state.accounts.facts(operation.account_id)
    if facts.key_status_lag_seconds is not None:
        return facts.key_status_lag_seconds
    return state.settings.encryption.key_status_lag_seconds


def fire_timer(state: CloudState, timer: JsonDict) -> None:
    """A timer set by this module fell due: the account now confirms the key it was enabled with."""
    if timer.get("kind") != TIMER_CONFIRM_KEY_STATUS:
        return
    account = state.resources.get(str(timer["accountId"]))
    if account is None:
        return
    current = (account.get("properties") or {}).get("keyVaultKeyUri")
    if not isinstance(current, str) or not same_key_uri(current, str(timer["keyUri"])):
        return  # the key changed meanwhile (a rotation sets its own status)
    updated = copy.deepcopy(account)
    updated.setdefault("properties", {})["customerManagedKeyStatus"] = CMK_CONFIRMED
    state.resources.put(updated)
