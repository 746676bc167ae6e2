"""What infra/fleet-access deploys, read from its Bicep with pycep: the custom roles, the role assignments and the
optional Cosmos DB data-reader SQL role assignments, as the ARM resources the deployment would PUT.

No Bicep CLI exists where the simulator runs, so this evaluates the templates itself: parameters, variables and
imported variables, string interpolation, the functions the templates use (guid, subscription, resourceGroup,
subscriptionResourceId, split, toLower, concat, union, map, filter, contains, empty), conditions, and modules
looped over arrays with their own scopes. Anything else is refused (BicepUnsupported) rather than guessed, so a
change to infra that this cannot follow fails loudly in the tests that use it. Only the subscription entry point
can be deployed here: the simulator has no management groups (main.bicep's roles live at one).

`builders.world()` grants the app with `grants()`; tests/infra/test_fleet_access_in_simulator.py deploys `deploy()`'s
resources through the simulator's ARM as an Owner would, and runs the demo with the app holding only those.
"""

from __future__ import annotations

import argparse
import json
import re
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any, cast

from pycep import BicepParser  # a dev dependency (requirements-dev.txt), like the whole sandbox

from sandbox.azure.ids import VAULT_TYPE, JsonDict, id_key, parse_resource_id, resource_type_of
from sandbox.azure.world import DEFAULT_SYSTEM_PRINCIPAL_ID

FLEET_ACCESS = Path(__file__).resolve().parents[2] / "infra" / "fleet-access"
SUBSCRIPTIONS_TEMPLATE = FLEET_ACCESS / "subscriptions.bicep"
# ARM's guid(): a name-based (version 5) UUID of the arguments joined with '-', in this namespace.
ARM_GUID_NAMESPACE = uuid.UUID("11fb06fb-712d-4ddd-98c7-e71bbd588830")
DEFAULT_INSTALLATION = "sandbox"


class BicepUnsupported(ValueError):
    """The template uses something this evaluator does not: extend it, do not let it guess."""


def bicep_guid(*parts: str) -> str:
    return str(uuid.uuid5(ARM_GUID_NAMESPACE, "-".join(parts)))


@dataclass(frozen=True)
class DeployedResource:
    """One resource the deployment creates: PUT `{id}?api-version={api_version}` with `{"properties": ...}`."""

    id: str
    type: str
    name: str
    api_version: str
    properties: JsonDict

    def body(self) -> JsonDict:
        """The resource as a GET returns it (what a world file holds)."""
        properties = dict(self.properties)
        if self.type.lower() == "microsoft.authorization/roleassignments":
            properties["scope"] = self.id[: self.id.lower().rindex("/providers/microsoft.authorization/")]
        return {"id": self.id, "name": self.name, "type": self.type, "properties": properties}


@dataclass(frozen=True)
class _Target:
    subscription_id: str
    resource_group: str | None = None

    @property
    def id(self) -> str:
        base = f"/subscriptions/{self.subscription_id}"
        return f"{base}/resourceGroups/{self.resource_group}" if self.resource_group else base


@cache
def _parse(path: Path) -> JsonDict:
    return cast(JsonDict, BicepParser().parse(file_path=path))


_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_INTERPOLATION = re.compile(r"\$\{([^}]*)\}")
_ESCAPES = {"'": "'", "\\": "\\", "n": "\n", "r": "\r", "t": "\t", "$": "$"}


def _unescape(text: str) -> str:
    return re.sub(r"\\(.)", lambda match: _ESCAPES.get(match.group(1), match.group(0)), text)


