"""The contract between infra/ (Bicep) and the app, checked offline.

No Bicep CLI and no Azure exist where these tests run, so nothing here compiles or deploys: every .bicep file is
parsed with pycep-parser and its structure is checked against what the code needs. The code is the source of
truth: cmk/settings.py (every app setting, with its default) and cmk/permissions.py (every ARM action).
"""

from __future__ import annotations

import ast
import json
import re
from functools import cache
from pathlib import Path
from typing import Any, cast

import pytest
from pycep import BicepParser

from cmk.key_access import CRYPTO_SERVICE_ENCRYPTION_USER
from cmk.permissions import REQUIRED_ARM_ACTIONS, ROLE_ASSIGNMENT_WRITE_SCOPE
from cmk.settings import PLATFORM_SETTINGS, SETTINGS
from sandbox.host import easy_auth

ROOT = Path(__file__).resolve().parents[2]
INFRA = ROOT / "infra"
BICEP_FILES = sorted(INFRA.rglob("*.bicep"))
MAIN = INFRA / "main.bicep"
API = INFRA / "app" / "api.bicep"
ROLES = INFRA / "fleet-access" / "roles.bicep"
FLEET_ACCESS_ENTRY_POINTS = (INFRA / "fleet-access" / "main.bicep", INFRA / "fleet-access" / "subscriptions.bicep")
SYSTEM_TOPIC = INFRA / "fleet-events" / "modules" / "system-topic.bicep"
FLEET_EVENTS = INFRA / "fleet-events" / "main.bicep"

# Where the function app's settings are assembled: (file, variable). main.bicep's appSettings and
# durableTaskSchedulerSettings go to app/api.bicep, which adds baseAppSettings (the platform's).
APP_SETTING_VARIABLES = ((MAIN, "appSettings"), (MAIN, "durableTaskSchedulerSettings"), (API, "baseAppSettings"))

# Settings the code reads that infra deliberately does NOT set, each with the reason. Keep it short.
EXCLUDED_SETTINGS: dict[str, str] = {
    # Empty: the ARM endpoint of AZURE_CLOUD. Only the local simulator sets it; in Azure the cloud's own is right.
    "ARM_ENDPOINT": "keeps its default (the endpoint of AZURE_CLOUD) in Azure",
    # The platform's own setting, read so ARM pacing divides its budget by the worker processes; the plan's default
    # (one Python worker process) is what the deployment runs.
    "FUNCTIONS_WORKER_PROCESS_COUNT": "the Functions platform's default (1) in Azure",
}

# Settings whose value comes from the deployment itself rather than from a parameter with a default.
DERIVED_SETTINGS: dict[str, str] = {
    "AZURE_CLIENT_ID": "appIdentity",  # the user-assigned identity's client id (DefaultAzureCredential)
    "CMK_APP_PRINCIPAL_ID": "appIdentity",  # its principal id (the Event Grid loop guard)
    "AZURE_CLOUD": "environment",  # environment().name: the cloud the deployment runs in
    "CMK_AUTH_MODE": "authClientId",  # entra when App Service Authentication is configured (the default)
}

# The values of the host.json overrides infra sets with the Durable Task Scheduler switch (the host reads
# AzureFunctionsJobHost__<path> over host.json); their names are in PLATFORM_SETTINGS.
HOST_JSON_OVERRIDES: dict[str, str] = {
    "AzureFunctionsJobHost__extensions__durableTask__storageProvider__type": "azureManaged",
    "AzureFunctionsJobHost__extensions__durableTask__storageProvider__connectionStringName": (
        "DURABLE_TASK_SCHEDULER_CONNECTION_STRING"
    ),
}

# Settings of local.settings.json.example that exist only locally: the worker runtime (Flex takes it from
# functionAppConfig) and Azurite's development storage in place of the identity-based AzureWebJobsStorage__*.
LOCAL_ONLY_SETTINGS = {"FUNCTIONS_WORKER_RUNTIME", "AzureWebJobsStorage"}
# Platform settings with no local value: Azure-only identity storage and telemetry, and the DTS backend.
NOT_LOCAL_PLATFORM_SETTINGS = {
    "AzureWebJobsStorage__accountName",
    "AzureWebJobsStorage__credential",
    "AzureWebJobsStorage__clientId",
    "APPLICATIONINSIGHTS_CONNECTION_STRING",
    "APPLICATIONINSIGHTS_AUTHENTICATION_STRING",
    "DURABLE_TASK_SCHEDULER_CONNECTION_STRING",
    *HOST_JSON_OVERRIDES,
}

