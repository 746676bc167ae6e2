"""HTTP trigger route templates with the ASP.NET Core syntax the Functions host uses.

Supported: literal segments (case-insensitive), `{name}`, optional `{name?}`, defaults `{name=value}`, catch-all
`{*name}`, and inline constraints `{name:int}`, `:long`, `:bool`, `:alpha`, `:guid`, `:double`, `:float`,
`:decimal`, `:datetime`, `:minlength(n)`, `:maxlength(n)`, `:length(n[,m])`, `:min(n)`, `:max(n)`,
`:range(m,n)`, `:regex(...)`, `:required`, `:file`, `:nonfile` (ASP.NET Core's default constraint map). A constraint
outside it makes the template invalid (`RouteTemplateError`, ASP.NET's message), as it puts the function in error on
Azure. Routes are tried in ASP.NET precedence order: literal before constrained parameter before parameter before
optional before catch-all.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

_PARAMETER = re.compile(r"\{(?P<body>[^{}]+)\}")
_INT32 = (-(2**31), 2**31 - 1)
_INT64 = (-(2**63), 2**63 - 1)


def _is_int(value: str, bounds: tuple[int, int]) -> bool:
    try:
        number = int(value)
    except ValueError:
        return False
    return bounds[0] <= number <= bounds[1]


def _is_float(value: str) -> bool:
    try:
        float(value)
    except ValueError:
        return False
    return True


def _is_guid(value: str) -> bool:
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True


def _is_datetime(value: str) -> bool:
    try:
        datetime.fromisoformat(value)
    except ValueError:
        return False
    return True


def _is_file_name(value: str) -> bool:
    """ASP.NET's FileNameRouteConstraint: the last segment has a dot followed somewhere by something else."""
    last = value.rsplit("/", 1)[-1]
    dot = last.find(".")
    return dot >= 0 and last[dot + 1 :].strip(".") != ""


class RouteTemplateError(ValueError):
    """A route template ASP.NET Core routing refuses."""


_SIMPLE_CONSTRAINTS: dict[str, Callable[[str], bool]] = {
    "int": lambda v: _is_int(v, _INT32),
    "long": lambda v: _is_int(v, _INT64),
    "bool": lambda v: v.lower() in ("true", "false"),
    "alpha": lambda v: v.isascii() and v.isalpha(),
    "guid": _is_guid,
    "double": _is_float,
    "float": _is_float,
    "decimal": _is_float,
    "datetime": _is_datetime,
    "required": lambda v: v != "",
    "file": _is_file_name,
    "nonfile": lambda v: not _is_file_name(v),
}


def _constraint_check(constraint: str) -> Callable[[str], bool]:
    name, _, argument = constraint.partition("(")
    argument = argument[:-1] if argument.endswith(")") else argument
    name = name.strip().lower()
    if name in _SIMPLE_CONSTRAINTS:
        return _SIMPLE_CONSTRAINTS[name]
    numbers = [a.strip() for a in argument.split(",")] if argument else []
    if name == "minlength":
        return lambda v: len(v) >= int(numbers[0])
    if name == "maxlength":
        return lambda v: len(v) <= int(numbers[0])
    if name == "length":
        if len(numbers) == 1:
            return lambda v: len(v) == int(numbers[0])
        return lambda v: int(numbers[0]) <= len(v) <= int(numbers[1])
    if name == "min":
        return lambda v: _is_int(v, _INT64) and int(v) >= int(numbers[0])
    if name == "max":
        return lambda v: _is_int(v, _INT64) and int(v) <= int(numbers[0])
    if name == "range":
        return lambda v: _is_int(v, _INT64) and int(numbers[0]) <= int(v) <= int(numbers[1])
    if name == "regex":
        pattern = re.compile(argument, re.IGNORECASE)
        return lambda v: pattern.search(v) is not None
    raise RouteTemplateError(
        f"The constraint reference '{name}' could not be resolved to a type. Register the constraint type with "
        "'Microsoft.AspNetCore.Routing.RouteOptions.ConstraintMap'."
    )


@dataclass(frozen=True)
class _Parameter:
    name: str
    optional: bool
    catch_all: bool
    default: str | None
    checks: tuple[Callable[[str], bool], ...]


def _parse_parameter(body: str) -> tuple[_Parameter, int]:
    """Returns the parameter and its precedence rank (1 constrained, 2 plain, 3 optional, 4 catch-all)."""
    catch_all = body.startswith("*")
    body = body.lstrip("*")
    default: str | None = None
    if "=" in body:
        body, default = body.split("=", 1)
    optional = body.endswith("?")
    body = body.rstrip("?")
    name, *constraints = body.split(":")
    checks = tuple(_constraint_check(c) for c in constraints if c)
    rank = 4 if catch_all else 3 if optional or default is not None else 1 if checks else 2
    return _Parameter(name.strip(), optional or default is not None, catch_all, default, checks), rank


class RouteTemplate:
    def __init__(self, template: str) -> None:
        self.template = template.strip("/")
        self._parameters: list[_Parameter] = []
        ranks: list[int] = []
        pattern = ""
        for index, segment in enumerate(self.template.split("/") if self.template else []):
            segment_pattern, rank, optional = self._segment(segment)
            ranks.append(rank)
            separator = "/" if index else ""
            pattern += f"(?:{separator}{segment_pattern})?" if optional else f"{separator}{segment_pattern}"
        self._regex = re.compile(f"^{pattern}/?$", re.IGNORECASE | re.DOTALL)
        self.precedence = tuple(ranks)

    def _segment(self, segment: str) -> tuple[str, int, bool]:
        parts: list[str] = []
        position = 0
        rank = 0
        only_optional = False
        matches = list(_PARAMETER.finditer(segment))
        for match in matches:
            parts.append(re.escape(segment[position : match.start()]))
            parameter, parameter_rank = _parse_parameter(match.group("body"))
            self._parameters.append(parameter)
            rank = max(rank, parameter_rank)
            group = f"(?P<{_group_name(len(self._parameters) - 1)}>{'.*' if parameter.catch_all else '[^/]+'})"
            parts.append(group)
            position = match.end()
            only_optional = len(matches) == 1 and match.group(0) == segment and parameter.optional
        parts.append(re.escape(segment[position:]))
        return "".join(parts), rank, only_optional

    def match(self, path: str) -> dict[str, str] | None:
        found = self._regex.match(path.strip("/"))
        if found is None:
            return None
        values: dict[str, str] = {}
        for index, parameter in enumerate(self._parameters):
            value = found.group(_group_name(index))
            if value is None or value == "":
                if parameter.default is not None:
                    values[parameter.name] = parameter.default
                elif not parameter.optional and not parameter.catch_all:
                    return None
                continue
            if not all(check(value) for check in parameter.checks):
                return None
            values[parameter.name] = value
        return values


def _group_name(index: int) -> str:
    return f"p{index}"