class _Template:
    def __init__(self, path: Path, parameters: dict[str, Any], target: _Target) -> None:
        self.path = path
        self.tree = _parse(path)
        self.target = target
        self.values: dict[str, Any] = {}
        self.symbols: dict[str, JsonDict] = {}
        self.deployed: list[DeployedResource] = []
        declared = self.tree.get("parameters") or {}
        unknown = sorted(set(parameters) - set(declared))
        if unknown:
            raise BicepUnsupported(f"{path.name}: no parameter(s) {unknown}")
        for name, declaration in declared.items():
            if name in parameters:
                self.values[name] = parameters[name]
            elif declaration.get("default") is not None:
                self.values[name] = self.evaluate(declaration["default"], {})
            else:
                raise BicepUnsupported(f"{path.name}: parameter {name} is required")

    # ----------------------------------------------------------------------------------------- deployment

    def run(self) -> list[DeployedResource]:
        for name in self.tree.get("resources") or {}:
            self._resource(name)
        for module in (self.tree.get("modules") or {}).values():
            self._module(module)
        return self.deployed

    def _resource(self, name: str) -> JsonDict:
        if name in self.symbols:
            return self.symbols[name]
        resource = self.tree["resources"][name]
        config = resource["config"]
        if "loop_type" in config:
            raise BicepUnsupported(f"{self.path.name}: resource loops ({name})")
        if "condition" in config and "config" in config:
            if not self.evaluate(config["condition"], {}):
                self.symbols[name] = {}
                return self.symbols[name]
            config = config["config"]
        full_type = str(resource["type"])
        resource_name = str(self.evaluate(config["name"], {}))
        if "parent" in config:
            parent = self._resource(str(config["parent"]))
            resource_id = f"{parent['id']}/{full_type.rsplit('/', 1)[1]}/{resource_name}"
        elif "scope" in config:
            scope = self.evaluate(config["scope"], {})
            resource_id = f"{scope['id']}/providers/{full_type}/{resource_name}"
        else:
            resource_id = f"{self.target.id}/providers/{full_type}/{resource_name}"
        properties = self.evaluate(config.get("properties") or {}, {})
        symbol = {"id": resource_id, "name": resource_name, "type": full_type, "properties": properties}
        self.symbols[name] = symbol
        if not resource["existing"]:
            api_version = str(resource.get("api_version") or "")
            self.deployed.append(DeployedResource(resource_id, full_type, resource_name, api_version, properties))
        return symbol

    def _module(self, module: JsonDict) -> None:
        if module["type"] != "local":
            raise BicepUnsupported(f"{self.path.name}: registry module {module['detail'].get('full')}")
        config = module["config"]
        items: list[dict[str, Any]] = [{}]
        if "loop_type" in config:
            detail = config["loop_type"]["detail"]
            array = self.evaluate(detail["array_name"], {})
            items = [{detail["item_name"]: item} for item in array]
        if config.get("condition") is not None:
            raise BicepUnsupported(f"{self.path.name}: conditional modules")
        body = config.get("config", config)
        for local in items:
            scope = self.evaluate(body["scope"], local) if "scope" in body else {"_target": self.target}
            parameters = {name: self.evaluate(value, local) for name, value in (body.get("params") or {}).items()}
            child = _Template(self.path.parent / module["detail"]["path"], parameters, scope["_target"])
            self.deployed.extend(child.run())

    # ----------------------------------------------------------------------------------------- expressions

    def lookup(self, name: str, local: dict[str, Any]) -> tuple[bool, Any]:
        if name in local:
            return True, local[name]
        if name in self.values:
            return True, self.values[name]
        variables = self.tree.get("variables") or {}
        if name in variables:
            self.values[name] = self.evaluate(variables[name]["value"], {})
            return True, self.values[name]
        imports = self.tree.get("imports") or {}
        if name in imports:
            source = _Template(self.path.parent / imports[name]["file_path"], {}, self.target)
            found, value = source.lookup(name, {})
            if not found:
                raise BicepUnsupported(f"{self.path.name}: {name} is not in {imports[name]['file_path']}")
            self.values[name] = value
            return True, value
        if name in (self.tree.get("resources") or {}):
            return True, self._resource(name)
        return False, None

    def evaluate(self, expression: Any, local: dict[str, Any]) -> Any:
        if expression is None or isinstance(expression, bool | int | float):
            return expression
        if isinstance(expression, list):
            return [self.evaluate(item, local) for item in expression]
        if isinstance(expression, str):
            return self._string(expression, local)
        if isinstance(expression, dict):
            if set(expression) == {"function"}:
                return self._call(expression["function"], local)
            if set(expression) == {"operator"}:
                return self._operator(expression["operator"], local)
            if expression.get("type") == "lambda_expression" or "loop_type" in expression:
                raise BicepUnsupported(f"{self.path.name}: {expression.get('type') or 'for'} expression here")
            return {_unquote(key): self.evaluate(value, local) for key, value in expression.items()}
        raise BicepUnsupported(f"{self.path.name}: cannot evaluate {expression!r}")

    def _string(self, text: str, local: dict[str, Any]) -> Any:
        if _IDENTIFIER.fullmatch(text):
            found, value = self.lookup(text, local)
            if found:
                return value
        if "${" in text:
            return _INTERPOLATION.sub(lambda match: str(self._path(match.group(1).strip(), local)), text)
        return _unescape(text)

    def _path(self, text: str, local: dict[str, Any]) -> Any:
        """`name` or `name.member...` inside `${...}`."""
        head, *members = text.split(".")
        found, value = False, cast(Any, None)
        if _IDENTIFIER.fullmatch(head):
            found, value = self.lookup(head, local)
        if not found:
            raise BicepUnsupported(f"{self.path.name}: cannot interpolate ${{{text}}}")
        for member in members:
            value = value[member]
        return value

    def _lambda(self, expression: Any, local: dict[str, Any], *arguments: Any) -> Any:
        if not isinstance(expression, dict) or expression.get("type") != "lambda_expression":
            raise BicepUnsupported(f"{self.path.name}: expected a lambda, found {expression!r}")
        detail = expression["detail"]
        names = [detail[key] for key in sorted(detail) if key.startswith("var_")]
        return self.evaluate(detail["expression"], {**local, **dict(zip(names, arguments, strict=True))})

    def _call(self, function: JsonDict, local: dict[str, Any]) -> Any:
        kind = function["type"]
        raw: JsonDict = function.get("parameters") or {}

        def arg(name: str) -> Any:
            return self.evaluate(raw.get(name), local)

        if kind == "guid":
            return bicep_guid(*(str(self.evaluate(value, local)) for value in raw.values() if value is not None))
        if kind == "subscription":
            subscription_id = arg("subscription_id") or self.target.subscription_id
            target = _Target(str(subscription_id))
            return {"id": target.id, "subscriptionId": target.subscription_id, "_target": target}
        if kind == "resource_group":
            name, subscription_id = arg("resource_group_name"), arg("subscription_id")
            if name is None:
                if self.target.resource_group is None:
                    raise BicepUnsupported(f"{self.path.name}: resourceGroup() outside a resource group")
                target = self.target
            else:
                target = _Target(str(subscription_id or self.target.subscription_id), str(name))
            return {"id": target.id, "name": target.resource_group, "_target": target}
        if kind == "subscription_resource_id":
            subscription_id = arg("subscription_id") or self.target.subscription_id
            names = [str(arg(key)) for key in ("resource_name_1", "resource_name_2") if raw.get(key) is not None]
            return f"/subscriptions/{subscription_id}/providers/{arg('resource_type')}/{'/'.join(names)}"
        if kind == "split":
            return str(arg("input_string")).split(str(arg("delimiter")))
        if kind == "to_lower":
            return str(arg("string_to_change")).lower()
        if kind == "empty":
            return not arg("item_to_test")
        if kind == "contains":
            return arg("item_to_find") in arg("container")
        args = [] if kind == "map" else [self.evaluate(v, local) for k, v in raw.items() if k.startswith("arg_")]
        if kind == "concat":
            if all(isinstance(item, list) for item in args):
                return [element for item in args for element in item]
            return "".join(str(item) for item in args)
        if kind == "union":
            merged: list[Any] = []
            for item in args:
                merged.extend(element for element in item if element not in merged)
            return merged
        if kind == "map":
            return [self._lambda(raw["arg_2"], local, element) for element in arg("arg_1")]
        if kind == "filter":
            array = arg("input_array")
            return [element for element in array if self._lambda(raw["expression"], local, element)]
        raise BicepUnsupported(f"{self.path.name}: function {kind}()")

    def _operator(self, operator: JsonDict, local: dict[str, Any]) -> Any:
        kind = operator["type"]
        operands: JsonDict = operator["operands"]
        if kind == "property_accessor":
            return self.evaluate(operands["operand_1"], local)[operands["operand_2"]]
        if kind == "index_accessor":
            return self.evaluate(operands["operand_1"], local)[self.evaluate(operands["operand_2"], local)]
        if kind == "conditional":
            chosen = "true_value" if self.evaluate(operands["condition"], local) else "false_value"
            return self.evaluate(operands[chosen], local)
        if kind == "not":
            return not self.evaluate(operands["bool_value"], local)
        raise BicepUnsupported(f"{self.path.name}: operator {kind}")