# Tools that must never reach the deployed app (remote build installs requirements.txt as it is).
DEV_ONLY_PACKAGES = {
    "pytest",
    "pytest-timeout",
    "pytest-asyncio",
    "pytest-mock",
    "pytest-cov",
    "coverage",
    "ruff",
    "mypy",
    "pyright",
    "black",
    "flake8",
    "isort",
    "pycep-parser",
    "checkov",
    "azure-functions-worker",  # the platform provides it; every template warns against listing it
}

SECRET_PATTERNS = ("listKeys(", "listkeys(", "listConnectionStrings(", "AccountKey=", "SharedAccessKey", "@secure(")

_PARSER = BicepParser()


@cache
def bicep(path: Path) -> dict[str, Any]:
    return cast(dict[str, Any], _PARSER.parse(file_path=path))


def _rel(path: Path) -> str:
    return str(path.relative_to(ROOT))


def _unquote(key: str) -> str:
    return key[1:-1] if len(key) >= 2 and key[0] == key[-1] == "'" else key


def _leaves(expression: Any) -> list[Any]:
    """Every scalar inside a pycep expression (identifiers and literals alike: pycep does not tell them apart),
    except member names: in `appIdentity.outputs.principalId` only `appIdentity` is a reference."""
    if isinstance(expression, dict):
        operator = expression.get("operator")
        if isinstance(operator, dict) and operator.get("type") == "property_accessor":
            return _leaves(operator["operands"]["operand_1"])
        return [leaf for value in expression.values() for leaf in _leaves(value)]
    if isinstance(expression, list):
        return [leaf for value in expression for leaf in _leaves(value)]
    return [expression]


def _names(expression: Any) -> set[str]:
    return {leaf for leaf in _leaves(expression) if isinstance(leaf, str)}


def _loop_config(module: dict[str, Any]) -> tuple[str | None, dict[str, Any]]:
    """(array looped over, module body) for a module with or without a for loop."""
    config: dict[str, Any] = module["config"]
    if "loop_type" in config:
        array: str = config["loop_type"]["detail"]["array_name"]
        return array, config["config"]
    if "condition" in config and "config" in config:  # `= if (...) { ... }`
        return None, config["config"]
    return None, config


def _app_settings() -> dict[str, Any]:
    settings: dict[str, Any] = {}
    for path, variable in APP_SETTING_VARIABLES:
        value = bicep(path)["variables"][variable]["value"]
        assert isinstance(value, dict), f"{_rel(path)}: {variable} must be an object literal"
        for key, expression in value.items():
            name = _unquote(key)
            assert name not in settings, f"app setting {name} is set twice"
            settings[name] = expression
    return settings


def _render_default(parameter: str, declaration: dict[str, Any], expression: Any) -> str:
    """The app setting value infra produces from a parameter's default, for the expression shapes main.bicep uses."""
    default = declaration["default"]
    kind = declaration["type"]
    compact = json.dumps(default, separators=(",", ":"))
    if expression == parameter and kind == "string":
        assert isinstance(default, str)
        return default
    function = expression.get("function", {}) if isinstance(expression, dict) else {}
    if function.get("type") == "string" and function["parameters"]["value_to_convert"] == parameter:
        assert kind in ("array", "object"), f"string({parameter}) is for JSON settings"
        return compact
    operands = expression.get("operator", {}).get("operands", {}) if isinstance(expression, dict) else {}
    empty_check = {"function": {"type": "empty", "parameters": {"item_to_test": parameter}}}
    to_json = {"function": {"type": "string", "parameters": {"value_to_convert": parameter}}}
    if operands == {"condition": empty_check, "true_value": "", "false_value": to_json}:
        return "" if not default else compact
    raise AssertionError(f"app setting from {parameter}: unrecognised expression {expression!r}")


