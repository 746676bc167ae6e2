"""Who holds which action where: role assignments at any scope with inheritance, effective only after the
propagation delay, their roles (built-in or custom) and conditions."""

from __future__ import annotations

import weakref
from collections.abc import Iterable, Iterator

from sandbox.azure.conditions import ConditionAttributes, UnsupportedCondition, parse_condition
from sandbox.azure.ids import (
    ROLE_ASSIGNMENT_TYPE,
    ROLE_DEFINITION_TYPE,
    JsonDict,
    is_scope_at_or_above,
    split_role_assignment_id,
)
from sandbox.azure.rbac import BUILTIN_ROLES, RoleDefinition, action_matches, role_from_body, role_guid
from sandbox.azure.resource_store import ResourceStore
from sandbox.azure.state import CloudState

_custom_roles: weakref.WeakKeyDictionary[ResourceStore, tuple[int, dict[str, RoleDefinition]]] = (
    weakref.WeakKeyDictionary()
)


def custom_roles(state: CloudState) -> dict[str, RoleDefinition]:
    """The custom roles by guid, rebuilt only when a role definition changed (every authorization of a principal
    with a custom role reads them, a Resource Graph query once per row)."""
    version = state.resources.type_version(ROLE_DEFINITION_TYPE)
    cached = _custom_roles.get(state.resources)
    if cached is not None and cached[0] == version:
        return cached[1]
    roles: dict[str, RoleDefinition] = {}
    for body in state.resources.of_type(ROLE_DEFINITION_TYPE):
        try:
            role = role_from_body(body)
        except ValueError:
            continue
        roles[role.guid] = role
    _custom_roles[state.resources] = (version, roles)
    return roles


def find_role(state: CloudState, role_definition_id: str) -> RoleDefinition | None:
    guid = role_guid(role_definition_id)
    if guid is None:
        return None
    return BUILTIN_ROLES.get(guid) or custom_roles(state).get(guid)


# ---------------------------------------------------------------------------------------------------------------
# Role assignments and evaluation
# ---------------------------------------------------------------------------------------------------------------


def is_effective(state: CloudState, assignment_id: str) -> bool:
    """A role assignment counts only `rbacPropagationSeconds` after it was created (world ones at once)."""
    created = state.resources.created_at(assignment_id)
    return state.now() >= created + state.settings.rbac_propagation_seconds


def assignment_scope(assignment: JsonDict) -> str:
    properties = assignment.get("properties") or {}
    return str(properties.get("scope") or split_role_assignment_id(str(assignment["id"]))[0])


def _principal_assignments(state: CloudState, principal_id: str) -> Iterator[tuple[JsonDict, RoleDefinition]]:
    """The principal's effective role assignments, each with its role (assignments of unknown roles grant nothing)."""
    wanted = principal_id.lower()
    customs: dict[str, RoleDefinition] | None = None
    for assignment in state.resources.of_principal(ROLE_ASSIGNMENT_TYPE, wanted):
        properties = assignment.get("properties") or {}
        if not is_effective(state, str(assignment["id"])):
            continue
        guid = role_guid(str(properties.get("roleDefinitionId", "")))
        role = BUILTIN_ROLES.get(guid or "")
        if role is None:
            customs = custom_roles(state) if customs is None else customs
            role = customs.get(guid or "")
        if role is not None:
            yield assignment, role


def _condition_holds(assignment: JsonDict, attributes: ConditionAttributes) -> bool:
    condition = (assignment.get("properties") or {}).get("condition")
    if not condition:
        return True
    try:
        return parse_condition(str(condition))(attributes)
    except UnsupportedCondition:
        return False  # refused at PUT and at load; fail closed should one slip through


def find_grant(
    state: CloudState,
    principal_id: str,
    action: str,
    scope: str,
    *,
    data: bool = False,
    attributes: ConditionAttributes | None = None,
) -> tuple[JsonDict, RoleDefinition] | None:
    """The role assignment (and role) that lets `principal_id` perform `action` at `scope`, if any."""
    checked = attributes or ConditionAttributes(action)
    for assignment, role in _principal_assignments(state, principal_id):
        if not is_scope_at_or_above(assignment_scope(assignment), scope):
            continue
        if role.permits(action, data=data) and _condition_holds(assignment, checked):
            return assignment, role
    return None


def granted_below(state: CloudState, principal_id: str, action: str, scope: str) -> bool:
    """Whether some assignment at or below `scope` grants `action` (a list there returns what it may read)."""
    for assignment, role in _principal_assignments(state, principal_id):
        where = assignment_scope(assignment)
        related = is_scope_at_or_above(where, scope) or is_scope_at_or_above(scope, where)
        if related and role.permits(action) and _condition_holds(assignment, ConditionAttributes(action)):
            return True
    return False


def effective_data_actions(state: CloudState, principal_id: str, resource_id: str) -> list[str]:
    """Data actions granted to `principal_id` on `resource_id` by role assignments that have propagated."""
    actions: list[str] = []
    for assignment, role in _principal_assignments(state, principal_id):
        if is_scope_at_or_above(assignment_scope(assignment), resource_id):
            for permission in role.permissions:
                actions.extend(
                    action
                    for action in permission.data_actions
                    if not any(action_matches(denied, action) for denied in permission.not_data_actions)
                )
    return actions


def has_data_actions(state: CloudState, principal_id: str, resource_id: str, required: Iterable[str]) -> bool:
    """Whether effective role assignments grant every one of `required` data actions on `resource_id`."""
    return all(find_grant(state, principal_id, action, resource_id, data=True) is not None for action in required)