def _unquote(key: str) -> str:
    return key[1:-1] if len(key) >= 2 and key[0] == key[-1] == "'" else key


def deploy(
    parameters: dict[str, Any], *, home_subscription: str, template: Path = SUBSCRIPTIONS_TEMPLATE
) -> list[DeployedResource]:
    """Every resource `az deployment sub create --subscription {home_subscription}` of the template would create,
    in an order ARM can apply them (role definitions before the assignments that use them)."""
    deployed = _Template(template, parameters, _Target(home_subscription)).run()
    order = {"microsoft.authorization/roledefinitions": 0, "microsoft.authorization/roleassignments": 1}
    return sorted(deployed, key=lambda resource: order.get(resource.type.lower(), 2))


def world_subscriptions(resources: Iterable[JsonDict]) -> list[str]:
    """The subscriptions a world's resources live in, in order of first appearance."""
    found: dict[str, str] = {}
    for body in resources:
        parsed = parse_resource_id(str(body.get("id", "")))
        if parsed is not None:
            found.setdefault(parsed.subscription_id.lower(), parsed.subscription_id)
    return list(found.values())


def rbac_vaults(resources: Iterable[JsonDict]) -> list[str]:
    """The RBAC-model key vaults of a world: the ones infra's keyVaultIds names (only they need role assignments)."""
    return [
        str(body["id"])
        for body in resources
        if resource_type_of(str(body.get("id", ""))) == VAULT_TYPE
        and (body.get("properties") or {}).get("enableRbacAuthorization") is True
    ]