# ---------------------------------------------------------------------------------------------------------------
# Files and modules
# ---------------------------------------------------------------------------------------------------------------


def test_the_expected_bicep_files_exist() -> None:
    for path in (MAIN, API, ROLES, SYSTEM_TOPIC, FLEET_EVENTS, *FLEET_ACCESS_ENTRY_POINTS):
        assert path in BICEP_FILES, _rel(path)


@pytest.mark.parametrize("path", BICEP_FILES, ids=_rel)
def test_every_bicep_file_parses(path: Path) -> None:
    assert isinstance(bicep(path), dict)


@pytest.mark.parametrize("path", BICEP_FILES, ids=_rel)
def test_every_registry_module_is_version_pinned(path: Path) -> None:
    for name, module in bicep(path).get("modules", {}).items():
        if module["type"] != "local":
            detail = module["detail"]
            assert re.fullmatch(r"\d+\.\d+\.\d+", str(detail.get("tag"))), f"{_rel(path)}: {name} {detail['full']}"


def test_the_azd_stack_uses_verified_modules() -> None:
    registry = [module for module in bicep(MAIN)["modules"].values() if module["type"] != "local"]
    assert registry and all(module["detail"]["path"].startswith("avm/res/") for module in registry)


@pytest.mark.parametrize("path", BICEP_FILES, ids=_rel)
def test_every_local_module_and_import_exists(path: Path) -> None:
    parsed = bicep(path)
    for name, module in parsed.get("modules", {}).items():
        if module["type"] == "local":
            assert (path.parent / module["detail"]["path"]).is_file(), f"{_rel(path)}: module {name}"
    for name, imported in parsed.get("imports", {}).items():
        source = path.parent / imported["file_path"]
        assert source.is_file(), f"{_rel(path)}: import {name}"
        exported = bicep(source)["variables"][name]
        assert {"type": "export"} in exported["decorators"], f"{name} is not exported by {_rel(source)}"


def test_main_parameters_are_main_bicep_parameters() -> None:
    parameters = json.loads((INFRA / "main.parameters.json").read_text())["parameters"]
    assert set(parameters) <= set(bicep(MAIN)["parameters"])


# ---------------------------------------------------------------------------------------------------------------
# The app settings contract, both ways
# ---------------------------------------------------------------------------------------------------------------


def test_infra_sets_every_setting_the_code_reads_and_nothing_else() -> None:
    assert set(EXCLUDED_SETTINGS) <= set(SETTINGS) | set(PLATFORM_SETTINGS), "stale exclusion"
    assert set(HOST_JSON_OVERRIDES) <= set(PLATFORM_SETTINGS)
    expected = (set(SETTINGS) | set(PLATFORM_SETTINGS)) - set(EXCLUDED_SETTINGS)
    assert set(_app_settings()) == expected


def test_every_app_setting_variable_reaches_the_function_app() -> None:
    main_to_api = bicep(MAIN)["modules"]["api"]["config"]["params"]["appSettings"]
    assert {"appSettings", "durableTaskSchedulerSettings"} <= _names(main_to_api)
    api = bicep(API)
    assert {"appSettings", "baseAppSettings"} <= _names(api["variables"]["allAppSettings"]["value"])
    assert api["modules"]["functionApp"]["config"]["params"]["appSettingsKeyValuePairs"] == "allAppSettings"


def test_setting_defaults_in_bicep_equal_the_code_defaults() -> None:
    parameters: dict[str, Any] = bicep(MAIN)["parameters"]
    main_settings: dict[str, Any] = bicep(MAIN)["variables"]["appSettings"]["value"]
    checked = 0
    for key, expression in main_settings.items():
        name = _unquote(key)
        if name not in SETTINGS:
            continue
        used = sorted(_names(expression) & set(parameters))
        if name in DERIVED_SETTINGS:
            assert not used and DERIVED_SETTINGS[name] in _names(expression), name
            continue
        assert len(used) == 1, f"{name} must come from exactly one parameter, not {used}"
        rendered = _render_default(used[0], parameters[used[0]], expression)
        assert rendered == SETTINGS[name].default, f"{name}: Bicep default {rendered!r} != {SETTINGS[name].default!r}"
        checked += 1
    assert checked == len(SETTINGS) - len(EXCLUDED_SETTINGS) - len(DERIVED_SETTINGS)


