"""ABAC conditions (version 2.0) on role assignments: the constrained-delegation subset the simulator evaluates
(ActionMatches and the RoleDefinitionId, PrincipalId and PrincipalType attributes); anything else is refused."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from sandbox.azure.rbac import action_matches

# ---------------------------------------------------------------------------------------------------------------
# ABAC conditions (version 2.0) on role assignments: the constrained-delegation subset
# ---------------------------------------------------------------------------------------------------------------

# learn.microsoft.com/azure/role-based-access-control/conditions-authorization-actions-attributes: the attributes
# and operators a condition on role assignments can use; conditions-format for ActionMatches and the grammar.
_CONDITION_ATTRIBUTES = {
    "microsoft.authorization/roleassignments:roledefinitionid": ("RoleDefinitionId", "guid"),
    "microsoft.authorization/roleassignments:principalid": ("PrincipalId", "guid"),
    "microsoft.authorization/roleassignments:principaltype": ("PrincipalType", "string"),
}
_CONDITION_OPERATORS = {
    "guid": {"guidequals", "guidnotequals"},
    "string": {"stringequalsignorecase", "stringnotequalsignorecase"},
}
_CONDITION_TOKEN = re.compile(
    r"""\s*(?:
        (?P<open>\() | (?P<close>\)) | (?P<not>!|\bNOT\b) | (?P<and>&&|\bAND\b) | (?P<or>\|\||\bOR\b)
        | (?P<matches>ActionMatches\s*\{\s*'(?P<action>[^']*)'\s*\})
        | (?P<attribute>@(?P<source>Request|Resource)\[(?P<name>[^\]]+)\])
        | (?P<values>\{[^}]*\}|'[^']*'|[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12})
        | (?P<operator>(?:(?:ForAnyOfAnyValues|ForAllOfAnyValues|ForAnyOfAllValues|ForAllOfAllValues):)?[A-Za-z]+)
    )""",
    re.VERBOSE | re.IGNORECASE,
)


_TOKEN_KINDS = ("open", "close", "not", "and", "or", "matches", "attribute", "values", "operator")


class UnsupportedCondition(ValueError):
    """A condition outside the subset the simulator evaluates (it refuses it rather than guess)."""


@dataclass(frozen=True)
class ConditionAttributes:
    """What a condition can look at: the action, and the role assignment in the request or in Azure."""

    action: str
    request: dict[str, str | None] = field(default_factory=dict)
    resource: dict[str, str | None] = field(default_factory=dict)


Condition = Callable[[ConditionAttributes], bool]


def _tokens(text: str) -> list[tuple[str, re.Match[str]]]:
    tokens: list[tuple[str, re.Match[str]]] = []
    position = 0
    stripped = text.rstrip()
    while position < len(stripped):
        match = _CONDITION_TOKEN.match(stripped, position)
        if match is None or match.end() == position:
            raise UnsupportedCondition(f"cannot read the condition at {stripped[position : position + 40]!r}")
        kind = next(name for name in _TOKEN_KINDS if match.group(name) is not None)
        tokens.append((kind, match))
        position = match.end()
    return tokens


def _values(text: str) -> list[str]:
    inner = text[1:-1] if text.startswith("{") else text
    items = [item.strip() for item in inner.split(",")] if inner.strip() else []
    return [item[1:-1] if len(item) >= 2 and item[0] == item[-1] == "'" else item for item in items]


@lru_cache(maxsize=256)
def parse_condition(text: str) -> Condition:
    """Compile a version 2.0 condition of the constrained-delegation subset; UnsupportedCondition otherwise."""
    tokens = _tokens(text)
    position = 0

    def peek() -> str | None:
        return tokens[position][0] if position < len(tokens) else None

    def take(kind: str) -> re.Match[str]:
        nonlocal position
        if peek() != kind:
            found = tokens[position][1].group(0).strip() if position < len(tokens) else "the end"
            raise UnsupportedCondition(f"expected {kind} in the condition, found {found!r}")
        position += 1
        return tokens[position - 1][1]

    def disjunction() -> Condition:
        parts = [conjunction()]
        while peek() == "or":
            take("or")
            parts.append(conjunction())
        return parts[0] if len(parts) == 1 else (lambda attributes: any(part(attributes) for part in parts))

    def conjunction() -> Condition:
        parts = [negation()]
        while peek() == "and":
            take("and")
            parts.append(negation())
        return parts[0] if len(parts) == 1 else (lambda attributes: all(part(attributes) for part in parts))

    def negation() -> Condition:
        if peek() == "not":
            take("not")
            inner = negation()
            return lambda attributes: not inner(attributes)
        return primary()

    def primary() -> Condition:
        kind = peek()
        if kind == "open":
            take("open")
            inner = disjunction()
            take("close")
            return inner
        if kind == "matches":
            pattern = take("matches").group("action")
            return lambda attributes: action_matches(pattern, attributes.action)
        if kind == "attribute":
            return comparison()
        found = tokens[position][1].group(0).strip() if position < len(tokens) else "the end"
        raise UnsupportedCondition(f"unexpected {found!r} in the condition")

    def comparison() -> Condition:
        attribute = take("attribute")
        source = attribute.group("source").lower()
        known = _CONDITION_ATTRIBUTES.get(attribute.group("name").strip().lower())
        if known is None:
            raise UnsupportedCondition(f"the attribute {attribute.group('name')!r} is not one the simulator evaluates")
        name, kind = known
        operator = take("operator").group("operator")
        quantifier, _, base = operator.rpartition(":")
        if base.lower() not in _CONDITION_OPERATORS[kind] or quantifier.lower() not in ("", "foranyofanyvalues"):
            raise UnsupportedCondition(f"the operator {operator!r} is not one the simulator evaluates on {name}")
        wanted = _values(take("values").group("values"))
        if not quantifier and len(wanted) != 1:
            raise UnsupportedCondition(f"{operator} compares with one value; use ForAnyOfAnyValues for a set")
        negated = "not" in base.lower()

        def equal(left: str, right: str) -> bool:
            return left.strip().lower() == right.strip().lower()  # GUIDs and IgnoreCase strings alike

        def holds(attributes: ConditionAttributes) -> bool:
            values = attributes.request if source == "request" else attributes.resource
            value = values.get(name)
            if value is None:
                return False  # an attribute the request does not carry matches nothing
            if negated:
                return any(not equal(value, item) for item in wanted)
            return any(equal(value, item) for item in wanted)

        return holds

    condition = disjunction()
    if position != len(tokens):
        raise UnsupportedCondition(f"unexpected {tokens[position][1].group(0).strip()!r} in the condition")
    return condition


def check_condition(condition: Any, version: Any) -> None:
    """Refuse (ValueError) a role assignment condition the simulator cannot evaluate."""
    if condition in (None, ""):
        return
    if not isinstance(condition, str):
        raise UnsupportedCondition("a condition must be a string")
    if str(version or "2.0") != "2.0":
        raise UnsupportedCondition(f"conditionVersion {version!r} is not supported; use '2.0'")
    try:
        parse_condition(condition)
    except UnsupportedCondition as error:
        raise UnsupportedCondition(f"condition: {error}") from error
