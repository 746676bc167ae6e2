"""Loading a Python v2 function app the way the Functions Python worker does.

The app directory goes on `sys.path`, `function_app.py` is imported once as the module `function_app`, the single
`FunctionRegister` (a `func.FunctionApp` or `df.DFApp`) it defines is found, and `get_functions()` is called
exactly once: with blueprints a second call raises (durable-protocol.md §2.5 finding 3), so the index is cached
per app directory for the life of the process.
"""

from __future__ import annotations

import importlib.util
import inspect
import json
import logging
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import azure.functions as func

log = logging.getLogger("sandbox.host")

HTTP_TRIGGER = "httpTrigger"
EVENT_GRID_TRIGGER = "eventGridTrigger"
ORCHESTRATION_TRIGGER = "orchestrationTrigger"
ACTIVITY_TRIGGER = "activityTrigger"
ENTITY_TRIGGER = "entityTrigger"
DURABLE_CLIENT = "durableClient"


class AppLoadError(RuntimeError):
    pass


@dataclass(frozen=True)
class FunctionInfo:
    """One indexed function: its name, trigger and bindings as the host reads them from the worker's index."""

    name: str
    trigger: dict[str, Any]
    bindings: list[dict[str, Any]]
    user_function: Callable[..., Any]
    is_async: bool
    parameter_names: frozenset[str]

    @property
    def trigger_type(self) -> str:
        return str(self.trigger["type"])

    @property
    def trigger_parameter(self) -> str:
        return str(self.trigger["name"])

    @property
    def durable_name(self) -> str:
        """The orchestrator/activity name DF uses: the binding's `orchestration`/`activity`, else the function name."""
        return str(self.trigger.get("orchestration") or self.trigger.get("activity") or self.name)

    def input_bindings(self, binding_type: str) -> list[dict[str, Any]]:
        return [
            b for b in self.bindings if b.get("type") == binding_type and str(b.get("direction", "")).upper() == "IN"
        ]


@dataclass
class FunctionRegistry:
    functions: dict[str, FunctionInfo] = field(default_factory=dict)  # keyed by case-folded function name
    orchestrators: dict[str, FunctionInfo] = field(default_factory=dict)  # keyed by case-folded durable name
    activities: dict[str, FunctionInfo] = field(default_factory=dict)
    http: list[FunctionInfo] = field(default_factory=list)

    def add(self, info: FunctionInfo) -> None:
        self.functions[info.name.casefold()] = info
        if info.trigger_type == ORCHESTRATION_TRIGGER:
            self.orchestrators[info.durable_name.casefold()] = info
        elif info.trigger_type == ACTIVITY_TRIGGER:
            self.activities[info.durable_name.casefold()] = info
        elif info.trigger_type == HTTP_TRIGGER:
            self.http.append(info)
        elif info.trigger_type not in (EVENT_GRID_TRIGGER, ENTITY_TRIGGER):
            log.warning("Function %s has a %s trigger, which the local host does not run", info.name, info.trigger_type)

    def get(self, name: str) -> FunctionInfo | None:
        return self.functions.get(name.casefold())

    def orchestrator_names(self) -> dict[str, str]:
        return {key: info.durable_name for key, info in self.orchestrators.items()}

    def activity_names(self) -> dict[str, str]:
        return {key: info.durable_name for key, info in self.activities.items()}


@dataclass(frozen=True)
class LoadedApp:
    directory: Path
    module: ModuleType
    registry: FunctionRegistry


_LOADED: dict[Path, LoadedApp] = {}


def load_app(app_dir: Path) -> LoadedApp:
    """Import and index the app in `app_dir` (once per process; later calls return the same index)."""
    directory = app_dir.resolve()
    if directory in _LOADED:
        return _LOADED[directory]
    script = directory / "function_app.py"
    if not script.is_file():
        raise AppLoadError(f"{directory} has no function_app.py")
    if str(directory) not in sys.path:
        sys.path.insert(0, str(directory))
    module = _import_function_app(script)
    app = _find_function_register(module)
    registry = FunctionRegistry()
    for function in app.get_functions():
        registry.add(_describe(function))
    loaded = LoadedApp(directory, module, registry)
    _LOADED[directory] = loaded
    return loaded


def _import_function_app(script: Path) -> ModuleType:
    # Always a fresh module object, even when this very file was imported before (a test module indexing the app):
    # indexing the same app object twice raises ("does not have a unique function name"), a new one indexes anew.
    previous = sys.modules.get("function_app")
    spec = importlib.util.spec_from_file_location("function_app", script)
    if spec is None or spec.loader is None:
        raise AppLoadError(f"cannot import {script}")
    module = importlib.util.module_from_spec(spec)
    sys.modules["function_app"] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules["function_app"]
        if previous is not None:
            sys.modules["function_app"] = previous
        raise
    if previous is not None:
        # A function_app module is already imported in this process (tests): keep the name pointing at it so its
        # importers are undisturbed; the hosted module is held by the host.
        sys.modules["function_app"] = previous
    return module


def _find_function_register(module: ModuleType) -> func.FunctionRegister:
    apps = [value for value in vars(module).values() if isinstance(value, func.FunctionRegister)]
    if len(apps) != 1:
        raise AppLoadError(f"function_app.py must define exactly one FunctionApp/DFApp, found {len(apps)}")
    return apps[0]


def _describe(function: func.Function) -> FunctionInfo:
    document = json.loads(function.get_function_json())
    bindings: list[dict[str, Any]] = document.get("bindings", [])
    trigger = next((b for b in bindings if str(b.get("type", "")).endswith("Trigger")), None)
    name = function.get_function_name() or function.get_user_function().__name__
    if trigger is None:
        raise AppLoadError(f"function {name} has no trigger")
    user_function = function.get_user_function()
    try:
        parameters = frozenset(inspect.signature(user_function).parameters)
    except (TypeError, ValueError):
        parameters = frozenset()
    for binding in bindings:
        direction = str(binding.get("direction", "")).upper()
        if binding is trigger or binding.get("type") in (DURABLE_CLIENT, "http") or direction == "OUT":
            continue
        log.warning("Function %s: %s input bindings are not supported locally", name, binding.get("type"))
    return FunctionInfo(
        name=name,
        trigger=trigger,
        bindings=bindings,
        user_function=user_function,
        is_async=inspect.iscoroutinefunction(user_function),
        parameter_names=parameters,
    )