def test_each_tunable_is_set_from_the_azd_environment_value_of_the_same_name() -> None:
    """`azd env set CMK_X ...` changes app setting CMK_X; unset, azd omits the parameter and the default applies."""
    parameters = json.loads((INFRA / "main.parameters.json").read_text())["parameters"]
    declared: dict[str, Any] = bicep(MAIN)["parameters"]
    for key, expression in bicep(MAIN)["variables"]["appSettings"]["value"].items():
        name = _unquote(key)
        for parameter in _names(expression) & set(declared):
            assert parameters[parameter]["value"] == "${" + name + "}", parameter


def test_the_durable_task_hub_is_named_by_infra_and_host_json() -> None:
    host = json.loads((ROOT / "host.json").read_text())
    assert host["extensions"]["durableTask"]["hubName"] == "%TASKHUB_NAME%"
    assert "TASKHUB_NAME" in _app_settings()


def test_the_durable_task_scheduler_switch_is_identity_based_and_overrides_host_json() -> None:
    switch: dict[str, Any] = bicep(MAIN)["variables"]["durableTaskSchedulerSettings"]["value"]
    connection = switch["DURABLE_TASK_SCHEDULER_CONNECTION_STRING"]
    assert re.fullmatch(r"Endpoint=\$\{.+\};Authentication=ManagedIdentity;ClientID=\$\{appIdentity\..+\}", connection)
    host = json.loads((ROOT / "host.json").read_text())
    for name, value in HOST_JSON_OVERRIDES.items():
        assert switch[name] == value
        section = name.removeprefix("AzureFunctionsJobHost__").split("__")[:2]  # extensions, durableTask
        assert section[1] in host[section[0]], f"{name} overrides a host.json section that does not exist"
    # The override names the connection setting that the same switch sets.
    assert HOST_JSON_OVERRIDES[next(n for n in HOST_JSON_OVERRIDES if n.endswith("connectionStringName"))] in switch


# ---------------------------------------------------------------------------------------------------------------
# Flex Consumption, identity, no secrets
# ---------------------------------------------------------------------------------------------------------------


def test_the_app_runs_python_311_on_flex_consumption_with_its_user_assigned_identity() -> None:
    plan = bicep(MAIN)["modules"]["appServicePlan"]["config"]["params"]
    assert plan["sku"] == {"name": "FC1", "tier": "FlexConsumption"}
    site = bicep(API)["modules"]["functionApp"]["config"]["params"]
    assert site["functionAppConfig"]["runtime"] == {"name": "python", "version": "3.11"}
    assert site["functionAppConfig"]["deployment"]["storage"]["authentication"]["type"] == "UserAssignedIdentity"
    assert site["managedIdentities"] == {"userAssignedResourceIds": ["identityId"]}
    base = bicep(API)["variables"]["baseAppSettings"]["value"]
    assert base["AzureWebJobsStorage__credential"] == "managedidentity"
    assert base["AzureWebJobsStorage__clientId"] == "identityClientId"
    assert base["APPLICATIONINSIGHTS_AUTHENTICATION_STRING"] == "ClientId=${identityClientId};Authorization=AAD"
    for path in BICEP_FILES:
        text = re.sub(r"//.*$", "", path.read_text(), flags=re.MULTILINE)  # code, not comments
        for flex_misfit in ("FUNCTIONS_WORKER_RUNTIME", "linuxFxVersion", "FUNCTIONS_EXTENSION_VERSION"):
            assert flex_misfit not in text, f"{_rel(path)}: {flex_misfit} does not belong on Flex Consumption"


def test_app_service_authentication_excludes_what_the_local_host_excludes() -> None:
    settings = bicep(API)["resources"]["authSettings"]["config"]["config"]["properties"]
    excluded = [_unquote(path) for path in settings["globalValidation"]["excludedPaths"]]
    assert excluded == list(easy_auth.EXCLUDED_PATHS)
    assert settings["globalValidation"]["unauthenticatedClientAction"] == "Return401"


