"""Loading a Python v2 function app: the Functions Python worker's own indexing, then the host's own checks.

The app directory goes first on `sys.path` and the worker's code (`sandbox.host.worker`, from the pinned
`azure-functions-runtime` wheel) imports the script (`function_app.py`, or `PYTHON_SCRIPT_FILE_NAME`), finds its
single `FunctionRegister` (a `func.FunctionApp` or `df.DFApp`), calls `get_functions()` and validates every function
as the worker does at start-up on Azure, building the metadata it sends the Functions host. Anything the worker
refuses stops the local host at start with the worker's message (`AppLoadError`, the worker's exception as its
cause). The host then reads each function's bindings from that metadata (`raw_bindings`, what Azure's host sees)
and checks its HTTP routes as the Functions host does (reserved prefixes, conflicts, route constraints).

`get_functions()` can run only once per app object (with blueprints a second call raises, docs/durable-protocol.md §2.5
finding 3), so the index is cached per app directory for the life of the process.
"""

from __future__ import annotations

import importlib
import json
import logging
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

from sandbox.host import worker
from sandbox.host.routes import RouteTemplate, RouteTemplateError

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
    """One indexed function: its name and bindings as the worker reports them to the host, and the worker's view."""

    name: str
    trigger: dict[str, Any]
    bindings: list[dict[str, Any]]  # the worker's raw_bindings: what Azure's Functions host reads
    worker_info: Any  # the worker's functions.FunctionInfo: the function, its input/output/return types
    metadata: worker.RpcFunctionMetadata

    @property
    def user_function(self) -> Callable[..., Any]:
        function: Callable[..., Any] = self.worker_info.func
        return function

    @property
    def is_async(self) -> bool:
        return bool(self.worker_info.is_async)

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
    try:
        script = directory / worker.script_file_name()
    except worker.WorkerUnavailableError as error:
        raise AppLoadError(str(error)) from error
    except Exception as error:  # the worker's InvalidFileNameError
        raise AppLoadError(f"{type(error).__name__}: {error}") from error
    if not script.is_file():
        raise AppLoadError(f"{directory} has no {script.name}")
    module, indexed = _index(script)
    registry = FunctionRegistry()
    for entry in indexed:
        registry.add(_describe(entry))
    check_http_functions(registry)
    loaded = LoadedApp(directory, module, registry)
    _LOADED[directory] = loaded
    return loaded


def _index(script: Path) -> tuple[ModuleType, list[worker.IndexedFunction]]:
    """Let the worker's code import and index the script, as a fresh module even if one of that name is imported.

    The worker imports the script by module name with the app directory first on `sys.path`. A test process may
    already hold a `function_app` module (a test imported the app); indexing that same app object again would raise
    ("does not have a unique function name"), so the name is lent to the worker for the import and given back after.
    """
    name = script.stem
    directory = str(script.parent)
    previous = sys.modules.pop(name, None)
    sys.path.insert(0, directory)
    importlib.invalidate_caches()
    try:
        indexed = worker.index(script)
        module = sys.modules[name]
    except BaseException as error:
        sys.modules.pop(name, None)
        if isinstance(error, Exception):
            raise AppLoadError(f"{type(error).__name__}: {error}") from error
        raise
    finally:
        if sys.path.count(directory) > 1:
            sys.path.remove(directory)  # it was on the path already: leave the order as it was
        if previous is not None:
            sys.modules[name] = previous
    return module, indexed


def _describe(entry: worker.IndexedFunction) -> FunctionInfo:
    name = str(entry.metadata.name)
    bindings: list[dict[str, Any]] = [json.loads(raw) for raw in entry.metadata.raw_bindings or []]
    trigger = next((b for b in bindings if str(b.get("type", "")).endswith("Trigger")), None)
    if trigger is None:
        raise AppLoadError(f"function {name} has no trigger")
    for binding in bindings:
        direction = str(binding.get("direction", "")).upper()
        if binding is trigger or binding.get("type") in (DURABLE_CLIENT, "http"):
            continue
        kind = "output" if direction == "OUT" else "input"
        log.warning("Function %s: %s %s bindings are not supported locally", name, binding.get("type"), kind)
    return FunctionInfo(name=name, trigger=trigger, bindings=bindings, worker_info=entry.info, metadata=entry.metadata)


# --- the Functions host's own checks of HTTP functions (ScriptHost.ValidateFunction, ASP.NET routing) ---------------


def http_route(info: FunctionInfo) -> str:
    """The route template: the trigger's `route`, else the function name (as the Functions host defaults it)."""
    return str(info.trigger.get("route") or info.name)


def http_methods(info: FunctionInfo) -> frozenset[str] | None:
    """The trigger's methods, upper case; None when it names none (every method)."""
    methods = info.trigger.get("methods")
    return frozenset(str(m).upper() for m in methods) if methods else None


def check_http_functions(registry: FunctionRegistry) -> None:
    """Refuse what the Functions host refuses at start-up for HTTP functions, with its messages.

    A route under the host's reserved `admin` or `runtime` space (whatever the route prefix), the same route as an
    earlier function with overlapping methods, and a route template ASP.NET cannot parse (an unknown constraint).
    """
    seen: list[tuple[FunctionInfo, str, frozenset[str] | None]] = []
    for info in registry.http:
        route = http_route(info).strip("/").lower()
        if route.startswith(("admin", "runtime")):
            raise AppLoadError(
                f"The function '{info.name}' is in error: The specified route conflicts with one or more built in "
                "routes."
            )
        methods = http_methods(info)
        for other, other_route, other_methods in seen:
            overlap = methods is None or other_methods is None or bool(methods & other_methods)
            if route == other_route and overlap:
                raise AppLoadError(
                    f"The function '{info.name}' is in error: The route specified conflicts with the route defined by "
                    f"function '{other.name}'."
                )
        try:
            RouteTemplate(http_route(info))
        except RouteTemplateError as error:
            raise AppLoadError(f"The function '{info.name}' is in error: {error}") from error
        seen.append((info, route, methods))
