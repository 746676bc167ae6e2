"""Microsoft.Authorization/roleAssignments and roleDefinitions: create, read, list, delete.

A role assignment counts for authorization checks only `rbacPropagationSeconds` (simulated) after it was created,
as Azure RBAC "can take several minutes" to apply; assignments that come from the world file are already
effective. What roles grant, and the checks themselves, are in sandbox/azure/rbac.py, grants.py and
authorizer.py.
"""

from __future__ import annotations

import re
import uuid
from typing import Any

from sandbox.azure.conditions import UnsupportedCondition, check_condition
from sandbox.azure.errors import ArmError, bad_request
from sandbox.azure.grants import find_role
from sandbox.azure.ids import (
    IDENTITY_TYPE,
    ROLE_ASSIGNMENT_TYPE,
    ROLE_DEFINITION_TYPE,
    JsonDict,
    id_key,
    is_scope_at_or_above,
    normalize_id,
    split_role_assignment_id,
)
from sandbox.azure.messages import Reply, RequestContext, iso
from sandbox.azure.rbac import BUILTIN_ROLES, role_from_body, role_guid
from sandbox.azure.routing import SCOPE_ANY, RouteMatch, RouteTable, no_route
from sandbox.azure.state import CloudState

_PRINCIPAL_TYPES = {"User", "Group", "ServicePrincipal", "ForeignGroup", "Device"}
ACTION_WRITE = "Microsoft.Authorization/roleAssignments/write"
ROUTES = RouteTable()
_ASSIGNMENTS = "{scope:scope}/providers/Microsoft.Authorization/roleAssignments"
_DEFINITIONS = "{scope:scope}/providers/Microsoft.Authorization/roleDefinitions"


def _is_guid(value: str) -> bool:
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True


def known_principals(state: CloudState) -> set[str]:
    """Principals the simulated directory knows (for PrincipalNotFound)."""
    principals = {
        state.settings.system_principal_id.lower(),
        state.settings.first_party_principal_id.lower(),
    }
    for body in state.resources.all():
        identity = body.get("identity")
        if isinstance(identity, dict):
            if isinstance(identity.get("principalId"), str):
                principals.add(identity["principalId"].lower())
            for entry in (identity.get("userAssignedIdentities") or {}).values():
                if isinstance(entry, dict) and isinstance(entry.get("principalId"), str):
                    principals.add(entry["principalId"].lower())
        properties = body.get("properties")
        is_identity = str(body.get("type", "")).lower() == IDENTITY_TYPE
        if is_identity and isinstance(properties, dict) and isinstance(properties.get("principalId"), str):
            principals.add(properties["principalId"].lower())
    for entry in state.requests.recent(2000):
        if entry.get("principal"):
            principals.add(str(entry["principal"]).lower())
    return principals


def _assignment_id(scope: str, name: str) -> str:
    base = "" if scope in ("", "/") else normalize_id(scope)
    return f"{base}/providers/Microsoft.Authorization/roleAssignments/{name}"