@pytest.mark.parametrize("path", [*BICEP_FILES, INFRA / "main.parameters.json"], ids=_rel)
def test_no_keys_or_key_based_connection_strings(path: Path) -> None:
    text = path.read_text()
    for pattern in SECRET_PATTERNS:
        assert pattern.lower() not in text.lower(), f"{_rel(path)}: {pattern}"


def test_connection_settings_are_identity_based() -> None:
    for name, expression in _app_settings().items():
        if "CONNECTION_STRING" in name and name != "APPLICATIONINSIGHTS_CONNECTION_STRING":
            assert "Authentication=ManagedIdentity" in str(expression), name
    # App Insights' connection string only names where telemetry goes: ingestion needs Entra ID (local auth off).
    assert "APPLICATIONINSIGHTS_AUTHENTICATION_STRING" in _app_settings()


@pytest.mark.parametrize("path", BICEP_FILES, ids=_rel)
def test_storage_has_no_shared_keys_and_app_insights_no_local_auth(path: Path) -> None:
    for name, module in bicep(path).get("modules", {}).items():
        module_path = module["detail"]["path"]
        params = _loop_config(module)[1].get("params", {})
        if module_path == "avm/res/storage/storage-account":
            assert params.get("allowSharedKeyAccess") is False, f"{_rel(path)}: {name}"
        if module_path == "avm/res/insights/component":
            assert params.get("disableLocalAuth") is True, f"{_rel(path)}: {name}"
    for name, resource in bicep(path).get("resources", {}).items():
        if resource["existing"]:
            continue
        properties = resource["config"].get("properties", {})
        if resource["type"] == "Microsoft.Storage/storageAccounts":
            assert properties.get("allowSharedKeyAccess") is False, f"{_rel(path)}: {name}"
        if resource["type"] == "Microsoft.Insights/components":
            assert properties.get("disableLocalAuth") is True, f"{_rel(path)}: {name}"


@pytest.mark.parametrize("path", BICEP_FILES, ids=_rel)
def test_role_assignments_are_deterministic_and_explained(path: Path) -> None:
    for name, resource in bicep(path).get("resources", {}).items():
        if resource["type"] == "Microsoft.Authorization/roleAssignments":
            config = _loop_config(resource)[1]
            assert config["name"]["function"]["type"] == "guid", f"{_rel(path)}: {name}"
            assert config["properties"].get("description"), f"{_rel(path)}: {name} has no description"
            assert config["properties"].get("principalType"), f"{_rel(path)}: {name} has no principalType"


# ---------------------------------------------------------------------------------------------------------------
# The fleet's custom roles
# ---------------------------------------------------------------------------------------------------------------


def _role_actions() -> tuple[list[str], list[str]]:
    variables = bicep(ROLES)["variables"]
    return variables["cmkOperatorActions"]["value"], variables["keyVaultRoleAssignerActions"]["value"]


def test_the_custom_roles_grant_exactly_the_actions_the_code_performs() -> None:
    operator, assigner = _role_actions()
    assert len(set(operator)) == len(operator) and len(set(assigner)) == len(assigner)
    assert not set(operator) & set(assigner)
    assert set(operator) | set(assigner) == set(REQUIRED_ARM_ACTIONS)
    assert not any("*" in action for action in operator + assigner)


def test_role_assignment_write_is_only_in_the_key_vault_role() -> None:
    operator, assigner = _role_actions()
    assert "Microsoft.Authorization/roleAssignments/write" in assigner
    assert not [action for action in operator if action.startswith("Microsoft.Authorization/")]
    assert all(action.startswith("Microsoft.Authorization/roleAssignments/") for action in assigner)


@pytest.mark.parametrize("path", FLEET_ACCESS_ENTRY_POINTS, ids=_rel)
def test_role_definitions_use_the_shared_action_lists(path: Path) -> None:
    parsed = bicep(path)
    assert {"cmkOperatorActions", "keyVaultRoleAssignerActions", "cmkOperationStatusActions"} <= set(parsed["imports"])
    used = []
    for resource in parsed["resources"].values():
        if resource["type"] == "Microsoft.Authorization/roleDefinitions":
            (permissions,) = resource["config"]["properties"]["permissions"]
            assert set(permissions) <= {"actions", "notActions"}, "no data actions"
            used.append(permissions["actions"])
    assert sorted(used) == ["cmkOperationStatusActions", "cmkOperatorActions", "keyVaultRoleAssignerActions"]


