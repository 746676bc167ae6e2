"""Host configuration: `host.json` (the parts the host honours) and app settings (`local.settings.json`)."""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger("sandbox.host")

DEFAULT_HUB_NAME = "TestHubName"  # what Core Tools uses locally when host.json names no hub
DEFAULT_ROUTE_PREFIX = "api"
DEFAULT_MAX_ORCHESTRATION_ACTIONS = 100_000
MAX_WORKER_PROCESSES = 10  # Azure's limit for FUNCTIONS_WORKER_PROCESS_COUNT


def _default_concurrency() -> int:
    # DurableTaskOptions: MaxConcurrentActivityFunctions / MaxConcurrentOrchestratorFunctions = 10 x processors.
    return 10 * (os.cpu_count() or 1)


def default_worker_threads() -> int:
    """The Python worker's thread pool for sync functions (PYTHON_THREADPOOL_THREAD_COUNT, else Python's default)."""
    configured = os.environ.get("PYTHON_THREADPOOL_THREAD_COUNT", "").strip()
    if configured.isdigit() and int(configured) > 0:
        return int(configured)
    return min(32, (os.cpu_count() or 1) + 4)


def worker_process_count() -> int:
    """FUNCTIONS_WORKER_PROCESS_COUNT: language worker processes (Azure: default 1, at most 10). At 1 the local host
    runs the app in its own process; above 1 in that many worker processes (sandbox.host.worker_processes)."""
    configured = os.environ.get("FUNCTIONS_WORKER_PROCESS_COUNT", "").strip()
    if configured.isdigit() and int(configured) > 0:
        return min(int(configured), MAX_WORKER_PROCESSES)
    return 1


@dataclass(frozen=True)
class HostConfig:
    hub_name: str = DEFAULT_HUB_NAME
    route_prefix: str = DEFAULT_ROUTE_PREFIX
    max_concurrent_activities: int = 0  # 0: the extension's default for this machine
    max_concurrent_orchestrations: int = 0
    max_orchestration_actions: int = DEFAULT_MAX_ORCHESTRATION_ACTIONS

    @property
    def activity_concurrency(self) -> int:
        return self.max_concurrent_activities or _default_concurrency()

    @property
    def orchestration_concurrency(self) -> int:
        return self.max_concurrent_orchestrations or _default_concurrency()

    @classmethod
    def load(cls, app_dir: Path) -> HostConfig:
        path = app_dir / "host.json"
        document: dict[str, Any] = {}
        if path.exists():
            document = json.loads(path.read_text(encoding="utf-8"))
        else:
            log.warning("%s has no host.json; using defaults", app_dir)
        _apply_environment_overrides(document)
        extensions: dict[str, Any] = document.get("extensions") or {}
        durable: dict[str, Any] = _case_insensitive(extensions.get("durableTask") or {})
        http: dict[str, Any] = _case_insensitive(extensions.get("http") or {})
        route_prefix = http.get("routeprefix", DEFAULT_ROUTE_PREFIX)
        return cls(
            hub_name=_expand(str(durable.get("hubname") or DEFAULT_HUB_NAME)),
            route_prefix=str(route_prefix).strip("/"),
            max_concurrent_activities=int(durable.get("maxconcurrentactivityfunctions") or 0),
            max_concurrent_orchestrations=int(durable.get("maxconcurrentorchestratorfunctions") or 0),
            max_orchestration_actions=int(durable.get("maxorchestrationactions") or DEFAULT_MAX_ORCHESTRATION_ACTIONS),
        )


HOST_SETTING_PREFIX = "AzureFunctionsJobHost__"


def _apply_environment_overrides(document: dict[str, Any]) -> None:
    """App settings named `AzureFunctionsJobHost__path__to__setting` override host.json, as on Azure."""
    for name, value in os.environ.items():
        if not name.lower().startswith(HOST_SETTING_PREFIX.lower()):
            continue
        path = name[len(HOST_SETTING_PREFIX) :].split("__")
        section = document
        for part in path[:-1]:
            key = next((k for k in section if k.lower() == part.lower()), part)
            child = section.get(key)
            if not isinstance(child, dict):
                child = section[key] = {}
            section = child
        leaf = next((k for k in section if k.lower() == path[-1].lower()), path[-1])
        section[leaf] = value


def _case_insensitive(section: dict[str, Any]) -> dict[str, Any]:
    return {str(key).lower(): value for key, value in section.items()}


def _expand(value: str) -> str:
    """host.json values may be `%SettingName%` references to app settings."""
    if len(value) > 2 and value.startswith("%") and value.endswith("%"):
        return os.environ.get(value[1:-1], value)
    return value


def read_settings_file(path: Path) -> dict[str, str]:
    """The `Values` of a `local.settings.json`-format file."""
    document = json.loads(path.read_text(encoding="utf-8"))
    values = document.get("Values") or {}
    return {str(key): str(value) for key, value in values.items()}


def apply_settings(from_file: dict[str, str], explicit: dict[str, str]) -> dict[str, str | None]:
    """App settings become environment variables of the app's process, as in the Functions worker.

    Like Core Tools, a `local.settings.json` value does not override a variable already set in the environment;
    settings passed explicitly (the Python API) always win. Returns the previous values, to restore them.
    """
    previous: dict[str, str | None] = {}
    for key, value in from_file.items():
        if key in os.environ and os.environ[key] != value:
            log.info("Skipping '%s' from local.settings.json as it's already defined in the environment", key)
            continue
        previous.setdefault(key, os.environ.get(key))
        os.environ[key] = value
    for key, value in explicit.items():
        previous.setdefault(key, os.environ.get(key))
        os.environ[key] = value
    return previous


def restore_settings(previous: dict[str, str | None]) -> None:
    for key, value in previous.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value