@ROUTES.route("PUT", _ASSIGNMENTS + "/{name}", scope=SCOPE_ANY)
def put_role_assignment(state: CloudState, context: RequestContext, match: RouteMatch) -> Reply:
    scope, name = _scope(match), match["name"]
    body = context.body
    if not isinstance(body, dict) or not isinstance(body.get("properties"), dict):
        raise bad_request("The request body must contain 'properties'.", "InvalidRequestContent")
    properties: JsonDict = body["properties"]
    if not _is_guid(name):
        raise bad_request(
            f"The role assignment ID '{name}' is not valid. The role assignment ID must be a GUID.",
            "InvalidRoleAssignmentId",
        )
    role_definition_id = str(properties.get("roleDefinitionId", ""))
    guid = role_guid(role_definition_id)
    if guid is None:
        raise bad_request(f"The role definition ID '{role_definition_id}' is not valid.", "InvalidRoleDefinitionId")
    role = find_role(state, role_definition_id)
    if role is not None and not role.assignable_at("/" if scope in ("", "/") else normalize_id(scope)):
        # A custom role outside its assignableScopes does not exist there, as far as the assignment is concerned.
        # An unknown GUID is accepted: Azure has built-in roles the simulator does not model (they grant nothing).
        raise bad_request(
            f"The specified role definition with ID '{guid}' does not exist.", "RoleDefinitionDoesNotExist"
        )
    try:
        check_condition(properties.get("condition"), properties.get("conditionVersion"))
    except UnsupportedCondition as error:
        raise bad_request(
            f"The Azure simulator cannot evaluate this role assignment condition, so it refuses it: {error}. It "
            "evaluates ActionMatches and the RoleDefinitionId, PrincipalId and PrincipalType attributes of role "
            "assignments (sandbox/worlds/README.md).",
            "UnsupportedCondition",
        ) from error
    principal_id = str(properties.get("principalId", ""))
    if not _is_guid(principal_id):
        raise bad_request(f"The principal ID '{principal_id}' is not valid.", "InvalidPrincipalId")
    principal_type = properties.get("principalType")
    if principal_type is not None and principal_type not in _PRINCIPAL_TYPES:
        raise bad_request(f"The principal type '{principal_type}' is not valid.", "InvalidPrincipalType")
    if principal_type is None and principal_id.lower() not in known_principals(state):
        raise bad_request(
            f"Principal {principal_id.replace('-', '')} does not exist in the directory {state.tenant_id}. Check that "
            "you have the correct principal ID. If you are creating this principal and then immediately assigning "
            "a role, this error might be related to a replication delay. In this case, set the role assignment "
            "principalType property to a value, such as ServicePrincipal, User, or Group.  See "
            "https://aka.ms/docs-principaltype",
            "PrincipalNotFound",
        )
    if (
        principal_type is not None
        and principal_type != "ServicePrincipal"
        and principal_id.lower() in known_principals(state)
    ):
        # Every principal the simulated directory knows is a service principal (apps, managed identities).
        raise bad_request(
            f"The PrincipalId '{principal_id.replace('-', '')}' has type 'ServicePrincipal' , which is different from "
            f"specified PrincipalType '{principal_type}'.",
            "UnmatchedPrincipalType",
        )
    assignment_id = _assignment_id(scope, name)
    scope_value = "/" if scope in ("", "/") else normalize_id(scope)
    existing = state.resources.get(assignment_id)
    if existing is not None:
        existing_properties = existing.get("properties") or {}
        same = (
            str(existing_properties.get("principalId", "")).lower() == principal_id.lower()
            and role_guid(str(existing_properties.get("roleDefinitionId", ""))) == guid
        )
        if not same:
            raise ArmError(
                409,
                "RoleAssignmentUpdateNotPermitted",
                "Tenant ID, application ID, principal ID, and scope are not allowed to be updated.",
            )
        return Reply(200, existing)
    for other in state.resources.of_type(ROLE_ASSIGNMENT_TYPE):
        other_properties = other.get("properties") or {}
        other_scope = str(other_properties.get("scope") or split_role_assignment_id(str(other["id"]))[0])
        if (
            str(other_properties.get("principalId", "")).lower() == principal_id.lower()
            and role_guid(str(other_properties.get("roleDefinitionId", ""))) == guid
            and id_key(other_scope) == id_key(scope_value)
        ):
            raise ArmError(409, "RoleAssignmentExists", "The role assignment already exists.")
    now = iso(state.now())
    created: JsonDict = {
        "properties": {
            "roleDefinitionId": f"/providers/Microsoft.Authorization/roleDefinitions/{guid}",
            "principalId": principal_id,
            "principalType": principal_type or "ServicePrincipal",
            "scope": scope_value,
            "condition": properties.get("condition"),
            "conditionVersion": properties.get("conditionVersion"),
            "createdOn": now,
            "updatedOn": now,
            "createdBy": context.principal_id,
            "updatedBy": context.principal_id,
            "delegatedManagedIdentityResourceId": properties.get("delegatedManagedIdentityResourceId"),
            "description": properties.get("description"),
        },
        "id": assignment_id,
        "type": "Microsoft.Authorization/roleAssignments",
        "name": name,
    }
    state.resources.put(created)
    state.hooks.resource_written(context, assignment_id, ACTION_WRITE, "Succeeded")
    return Reply(201, created)


@ROUTES.route("GET", _ASSIGNMENTS + "/{name}", scope=SCOPE_ANY)
def get_role_assignment(state: CloudState, context: RequestContext, match: RouteMatch) -> Reply:
    scope, name = _scope(match), match["name"]
    found = state.resources.get(_assignment_id(scope, name))
    if found is None:
        raise ArmError(404, "RoleAssignmentNotFound", f"The role assignment '{name}' is not found.")
    return Reply(200, found)


