"""The whole product on one machine: the Azure simulator and the local Functions host running function_app.py
unchanged, sharing one simulated clock and one state directory.

The host is configured exactly as App Service configures an app: app settings for the ARM endpoint, the
managed-identity endpoint (IDENTITY_ENDPOINT / IDENTITY_HEADER) and a CA bundle, so the product's code path is the
one it takes in Azure. The simulator's Event Grid delivers ARM write events to the app's Event Grid trigger, as the
fleet-events deployment wires it in Azure.
"""

from __future__ import annotations

import threading
import warnings
from pathlib import Path
from types import TracebackType
from typing import Any

from sandbox.azure import AzureSimulator
from sandbox.clock import SimClock
from sandbox.host import LocalHost, allocator
from sandbox.host.clock_anchor import load_clock
from sandbox.host.config import read_settings_file

REPO_ROOT = Path(__file__).resolve().parent.parent
ENROLMENT_FUNCTION = "enrol_from_event_grid"
ENROLMENT_SUBSCRIPTION = "cmk-enrolment"
# Local defaults a developer would otherwise put in local.settings.json.
LOCAL_DEFAULTS = {"TASKHUB_NAME": "cmklocal"}

# azure-cosmos turns certificate checks off by itself for loopback endpoints (the simulator's data plane) and urllib3
# then warns on every request; the warning says nothing about the product.
warnings.filterwarnings("ignore", message="Unverified HTTPS request is being made to host '127.0.0.1'")


# A clock that stands still: in discrete-event mode only the driver moves it.
FROZEN_TIME_SCALE = 1e-9


class DiscreteEventDriver(threading.Thread):
    """Discrete-event time for measurements: the simulated clock stands still while anything runs (an episode, an
    activity, a request, an event delivery) and, once all is idle, jumps to the next thing due: the host's next
    durable timer, or the simulator's next operation end or event delivery.

    With a running clock, every real second of CPU also costs `time_scale` simulated seconds, which inflates
    simulated durations by how fast this machine is; here computing takes no simulated time at all, as if Azure
    and the app were infinitely fast, and only the waits the product and Azure impose remain.
    """

    def __init__(self, stack: LocalAzureStack, period_seconds: float = 0.0005) -> None:
        super().__init__(name="discrete-event-clock", daemon=True)
        self._stack = stack
        self._period = period_seconds
        self._stopping = threading.Event()

    def stop(self) -> None:
        self._stopping.set()
        self.join(timeout=5)

    def run(self) -> None:
        stack = self._stack
        quiet_checks = 0
        while not self._stopping.wait(self._period):
            host = stack.host
            if host is None:
                continue
            try:
                if host.looks_busy():  # the common case while work goes on: no call into the host's loop
                    quiet_checks = 0
                    continue
                idle, next_timer = host.schedule_state()
            except RuntimeError:
                return  # the host stopped
            due_now, next_due = stack.simulator.schedule_state()
            if not idle or due_now:
                quiet_checks = 0
                continue
            # Idle twice in a row: a request between the two (a client, an HTTP trigger) resets it.
            quiet_checks += 1
            if quiet_checks < 2:
                continue
            upcoming = [moment for moment in (next_timer, next_due) if moment is not None]
            if not upcoming:
                continue
            now = stack.clock.timestamp()
            target = min(upcoming)
            if target > now:
                stack.simulator.advance(target - now + 1e-3)
            host.wake_timers()
            quiet_checks = 0


class LocalAzureStack:
    def __init__(
        self,
        world: Any,
        *,
        app_dir: Path = REPO_ROOT,
        time_scale: float = 1.0,
        state_dir: Path | None = None,
        host_port: int = 0,
        azure_port: int = 0,
        settings: dict[str, str] | None = None,
        settings_file: Path | None = None,
        require_keys: bool = False,
        simulator_overrides: dict[str, Any] | None = None,
        discrete: bool = False,
        auth: str = "functionKey",
        keep_history_generations: bool = False,
    ) -> None:
        """`discrete`: discrete-event time (see DiscreteEventDriver) instead of `time_scale`, for measurements.
        `keep_history_generations`: see LocalHost."""
        allocator.tune_this_process()  # before the simulator and host start their threads
        self.state_dir = state_dir
        host_state = state_dir / "host" if state_dir else None
        if discrete:
            time_scale = FROZEN_TIME_SCALE
        self.clock: SimClock = load_clock(host_state, time_scale) if host_state else SimClock(time_scale)
        self.simulator = AzureSimulator(
            world,
            clock=self.clock,
            state_dir=state_dir / "azure" if state_dir else None,
            port=azure_port,
            settings_overrides=simulator_overrides,
        )
        self._app_dir = app_dir
        self._host_state = host_state
        self._host_port = host_port
        self._settings = dict(settings or {})
        self._settings_file = settings_file
        self._require_keys = require_keys
        self._auth = auth
        self._keep_history_generations = keep_history_generations
        self.host: LocalHost | None = None
        self._driver = DiscreteEventDriver(self) if discrete else None

    def start(self) -> LocalAzureStack:
        self.simulator.start()
        from_file = read_settings_file(self._settings_file) if self._settings_file else {}
        settings = {
            **LOCAL_DEFAULTS,
            "CMK_APP_PRINCIPAL_ID": self.simulator.settings.system_principal_id,
            **from_file,
            **self._settings,
            # The connection to the simulated cloud always wins: serve never talks to real Azure.
            **self.simulator.app_settings(),
        }
        self.host = LocalHost(
            self._app_dir,
            clock=self.clock,
            state_dir=self._host_state,
            port=self._host_port,
            settings=settings,
            require_keys=self._require_keys,
            auth=self._auth,
            keep_history_generations=self._keep_history_generations,
        )
        self.host.start()
        # As Event Grid calls an AzureFunction destination: with the Event Grid extension's system key.
        code = f"&code={self.host.keys.eventgrid_extension}" if self.host.keys is not None else ""
        self.simulator.add_event_subscription(
            {
                "name": ENROLMENT_SUBSCRIPTION,
                "endpoint": (
                    f"{self.host.base_url}/runtime/webhooks/eventgrid?functionName={ENROLMENT_FUNCTION}{code}"
                ),
                "schema": "EventGridSchema",
                "includedEventTypes": ["Microsoft.Resources.ResourceWriteSuccess"],
            }
        )
        if self._driver is not None:
            self._driver.start()
        return self

    def stop(self) -> None:
        if self._driver is not None and self._driver.is_alive():
            self._driver.stop()
        if self.host is not None:
            self.host.stop()
            self.host = None
        self.simulator.stop()

    def __enter__(self) -> LocalAzureStack:
        return self.start()

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.stop()

    @property
    def host_url(self) -> str:
        assert self.host is not None, "start() first"
        return self.host.base_url

    @property
    def azure_url(self) -> str:
        return self.simulator.base_url