@pytest.mark.parametrize("path", FLEET_ACCESS_ENTRY_POINTS, ids=_rel)
def test_the_key_vault_role_is_assigned_only_on_key_vaults_with_its_condition(path: Path) -> None:
    parsed = bicep(path)
    for name, resource in parsed["resources"].items():
        if resource["type"] == "Microsoft.Authorization/roleAssignments":
            assert "keyVaultRoleAssignerRole" not in _names(resource["config"]), f"{name}: not above key vaults"
    vault_scoped = 0
    for name, module in parsed["modules"].items():
        array, config = _loop_config(module)
        if "keyVaultRoleAssignerRole" in _names(config["params"].get("roleDefinitionGuid")):
            assert array in ("keyVaultIds", "keyVaultResourceGroupIds"), name
            assert config["params"]["condition"] == "keyVaultRoleAssignmentCondition", name
            vault_scoped += 1
    assert vault_scoped == 2
    module = bicep(INFRA / "fleet-access" / "modules" / "key-vault-role-assignment.bicep")
    (vault,) = (r for r in module["resources"].values() if r["existing"])
    assert vault["type"] == ROLE_ASSIGNMENT_WRITE_SCOPE
    assert module["resources"]["assignment"]["config"]["scope"] == "vault"


def test_the_key_vault_role_condition_allows_only_the_key_role_for_service_principals() -> None:
    variables = bicep(ROLES)["variables"]
    assert variables["keyVaultCryptoServiceEncryptionUserRoleId"]["value"] == CRYPTO_SERVICE_ENCRYPTION_USER
    condition: str = variables["keyVaultRoleAssignmentCondition"]["value"]
    assert "ActionMatches{\\'Microsoft.Authorization/roleAssignments/write\\'}" in condition
    assert f"GuidEquals {{{CRYPTO_SERVICE_ENCRYPTION_USER}}}" in condition
    principal_type = "roleAssignments:PrincipalType] ForAnyOfAnyValues:StringEqualsIgnoreCase {\\'ServicePrincipal\\'}"
    assert principal_type in condition


# ---------------------------------------------------------------------------------------------------------------
# Event Grid enrolment
# ---------------------------------------------------------------------------------------------------------------


def test_the_event_subscription_sends_cosmos_account_writes_to_the_enrolment_function() -> None:
    parsed = bicep(SYSTEM_TOPIC)
    topic = parsed["resources"]["newTopic"]["config"]["config"]
    assert topic["properties"]["topicType"] == "Microsoft.Resources.Subscriptions"
    properties = parsed["resources"]["enrolment"]["config"]["properties"]
    assert properties["destination"]["endpointType"] == "AzureFunction"
    event_filter = properties["filter"]
    assert event_filter["includedEventTypes"] == ["Microsoft.Resources.ResourceWriteSuccess"]
    assert {
        "operatorType": "StringIn",
        "key": "data.operationName",
        "values": ["Microsoft.DocumentDB/databaseAccounts/write"],
    } in event_filter["advancedFilters"]
    assert bicep(FLEET_EVENTS)["parameters"]["functionName"]["default"] == "enrol_from_event_grid"


def _decorator_call(decorator: ast.expr) -> tuple[str, list[Any]] | None:
    """(name, constant positional and keyword arguments) of a `@bp.name(...)` decorator."""
    if not isinstance(decorator, ast.Call) or not isinstance(decorator.func, ast.Attribute):
        return None
    arguments = [*decorator.args, *(keyword.value for keyword in decorator.keywords)]
    return decorator.func.attr, [a.value for a in arguments if isinstance(a, ast.Constant)]