@ROUTES.route("DELETE", _ASSIGNMENTS + "/{name}", scope=SCOPE_ANY)
def delete_role_assignment(state: CloudState, context: RequestContext, match: RouteMatch) -> Reply:
    scope, name = _scope(match), match["name"]
    assignment_id = _assignment_id(scope, name)
    found = state.resources.get(assignment_id)
    if found is None:
        return Reply(204, None, empty=True)
    state.resources.delete(assignment_id)
    return Reply(200, found)


@ROUTES.route("GET", _ASSIGNMENTS, scope=SCOPE_ANY)
def list_role_assignments(state: CloudState, context: RequestContext, match: RouteMatch) -> Reply:
    scope, filter_text = _scope(match), context.query.get("$filter")
    at_scope_only, principal = _parse_filter(filter_text)
    scope_value = "/" if scope in ("", "/") else normalize_id(scope)
    results: list[Any] = []
    for assignment in state.resources.of_type(ROLE_ASSIGNMENT_TYPE):
        properties = assignment.get("properties") or {}
        assignment_scope = str(properties.get("scope") or split_role_assignment_id(str(assignment["id"]))[0])
        above = is_scope_at_or_above(assignment_scope, scope_value)
        below = is_scope_at_or_above(scope_value, assignment_scope)
        if at_scope_only and not above:
            continue
        if not (above or below):
            continue
        if principal is not None and str(properties.get("principalId", "")).lower() != principal:
            continue
        results.append(assignment)
    return Reply(200, {"value": results})


def _parse_filter(filter_text: str | None) -> tuple[bool, str | None]:
    """Supports what azure-mgmt-authorization callers send: atScope(), principalId eq '...', assignedTo('...')."""
    if not filter_text:
        return False, None
    at_scope = False
    principal: str | None = None
    for clause in re.split(r"\s+and\s+", filter_text.strip(), flags=re.IGNORECASE):
        clause = clause.strip()
        if re.fullmatch(r"atScope\(\)", clause, re.IGNORECASE):
            at_scope = True
            continue
        match = re.fullmatch(
            r"(?:principalId\s+eq\s+'(?P<a>[^']+)'|assignedTo\('(?P<b>[^']+)'\))", clause, re.IGNORECASE
        )
        if match:
            principal = (match.group("a") or match.group("b")).lower()
            continue
        raise bad_request(f"The filter '{filter_text}' is not supported.", "UnsupportedQuery")
    return at_scope, principal


@ROUTES.route("*", _ASSIGNMENTS + "/{name}/{rest:path}", scope=SCOPE_ANY)
def nothing_below_a_role_assignment(state: CloudState, context: RequestContext, match: RouteMatch) -> Reply:
    """ARM's 404, after authorization (this route comes before the role definitions': it owns any path whose last
    `roleAssignments` has more than a name below it)."""
    raise no_route(context.method, context.path)


# ----------------------------------------------------------------------------- role definitions


def _definition_id(scope: str, name: str) -> str:
    base = "" if scope in ("", "/") else normalize_id(scope)
    return f"{base}/providers/Microsoft.Authorization/roleDefinitions/{name}"


def builtin_body(guid: str) -> JsonDict:
    """A built-in role definition as GET returns it."""
    role = BUILTIN_ROLES[guid]
    return {
        "id": f"/providers/Microsoft.Authorization/roleDefinitions/{guid}",
        "name": guid,
        "type": "Microsoft.Authorization/roleDefinitions",
        "properties": {
            "roleName": role.name,
            "type": "BuiltInRole",
            "description": role.name,
            "assignableScopes": list(role.assignable_scopes),
            "permissions": [permission.to_json() for permission in role.permissions],
        },
    }


def _find_custom(state: CloudState, guid: str) -> JsonDict | None:
    for body in state.resources.of_type(ROLE_DEFINITION_TYPE):
        if str(body.get("name", "")).lower() == guid.lower():
            return body
    return None