def grants(
    resources: Iterable[JsonDict], principal_ids: Iterable[str], *, installation: str = DEFAULT_INSTALLATION
) -> list[JsonDict]:
    """What infra/fleet-access (subscriptions.bicep) creates to let `principal_ids` run the app over a world: every
    subscription of the world in subscriptionIds, every RBAC-model vault in keyVaultIds, the first subscription as
    the home of the custom roles. As world resource bodies, already propagated once loaded."""
    bodies = list(resources)
    subscriptions = world_subscriptions(bodies)
    if not subscriptions:
        return []
    created: dict[str, JsonDict] = {}
    for principal_id in principal_ids:
        parameters = {
            "appPrincipalId": principal_id,
            "installationName": installation,
            "subscriptionIds": subscriptions,
            "keyVaultIds": rbac_vaults(bodies),
        }
        for resource in deploy(parameters, home_subscription=subscriptions[0]):
            created.setdefault(id_key(resource.id), resource.body())
    return list(created.values())


def is_fleet_access_body(body: JsonDict) -> bool:
    """Whether a world resource is one infra/fleet-access creates (its custom roles and role assignments)."""
    properties = body.get("properties") or {}
    kind = resource_type_of(str(body.get("id", "")))
    if kind == "microsoft.authorization/roledefinitions":
        return str(properties.get("roleName", "")).startswith("Cosmos DB CMK ")
    if kind == "microsoft.authorization/roleassignments":
        return "made by infra/fleet-access" in str(properties.get("description") or "")
    return False


def regrant(world: JsonDict, principal_ids: Iterable[str], *, installation: str) -> JsonDict:
    """The world with its fleet-access resources replaced by what the Bicep creates today for `principal_ids`."""
    kept = [body for body in world.get("resources") or [] if not is_fleet_access_body(body)]
    return {**world, "resources": kept + grants(kept, principal_ids, installation=installation)}


def main(argv: list[str] | None = None) -> int:
    """`python -m sandbox.azure.fleet_access WORLD [--principal ID]... [--installation NAME]`: rewrite a world file
    so the app's principal holds exactly what infra/fleet-access grants (the shipped demo world is made so)."""
    parser = argparse.ArgumentParser(prog="python -m sandbox.azure.fleet_access", description=main.__doc__)
    parser.add_argument("world", type=Path)
    parser.add_argument("--principal", action="append", help="default: the world's simulator.systemPrincipalId")
    parser.add_argument("--installation", default=DEFAULT_INSTALLATION, help="installationName (custom role names)")
    arguments = parser.parse_args(argv)
    world = json.loads(arguments.world.read_text(encoding="utf-8"))
    principals = arguments.principal or [
        (world.get("simulator") or {}).get("systemPrincipalId") or DEFAULT_SYSTEM_PRINCIPAL_ID
    ]
    updated = regrant(world, principals, installation=arguments.installation)
    arguments.world.write_text(json.dumps(updated, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