def _functions_named(name: str) -> list[tuple[str, set[str]]]:
    """(module, decorator names) of every function in triggers/ that registers as the Functions function `name`."""
    found = []
    for path in sorted((ROOT / "triggers").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                continue
            calls = [call for call in map(_decorator_call, node.decorator_list) if call is not None]
            if ("function_name", [name]) in calls:
                found.append((path.stem, {decorator for decorator, _ in calls}))
    return found


def test_the_event_subscription_targets_an_event_grid_trigger_the_app_registers() -> None:
    function_name = bicep(FLEET_EVENTS)["parameters"]["functionName"]["default"]
    found = _functions_named(function_name)
    assert len(found) == 1, f"{len(found)} functions in triggers/ are named {function_name}, the subscription's target"
    ((module, decorators),) = found
    assert "event_grid_trigger" in decorators, f"triggers/{module}.py: {function_name} is not an Event Grid trigger"
    # ...and function_app.py registers that module's blueprint (an unregistered blueprint is not indexed).
    app = ast.parse((ROOT / "function_app.py").read_text())
    imported = {
        alias.asname or alias.name
        for node in ast.walk(app)
        if isinstance(node, ast.ImportFrom) and node.module == "triggers"
        for alias in node.names
    }
    assert module in imported and module in _registered_modules(app), f"function_app.py does not register {module}"


def _registered_modules(app: ast.Module) -> set[str]:
    """Names whose blueprints function_app.py registers: `app.register_functions(m.bp)`, directly or in a loop
    over the modules (`for module in (a, b): app.register_functions(module.bp)`)."""

    def registers(node: ast.AST) -> list[ast.Call]:
        return [
            call
            for call in ast.walk(node)
            if isinstance(call, ast.Call)
            and isinstance(call.func, ast.Attribute)
            and call.func.attr == "register_functions"
        ]

    def names(node: ast.AST) -> set[str]:
        return {name.id for name in ast.walk(node) if isinstance(name, ast.Name)}

    registered = {name for call in registers(app) for argument in call.args for name in names(argument)}
    for loop in (node for node in ast.walk(app) if isinstance(node, ast.For) and registers(node)):
        registered |= names(loop.iter)
    return registered


# ---------------------------------------------------------------------------------------------------------------
# Packaging and local settings
# ---------------------------------------------------------------------------------------------------------------


def test_azure_yaml_deploys_the_repo_root_as_a_python_function_app() -> None:
    text = (ROOT / "azure.yaml").read_text()
    service = re.search(r"^services:\n  api:\n((?:    .+\n)+)", text, re.MULTILINE)
    assert service is not None
    fields = dict(line.strip().split(": ", 1) for line in service.group(1).splitlines())
    assert fields == {"project": ".", "language": "python", "host": "function"}
    assert "azd-service-name': serviceName" in API.read_text()


def test_funcignore_keeps_everything_but_the_app_out_of_the_package() -> None:
    lines = {
        line.strip().rstrip("/")
        for line in (ROOT / ".funcignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    }
    must_exclude = {"tests", "sandbox", "infra", "bench", "docs", "cmk_admin", ".venv", ".azure", ".state"}
    must_exclude |= {"requirements-dev.txt", "pyproject.toml", "Makefile", "local.settings.json"}
    must_exclude |= {".pytest_cache", ".mypy_cache", ".ruff_cache"}
    assert must_exclude <= lines
    app = {"function_app.py", "host.json", "requirements.txt", "cmk", "activities", "orchestrators", "triggers"}
    assert not app & lines
    assert not [line for line in lines if line in ("*.py", "*.json", "*")]


def test_requirements_hold_runtime_packages_only() -> None:
    names = set()
    for line in (ROOT / "requirements.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            match = re.match(r"[A-Za-z0-9_.\-]+", line)
            assert match is not None, line
            names.add(match.group(0).lower().replace("_", "-"))
    assert names and not names & DEV_ONLY_PACKAGES


def test_local_settings_example_names_every_setting_with_a_local_value() -> None:
    example = json.loads((ROOT / "local.settings.json.example").read_text())
    assert example["IsEncrypted"] is False
    values: dict[str, str] = example["Values"]
    assert all(isinstance(value, str) for value in values.values())
    assert set(SETTINGS) | {"TASKHUB_NAME"} <= set(values)
    assert set(PLATFORM_SETTINGS) - NOT_LOCAL_PLATFORM_SETTINGS <= set(values)
    assert set(values) <= set(SETTINGS) | set(PLATFORM_SETTINGS) | LOCAL_ONLY_SETTINGS
    assert not [value for value in values.values() if "AccountKey=" in value or "SharedAccessKey" in value]