@ROUTES.route("PUT", _DEFINITIONS + "/{name}", scope=SCOPE_ANY)
def put_role_definition(state: CloudState, context: RequestContext, match: RouteMatch) -> Reply:
    scope, name = _scope(match), match["name"]
    body = context.body
    if not isinstance(body, dict) or not isinstance(body.get("properties"), dict):
        raise bad_request("The request body must contain 'properties'.", "InvalidRequestContent")
    if not _is_guid(name):
        raise bad_request(
            f"The role definition ID '{name}' is not valid. It must be a GUID.", "InvalidRoleDefinitionId"
        )
    if name.lower() in BUILTIN_ROLES:
        raise ArmError(403, "RoleDefinitionUpdateNotPermitted", "Built-in role definitions cannot be changed.")
    properties: JsonDict = body["properties"]
    definition_id = _definition_id(scope, name)
    candidate = {"id": definition_id, "name": name, "properties": properties}
    try:
        role = role_from_body(candidate)
    except ValueError as error:
        raise bad_request(f"The role definition is not valid: {error}.", "InvalidRoleDefinition") from error
    for other in state.resources.of_type(ROLE_DEFINITION_TYPE):
        same_name = str((other.get("properties") or {}).get("roleName", "")).lower() == role.name.lower()
        if same_name and str(other.get("name", "")).lower() != name.lower():
            raise ArmError(
                409,
                "RoleDefinitionWithSameNameExists",
                "A custom role with the same name already exists in this directory. Use a different name.",
            )
    existing = _find_custom(state, name)
    previous: JsonDict = (existing.get("properties") or {}) if existing is not None else {}
    now = iso(state.now())
    created = {
        "id": str(existing["id"]) if existing is not None else definition_id,
        "name": name,
        "type": "Microsoft.Authorization/roleDefinitions",
        "properties": {
            "roleName": role.name,
            "type": "CustomRole",
            "description": properties.get("description"),
            "assignableScopes": list(role.assignable_scopes),
            "permissions": [permission.to_json() for permission in role.permissions],
            "createdOn": previous.get("createdOn", now),
            "updatedOn": now,
            "createdBy": previous.get("createdBy", context.principal_id),
            "updatedBy": context.principal_id,
        },
    }
    state.resources.put(created)
    return Reply(200 if existing is not None else 201, created)


@ROUTES.route("GET", _DEFINITIONS + "/{name}", scope=SCOPE_ANY)
def get_role_definition(state: CloudState, context: RequestContext, match: RouteMatch) -> Reply:
    name = match["name"]
    if name.lower() in BUILTIN_ROLES:
        return Reply(200, builtin_body(name.lower()))
    found = _find_custom(state, name)
    if found is None:
        raise ArmError(404, "RoleDefinitionDoesNotExist", f"The role definition '{name}' could not be found.")
    return Reply(200, found)


@ROUTES.route("DELETE", _DEFINITIONS + "/{name}", scope=SCOPE_ANY)
def delete_role_definition(state: CloudState, context: RequestContext, match: RouteMatch) -> Reply:
    name = match["name"]
    found = _find_custom(state, name)
    if found is None:
        return Reply(204, None, empty=True)
    for assignment in state.resources.of_type(ROLE_ASSIGNMENT_TYPE):
        if role_guid(str((assignment.get("properties") or {}).get("roleDefinitionId", ""))) == name.lower():
            raise ArmError(
                409,
                "RoleDefinitionHasAssignments",
                "There are existing role assignments referencing role. Delete them before deleting the role.",
            )
    state.resources.delete(str(found["id"]))
    return Reply(200, found)


@ROUTES.route("GET", _DEFINITIONS, scope=SCOPE_ANY)
def list_role_definitions(state: CloudState, context: RequestContext, match: RouteMatch) -> Reply:
    """Built-in roles and the custom roles assignable at `scope`; `$filter=roleName eq '...'` or `type eq '...'`."""
    scope, filter_text = _scope(match), context.query.get("$filter")
    scope_value = "/" if scope in ("", "/") else normalize_id(scope)
    bodies = [builtin_body(guid) for guid in BUILTIN_ROLES]
    bodies += [
        body
        for body in state.resources.of_type(ROLE_DEFINITION_TYPE)
        if any(
            is_scope_at_or_above(str(assignable), scope_value)
            for assignable in (body.get("properties") or {}).get("assignableScopes") or []
        )
    ]
    if filter_text:
        clause = re.fullmatch(r"\s*(roleName|type)\s+eq\s+'([^']*)'\s*", filter_text, re.IGNORECASE)
        if clause is None:
            raise bad_request(f"The filter '{filter_text}' is not supported.", "UnsupportedQuery")
        field, value = clause.group(1).lower(), clause.group(2).lower()
        key = "roleName" if field == "rolename" else "type"
        bodies = [body for body in bodies if str(body["properties"].get(key, "")).lower() == value]
    return Reply(200, {"value": bodies})


@ROUTES.route("*", _DEFINITIONS + "/{name}/{rest:path}", scope=SCOPE_ANY)
def nothing_below_a_role_definition(state: CloudState, context: RequestContext, match: RouteMatch) -> Reply:
    raise no_route(context.method, context.path)


def _scope(match: RouteMatch) -> str:
    return match.params.get("scope") or "/"
