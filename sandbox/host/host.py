"""`LocalHost`: the local Azure Functions + Durable Functions host, running in a background thread."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import tempfile
import threading
import time
from collections.abc import Coroutine
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

from aiohttp import web
from azure.durable_functions.models.utils import http_utils
from azure.functions._durable_functions import df_dumps

from sandbox.clock import ClockAnchor, SimClock
from sandbox.host import easy_auth
from sandbox.host import history as h
from sandbox.host.app_loader import FunctionRegistry, load_app
from sandbox.host.clock_anchor import save_anchor
from sandbox.host.config import (
    HostConfig,
    apply_settings,
    default_worker_threads,
    read_settings_file,
    restore_settings,
    worker_process_count,
)
from sandbox.host.durable_api import DurableHttpApi, status_payload
from sandbox.host.engine import OrchestrationEngine
from sandbox.host.history import TERMINAL_STATUSES, OrchestrationStatus
from sandbox.host.http_server import HostHttpServer, HostKeys
from sandbox.host.invoker import FunctionInvoker
from sandbox.host.store import InstanceQuery
from sandbox.host.worker_processes import WorkerProcesses

log = logging.getLogger("sandbox.host")

T = TypeVar("T")

DATABASE_FILE = "taskhub.sqlite"
_TERMINAL_NAMES = frozenset(status.name for status in TERMINAL_STATUSES)
_running_host: LocalHost | None = None
_running_lock = threading.Lock()


class LocalHost:
    """Hosts one function app: imports `function_app.py`, serves HTTP on 127.0.0.1 and runs orchestrations.

    One host runs per process at a time, as one Functions worker does (the Durable client's HTTP session is
    process-global). State lives in SQLite under `state_dir` (a temporary directory when not given).
    """

    def __init__(
        self,
        app_dir: Path,
        *,
        clock: SimClock,
        state_dir: Path | None = None,
        port: int = 0,
        settings: dict[str, str] | None = None,
        require_keys: bool = False,
        settings_file: Path | None = None,
        auth: str = "functionKey",
        keep_history_generations: bool = False,
    ) -> None:
        """`auth`: "functionKey" (function keys, only checked with `require_keys`, as Core Tools does) or "entra"
        (App Service Authentication emulated in front of the HTTP triggers, see easy_auth.py; the system
        endpoints keep their keys, so keys are required). `keep_history_generations`: keep the history of every
        execution of an instance that continued as new, for tests that inspect an earlier one (Azure, and the host
        by default, keep only the current execution's; the history API shows only that one either way)."""
        if auth not in ("functionKey", "entra"):
            raise ValueError(f"auth must be functionKey or entra, not {auth!r}")
        self.auth = auth
        self.keep_history_generations = keep_history_generations
        if auth == "entra":
            require_keys = True
            # What App Service sets for an app behind its authentication, and the app's own mode.
            settings = {**(settings or {}), "CMK_AUTH_MODE": "entra", "WEBSITE_AUTH_ENABLED": "True"}
        self.app_dir = Path(app_dir).resolve()
        self.clock = clock
        self.state_dir = Path(state_dir) if state_dir is not None else None
        self.port = port
        self.require_keys = require_keys
        self._settings = dict(settings or {})
        self._settings_file = settings_file
        self._temporary_state: tempfile.TemporaryDirectory[str] | None = None
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop_requested: asyncio.Event | None = None
        self._started = threading.Event()
        self._startup_error: BaseException | None = None
        self._commits = threading.Condition()
        self._saved_anchor: ClockAnchor | None = None
        self._previous_environment: dict[str, str | None] = {}
        self._versions: dict[str, int] = {}  # episodes committed per instance, for wait_for
        self._engine: OrchestrationEngine | None = None
        self._worker_pool: ThreadPoolExecutor | None = None
        self._worker_processes: WorkerProcesses | None = None
        self._durable_api: DurableHttpApi | None = None
        self.keys: HostKeys | None = None
        self.config: HostConfig | None = None
        self.registry: FunctionRegistry | None = None
        self.base_url = ""
        # The Durable extension's local listener (rpcBaseUrl): a loopback port of its own, never the public one.
        self.rpc_url = ""

    @property
    def worker_processes(self) -> WorkerProcesses | None:
        """The worker processes the app runs in (FUNCTIONS_WORKER_PROCESS_COUNT above 1), else None."""
        return self._worker_processes

    # --- lifecycle ----------------------------------------------------------------------------------------------

    def __enter__(self) -> LocalHost:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.stop()

    def start(self) -> None:
        """Load the app, open the task hub and listen; returns when the server accepts requests."""
        global _running_host
        with _running_lock:
            if _running_host is not None:
                raise RuntimeError("another LocalHost is running in this process; stop it first")
            _running_host = self
        try:
            self._prepare()
            self._thread = threading.Thread(target=self._run, name="sandbox-host", daemon=True)
            self._thread.start()
            self._started.wait()
            if self._startup_error is not None:
                raise self._startup_error
        except BaseException:
            self._release()
            raise

    def _prepare(self) -> None:
        settings_file = self._settings_file
        if settings_file is None and (self.app_dir / "local.settings.json").exists():
            settings_file = self.app_dir / "local.settings.json"
        self._previous_environment = apply_settings(
            read_settings_file(settings_file) if settings_file else {}, self._settings
        )
        loaded = load_app(self.app_dir)  # after the settings: the app reads them at import time
        self.registry = loaded.registry
        self.config = HostConfig.load(self.app_dir)
        self.keys = HostKeys.from_environment() if self.require_keys else None
        if self.state_dir is None:
            self._temporary_state = tempfile.TemporaryDirectory(prefix="sandbox-host-")
            self.state_dir = Path(self._temporary_state.name)
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self._save_anchor_if_changed()
        self._worker_pool = ThreadPoolExecutor(default_worker_threads(), thread_name_prefix="worker")
        if worker_process_count() > 1:
            # After the settings: the worker processes inherit this process's environment, as they do in Azure.
            self._worker_processes = WorkerProcesses(self.app_dir, worker_process_count(), default_worker_threads())
            self._worker_processes.start()
        self._engine = OrchestrationEngine(
            registry=self.registry,
            config=self.config,
            clock=self.clock,
            database_path=self.state_dir / DATABASE_FILE,
            worker_pool=self._worker_pool,
            on_commit=self._on_commit,
            worker_processes=self._worker_processes,
            keep_history_generations=self.keep_history_generations,
        )

    def stop(self) -> None:
        if self._thread is None:
            return
        if self._loop is not None and self._stop_requested is not None:
            self._loop.call_soon_threadsafe(self._stop_requested.set)
        self._thread.join()
        self._thread = None
        self._release()

    def _release(self) -> None:
        global _running_host
        if self._worker_pool is not None:
            self._worker_pool.shutdown(wait=True, cancel_futures=True)
            self._worker_pool = None
        if self._engine is not None:
            self._engine.close()
            self._engine = None
        if self._worker_processes is not None:
            self._worker_processes.stop()
            self._worker_processes = None
        self._save_anchor_if_changed()
        # The settings were this process's environment while the app ran; later hosts must not inherit them.
        restore_settings(self._previous_environment)
        self._previous_environment = {}
        if self._temporary_state is not None:
            self._temporary_state.cleanup()
            self._temporary_state = None
        with _running_lock:
            if _running_host is self:
                _running_host = None

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        self._loop = loop
        try:
            loop.run_until_complete(self._serve())
        except BaseException as error:
            if not self._started.is_set():
                self._startup_error = error
            else:
                log.exception("The host stopped unexpectedly")
        finally:
            self._started.set()
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()
            self._loop = None

    async def _serve(self) -> None:
        assert self._engine is not None and self.registry is not None and self.config is not None
        assert self._worker_pool is not None
        self._stop_requested = asyncio.Event()
        await _reset_durable_client_session()
        keys = self.keys
        self._durable_api = DurableHttpApi(
            self._engine, self.config, system_key=lambda: keys.durabletask_extension if keys else None
        )
        durable_api = self._durable_api
        invoker = FunctionInvoker(
            asyncio.get_running_loop(),
            self._worker_pool,
            str(self.app_dir),
            lambda binding: json.dumps(
                durable_api.client_binding(
                    self.base_url, binding.get("taskHub"), binding.get("connectionName"), self.rpc_url
                )
            ),
        )
        server = HostHttpServer(
            registry=self.registry,
            config=self.config,
            invoker=invoker,
            durable_api=durable_api,
            keys=keys,
            easy_auth_audience=easy_auth.DEFAULT_AUDIENCE if self.auth == "entra" else None,
        )
        rpc_runner = web.AppRunner(server.rpc_application(), access_log=None)
        await rpc_runner.setup()
        await web.TCPSite(rpc_runner, "127.0.0.1", 0).start()
        self.rpc_url = f"http://127.0.0.1:{int(rpc_runner.addresses[0][1])}"
        runner = web.AppRunner(server.application(), access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", self.port)
        await site.start()
        self.port = int(runner.addresses[0][1])
        self.base_url = f"http://127.0.0.1:{self.port}"
        try:
            await self._engine.start(invoker)
            self._started.set()
            await self._stop_requested.wait()
        finally:
            await self._engine.stop()
            await runner.cleanup()
            await rpc_runner.cleanup()
            await _reset_durable_client_session()

    # --- notifications ------------------------------------------------------------------------------------------

    def _on_commit(self, instance_id: str) -> None:
        self._save_anchor_if_changed()
        with self._commits:
            self._versions[instance_id] = self._versions.get(instance_id, 0) + 1
            self._commits.notify_all()

    def _save_anchor_if_changed(self) -> None:
        anchor = self.clock.anchor
        if self.state_dir is not None and anchor != self._saved_anchor:
            save_anchor(self.state_dir, anchor)
            self._saved_anchor = anchor

    # --- Python API ---------------------------------------------------------------------------------------------

    def _engine_or_fail(self) -> OrchestrationEngine:
        if self._engine is None or self._loop is None:
            raise RuntimeError("the host is not running")
        return self._engine

    def _call(self, coroutine: Coroutine[Any, Any, T]) -> T:
        """Run a coroutine on the host's loop from another thread."""
        if self._loop is None:
            coroutine.close()
            raise RuntimeError("the host is not running")
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result()

    def schedule_state(self) -> tuple[bool, float | None]:
        """(the engine is idle, simulated time of its next durable timer), for a discrete-event clock driver."""
        engine = self._engine_or_fail()
        return self._call(engine.schedule_state())

    def looks_busy(self) -> bool:
        """A glimpse from any thread that the engine has work (see OrchestrationEngine.looks_busy); never proof that
        it is idle."""
        return self._engine_or_fail().looks_busy()

    def wake_timers(self) -> None:
        engine = self._engine_or_fail()
        assert self._loop is not None
        self._loop.call_soon_threadsafe(engine.wake_timers)

    def instance(self, instance_id: str) -> dict[str, Any] | None:
        """The instance's status as the HTTP API reports it, plus `executionId`, `parentInstanceId` (a
        sub-orchestration's parent, else None) and host `diagnostics`."""
        engine = self._engine_or_fail()
        record = engine.db_sync(engine.store.get_instance, instance_id)
        if record is None:
            return None
        payload = status_payload(record)
        payload["executionId"] = record.execution_id
        payload["parentInstanceId"] = record.parent_instance_id
        payload["diagnostics"] = list(record.diagnostics)
        return payload

    def instance_ids(self) -> list[str]:
        """Every instance of the task hub, whatever its status."""
        engine = self._engine_or_fail()
        return engine.db_sync(engine.store.matching_instance_ids, InstanceQuery())

    def wait_for(self, instance_id: str, timeout: float = 30.0) -> dict[str, Any]:
        """Block until the instance is Completed, Failed or Terminated; returns its status."""
        deadline = time.monotonic() + timeout
        while True:
            with self._commits:
                seen = self._versions.get(instance_id, 0)
            status = self.instance(instance_id)
            if status is not None and status["runtimeStatus"] in _TERMINAL_NAMES:
                return status
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"instance {instance_id} did not finish within {timeout}s: {status}")
            # Re-read only once the instance committed an episode (re-check every second regardless).
            self._wait_for_commit(instance_id, seen, min(remaining, 1.0))

    def _wait_for_commit(self, instance_id: str, seen: int, timeout: float) -> None:
        with self._commits:
            self._commits.wait_for(lambda: self._versions.get(instance_id, 0) != seen, timeout=timeout)

    def history(self, instance_id: str, execution: str | int | None = None) -> list[dict[str, Any]]:
        """The DTFx history of the current execution, or of `execution` (an execution ID or an index, -1 last)."""
        engine = self._engine_or_fail()
        return engine.db_sync(engine.store.history, instance_id, execution) or []

    def executions(self, instance_id: str) -> list[str]:
        engine = self._engine_or_fail()
        return engine.db_sync(engine.store.executions, instance_id)

    def stats(self, instance_id: str) -> dict[str, Any]:
        """Replay cost counters: episodes, executions, history sizes and the SDK's CPU time (all executions)."""
        engine = self._engine_or_fail()
        record = engine.db_sync(engine.store.get_instance, instance_id)
        if record is None:
            raise KeyError(instance_id)
        return {
            "episodes": record.episodes,
            "executions": record.executions,
            "historyEvents": record.history_events,
            "maxHistoryEvents": record.max_history_events,
            "replayedEvents": record.replayed_events,
            "orchestratorCpuSeconds": record.orchestrator_cpu,
        }

    def episodes(self, instance_id: str) -> list[dict[str, Any]]:
        """Per episode: history length sent to the SDK, CPU seconds in the orchestrator call, host overhead."""
        engine = self._engine_or_fail()
        return engine.db_sync(engine.store.episode_stats, instance_id)

    def start_new(self, orchestrator: str, client_input: Any = None, instance_id: str | None = None) -> str:
        """Start an orchestration as `DurableOrchestrationClient.start_new` would (same input encoding)."""
        engine = self._engine_or_fail()
        raw_input = None if client_input is None else json.dumps(df_dumps(client_input))
        return self._call(engine.start_orchestration(orchestrator, instance_id, raw_input))

    def raise_event(self, instance_id: str, event_name: str, data: Any = None) -> bool:
        """Raise an event as the Python client does (its data arrives JSON-encoded as a string)."""
        engine = self._engine_or_fail()
        raw = json.dumps(json.dumps(data))
        return self._call(engine.send(instance_id, h.event_raised(engine.now(), event_name, raw)))

    def terminate(self, instance_id: str, reason: str) -> bool:
        engine = self._engine_or_fail()
        return self._call(engine.send(instance_id, h.execution_terminated(engine.now(), reason)))

    def running_instances(self) -> list[str]:
        """IDs of the instances that are Pending or Running."""
        engine = self._engine_or_fail()
        query = InstanceQuery(statuses=frozenset({OrchestrationStatus.Running, OrchestrationStatus.Pending}))
        return engine.db_sync(engine.store.matching_instance_ids, query)


async def _reset_durable_client_session() -> None:
    """The SDK keeps one aiohttp session per process (docs/durable-protocol.md pitfall 4): bind it to this loop."""
    session = getattr(http_utils, "_client_session", None)
    if session is not None and not session.closed:
        # A session created on a loop that is gone cannot be closed; dropping the reference is all we can do.
        with contextlib.suppress(RuntimeError):
            await session.close()
    http_utils._client_session = None
    http_utils._session_lock = asyncio.Lock()
