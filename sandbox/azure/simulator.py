"""`AzureSimulator`: the simulated cloud in a background thread with its own event loop (or run by the CLI)."""

from __future__ import annotations

import asyncio
import shutil
import tempfile
import threading
from concurrent.futures import Future
from pathlib import Path
from types import TracebackType
from typing import Any

from sandbox.azure import cosmos_operations, eventgrid
from sandbox.azure.ids import JsonDict
from sandbox.azure.persistence import StateStore
from sandbox.azure.server import SimulatorServer
from sandbox.azure.state import CloudState
from sandbox.azure.tls import ensure_tls_files
from sandbox.azure.tokens import PrincipalCredential
from sandbox.azure.world import SimulatorSettings, World, load_world
from sandbox.clock import SimClock


class AzureSimulator:
    """A local Azure Resource Manager (+ identity endpoint, Cosmos data plane) that real SDK clients talk to.

    `world` is a world object (dict), a `World`, or a path to a world file. With `state_dir`, all state is
    persisted there and an existing state wins over `world`. `clock` lets the simulator share a SimClock with
    another component in the same process; otherwise one is created with `time_scale` (continuing the persisted
    timeline when `state_dir` holds one). `settings_overrides` are camelCase simulator settings applied on top
    of the world's (what the CLI flags set).
    """

    def __init__(
        self,
        world: JsonDict | World | Path | str | None = None,
        *,
        time_scale: float = 1.0,
        clock: SimClock | None = None,
        state_dir: Path | None = None,
        port: int = 0,
        identity_port: int = 0,
        settings_overrides: JsonDict | None = None,
    ) -> None:
        loaded = world if isinstance(world, World) else load_world(world if world is not None else {"resources": []})
        self._temporary_dir: Path | None = None
        if state_dir is not None:
            state_dir = Path(state_dir)
            state_dir.mkdir(parents=True, exist_ok=True)
            tls_dir = state_dir / "tls"
        else:
            self._temporary_dir = Path(tempfile.mkdtemp(prefix="azure-sim-"))
            tls_dir = self._temporary_dir / "tls"
        self.tls = ensure_tls_files(tls_dir)
        store = StateStore(state_dir)
        stored = CloudState.stored_settings(store)
        base_settings = SimulatorSettings.from_json(stored) if stored is not None else loaded.settings
        settings = base_settings.with_overrides(settings_overrides) if settings_overrides else base_settings
        self.clock = _continue_clock(clock, time_scale, CloudState.stored_clock_anchor(store))
        self.state = CloudState(loaded, self.clock, store, settings)
        state = self.state
        # Cross-service effects, explicit: Cosmos DB applies its finished operations and timers; a resource write
        # raises its Event Grid event.
        state.operations.on_complete = lambda operation: cosmos_operations.complete_operation(state, operation)
        state.operations.on_timer = lambda timer: cosmos_operations.fire_timer(state, timer)
        state.hooks.resource_written = eventgrid.publisher(state)
        self.world = loaded
        self._server = SimulatorServer(self.state, self.tls, port=port, identity_port=identity_port)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> AzureSimulator:
        if self._thread is not None:
            return self
        ready: Future[None] = Future()
        loop = asyncio.new_event_loop()
        self._loop = loop

        def run() -> None:
            asyncio.set_event_loop(loop)
            try:
                loop.run_until_complete(self._server.start())
            except BaseException as error:  # report startup failures to the caller's thread
                ready.set_exception(error)
                loop.close()
                return
            ready.set_result(None)
            loop.run_forever()
            loop.run_until_complete(self._server.stop())
            leftovers = asyncio.all_tasks(loop)
            for task in leftovers:
                task.cancel()
            loop.run_until_complete(asyncio.gather(*leftovers, return_exceptions=True))
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

        self._thread = threading.Thread(target=run, name="azure-simulator", daemon=True)
        self._thread.start()
        ready.result(timeout=30)
        return self

    def stop(self) -> None:
        loop, thread = self._loop, self._thread
        if loop is not None and thread is not None and thread.is_alive():
            loop.call_soon_threadsafe(loop.stop)
            thread.join(timeout=30)
        self._thread = None
        self.state.store.close()
        if self._temporary_dir is not None:
            shutil.rmtree(self._temporary_dir, ignore_errors=True)
            self._temporary_dir = None

    def __enter__(self) -> AzureSimulator:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.stop()

    async def serve_forever(self) -> None:
        """Run in the caller's event loop (the CLI); returns when cancelled."""
        await self._server.start()
        try:
            await asyncio.Event().wait()
        finally:
            await self._server.stop()
            self.state.store.close()

    # ------------------------------------------------------------------ addresses and settings

    @property
    def base_url(self) -> str:
        return self._server.base_url

    @property
    def port(self) -> int:
        return self._server.port

    @property
    def ca_bundle_path(self) -> str:
        return str(self.tls.ca_path)

    @property
    def identity_endpoint(self) -> str:
        return self._server.identity_endpoint

    @property
    def identity_header(self) -> str:
        return self.state.identity_header

    @property
    def tenant_id(self) -> str:
        return self.state.tenant_id

    @property
    def settings(self) -> SimulatorSettings:
        return self.state.settings

    def app_settings(self, client_id: str | None = None) -> dict[str, str]:
        """Environment for an app that should talk to this simulator instead of Azure."""
        values = {
            "AZURE_CLOUD": self.settings.cloud,
            "ARM_ENDPOINT": self.base_url,
            "IDENTITY_ENDPOINT": self.identity_endpoint,
            "IDENTITY_HEADER": self.identity_header,
            "REQUESTS_CA_BUNDLE": self.ca_bundle_path,
        }
        if client_id is not None:
            values["AZURE_CLIENT_ID"] = client_id
        return values

    def credential(self, principal_id: str | None = None) -> PrincipalCredential:
        """A TokenCredential acting as `principal_id` (default: the app's system principal)."""
        return PrincipalCredential(
            principal_id or self.settings.system_principal_id,
            tenant_id=self.tenant_id,
        )

    # ------------------------------------------------------------------ in-process inspection and control

    def requests(self, since: int = 0) -> list[JsonDict]:
        with self.state.lock:
            return [dict(entry) for entry in self.state.requests.since(since)]

    def operations(self) -> list[JsonDict]:
        with self.state.lock:
            self.state.settle()
            self.state.commit()
            return [operation.public_json() for operation in self.state.operations.all()]

    def events(self, since: int = 0) -> list[JsonDict]:
        with self.state.lock:
            return [dict(entry) for entry in self.state.events.since(since)]

    def advance(self, seconds: float) -> None:
        """Move simulated time forward and apply whatever completes meanwhile."""
        with self.state.lock:
            self.clock.advance(seconds)
            self.state.settle()
            self.state.commit()

    def schedule_state(self) -> tuple[bool, float | None]:
        """(something is due now, simulated time of the next operation end or event delivery)."""
        with self.state.lock:
            return self.state.schedule_state()

    def add_fault(self, rule: JsonDict) -> JsonDict:
        with self.state.lock:
            added = self.state.faults.add(rule)
            self.state.commit()
            return added

    def clear_faults(self) -> None:
        with self.state.lock:
            self.state.faults.remove()
            self.state.commit()

    def add_event_subscription(self, subscription: JsonDict) -> JsonDict:
        with self.state.lock:
            added = self.state.events.add_subscription(subscription)
            self.state.commit()
            return added

    def resource(self, resource_id: str) -> JsonDict | None:
        """The stored body of a resource (no view transformations), for assertions."""
        with self.state.lock:
            found = self.state.resources.get(resource_id)
            return dict(found) if found is not None else None


def _continue_clock(clock: SimClock | None, time_scale: float, anchor: Any) -> SimClock:
    """Resume the persisted timeline: time that passed while the simulator was down has passed in the cloud too."""
    if clock is None:
        return SimClock(time_scale, anchor=anchor)
    if anchor is not None:
        persisted_now = SimClock(anchor.time_scale, anchor=anchor).timestamp()
        behind = persisted_now - clock.timestamp()
        if behind > 0:
            clock.advance(behind)  # the shared clock never runs backwards behind persisted operations
    return clock
