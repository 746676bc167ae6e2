"""Microsoft.DocumentDB/databaseAccounts: reads, the asynchronous PATCH and PUT, and CMK enablement.

The behaviours and their sources are listed in sandbox/worlds/README.md ("Behaviour reference"). In short:
PATCH answers 200 with Azure-AsyncOperation + Location and the *old* body marked `Updating`; the operation
completes on the simulated clock (sandbox/azure/cosmos_operations.py serves its URLs and applies it); enabling CMK
runs an encryption whose length follows the data size and spare RU/s, during which every other write is refused; a
doomed enablement fails asynchronously with the reason. The account's identities are sandbox/azure/cosmos_identity.py.
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass
from typing import Any

from sandbox.azure.cosmos_documents import document_endpoint, largest_document_id
from sandbox.azure.cosmos_identity import check_default_identity, default_identity_principal, resolve_identity
from sandbox.azure.errors import ArmError, bad_request, resource_not_found, with_activity_id
from sandbox.azure.ids import (
    ACCOUNT_SERVICE_TYPE,
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

PREVIEW_ONLY_PROPERTIES = ("enableMaterializedViews", "enableAllVersionsAndDeletesChangeFeed")
CMK_MIXED_MESSAGE = "Cannot update Customer Managed Key settings and other properties at the same time."
MAX_ENCRYPTED_ID_BYTES = 990

KIND_ENABLE_CMK = "enableCustomerManagedKey"
KIND_ROTATE_CMK = "rotateCustomerManagedKey"
KIND_UNCHANGED = "unchanged"
KIND_IDENTITY = "identity"
KIND_UPDATE = "update"
KIND_SQL_ROLE_ASSIGNMENT = "sqlRoleAssignment"
_GUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")

ROUTES = RouteTable()
ACCOUNT_TEMPLATE = (
    "/subscriptions/{subscription}[/resourceGroups/{group}]/providers/Microsoft.DocumentDB/databaseAccounts/{account}"
)


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


@ROUTES.route("GET", ACCOUNT_TEMPLATE)
def get_account(state: CloudState, context: RequestContext, match: RouteMatch) -> Reply:
    return account_reply(state, context, match.path)


def account_reply(state: CloudState, context: RequestContext, account_id: str) -> Reply:
    account = state.resources.get(account_id)
    if account is None:
        raise resource_not_found(account_id)
    return Reply(200, account_view(state, account, context.api_version, context.base_url))


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
            with_activity_id(
                f"Operation on account '{account['name']}' is not allowed while the customer-managed key encryption "
                f"of its existing data is in progress (operation {running.id}, started {iso(running.start)}). "
                "Control-plane changes are unblocked once the encryption completes."
            ),
        )
    raise ArmError(
        412,
        "PreconditionFailed",
        with_activity_id(
            f"There is another user operation in progress which requires an exclusive lock on [{account['name']}]. "
            "Please retry after sometime."
        ),
    )


@ROUTES.route("PATCH", ACCOUNT_TEMPLATE)
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


@ROUTES.route("PUT", ACCOUNT_TEMPLATE)
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
        raise bad_request(with_activity_id(CMK_MIXED_MESSAGE))
    update = {key: value for key, value in body.items() if key in ("tags", "identity", "properties")}
    update["properties"] = {key: value for key, value in body["properties"].items() if key != "keyVaultKeyUri"}
    plan = _plan_update(state, account, update)
    return start_operation(state, context, account, plan, update)


def _plan_key_change(state: CloudState, account: JsonDict, body: JsonDict) -> Plan:
    properties: JsonDict = body["properties"]
    mixed = [key for key, value in properties.items() if key != "keyVaultKeyUri" and not _is_empty(value)]
    mixed += [key for key in ("identity", "tags", "location", "kind") if not _is_empty(body.get(key))]
    if mixed:
        raise bad_request(with_activity_id(CMK_MIXED_MESSAGE))
    settings = state.settings
    sent = properties["keyVaultKeyUri"]
    current = (account.get("properties") or {}).get("keyVaultKeyUri")
    if _is_empty(sent):
        if not _is_empty(current):
            raise bad_request(
                with_activity_id(
                    f"Customer managed key encryption cannot be disabled on account '{account['name']}' once it is "
                    "enabled; keyVaultKeyUri cannot be removed."
                )
            )
        return Plan(KIND_UNCHANGED, settings.unchanged_operation_seconds, "Succeeded", None)
    if not isinstance(sent, str) or parse_key_uri(sent) is None:
        raise bad_request(
            with_activity_id(
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
            check_default_identity(state, account, effective_default, resulting_identity)
        except ArmError as error:
            if new_default is None:
                raise bad_request(
                    with_activity_id(
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
                with_activity_id(
                    f"The default identity of account '{account['name']}' stays unchanged: the new default identity "
                    f"failed Key Vault access validation. {problem.message}"
                )
            )
    touches_identity = "identity" in body or new_default is not None
    kind = KIND_IDENTITY if touches_identity else KIND_UPDATE
    duration = settings.identity_operation_seconds if touches_identity else settings.update_operation_seconds
    return Plan(kind, duration, "Succeeded", None)


@ROUTES.route("PUT", ACCOUNT_TEMPLATE + "/sqlRoleAssignments/{assignment}")
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


ROUTES.add("GET", ACCOUNT_TEMPLATE + "/sqlRoleAssignments/{assignment}", get_resource)


# ----------------------------------------------------------------------------- starting an operation


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
    """The operation's two URLs, which sandbox/azure/cosmos_operations.py serves."""
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
