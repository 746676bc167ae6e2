"""Language worker processes: with FUNCTIONS_WORKER_PROCESS_COUNT above 1, the app runs in that many processes.

Azure's Functions host starts FUNCTIONS_WORKER_PROCESS_COUNT Python worker processes (default 1, at most 10) and
spreads invocations over them; each worker runs sync functions on its own thread pool
(learn.microsoft.com/azure/azure-functions/functions-app-settings#functions_worker_process_count,
.../python-scale-performance-reference#use-multiple-language-worker-processes). The local host, a single process,
runs the app in its own process at the default of 1 (one process to debug and to inspect). Above 1 it starts that
many worker processes, each importing and indexing `function_app.py` with the worker's code as the host process
does, and sends them the work that dominates a large rollout: orchestrator episodes' function calls and sync
activity invocations. Client functions (HTTP, Event Grid: they hold the durable client's session) and async
functions run in the host process, on its event loop.

One socket pair per worker process carries requests and replies, matched by call id; the worker runs each call on
its thread pool (PYTHON_THREADPOOL_THREAD_COUNT), so a call waiting on the network does not hold up the others.
A worker process that exits fails the calls it had with `WorkerProcessLostError` and is started again.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
import socket
import subprocess
import sys
import threading
import uuid
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from sandbox.host import allocator

log = logging.getLogger("sandbox.host")

ORCHESTRATOR = "orchestrator"
ACTIVITY = "activity"
_SANDBOX_ROOT = Path(__file__).resolve().parents[2]  # the directory holding the `sandbox` package
START_TIMEOUT_SECONDS = 120.0


class WorkerProcessLostError(RuntimeError):
    """The worker process running a call exited before it replied."""


class WorkerCallError(RuntimeError):
    """The worker process could not run a call at all (not the function raising: that is the call's result)."""


@dataclass(frozen=True)
class ActivityOutcome:
    """An activity invocation's result: its return value as JSON text, or its failure (`<Type>: <message>`, stack)."""

    result: str | None = None
    failure: tuple[str, str] | None = None


class _WorkerProcess:
    def __init__(self, index: int, app_dir: Path, threads: int, on_lost: Callable[[_WorkerProcess], None]) -> None:
        self.index = index
        self._app_dir = app_dir
        self._threads = threads
        self._on_lost = on_lost
        self._send_lock = threading.Lock()
        self._pending: dict[int, Future[Any]] = {}
        self._pending_lock = threading.Lock()
        self._ids = itertools.count()
        self._connection: Connection | None = None
        self._process: subprocess.Popen[bytes] | None = None
        self._reader: threading.Thread | None = None
        self.pid = 0
        self.replies = 0  # calls this process answered
        self.alive = False

    @property
    def in_flight(self) -> int:
        return len(self._pending)

    def start(self) -> None:
        parent, child = socket.socketpair()
        environment = dict(os.environ)
        allocator.child_environment(environment)
        environment["PYTHONPATH"] = os.pathsep.join(
            [str(_SANDBOX_ROOT), *filter(None, [environment.get("PYTHONPATH")])]
        )
        command = [sys.executable, "-m", "sandbox.host.worker_process", str(child.fileno()), str(self._app_dir)]
        command.append(str(self._threads))
        self._process = subprocess.Popen(command, pass_fds=[child.fileno()], env=environment)
        child.close()
        connection = Connection(parent.detach())
        if not connection.poll(START_TIMEOUT_SECONDS):
            self._process.kill()
            raise RuntimeError(f"worker process {self.index} did not start within {START_TIMEOUT_SECONDS:.0f} s")
        try:
            state, detail = connection.recv()
        except EOFError:
            state, detail = "failed", f"exited with code {self._process.wait()}"
        if state != "ready":
            self._process.wait(timeout=10)
            raise RuntimeError(f"worker process {self.index} could not load the app: {detail}")
        self.pid = int(detail)
        self.alive = True
        self._connection = connection
        self._reader = threading.Thread(target=self._read, name=f"worker-process-{self.index}", daemon=True)
        self._reader.start()

    def call(self, kind: str, function_key: str, text: str) -> Future[Any]:
        future: Future[Any] = Future()
        call_id = next(self._ids)
        with self._pending_lock:
            if not self.alive:
                future.set_exception(WorkerProcessLostError(f"worker process {self.index} has exited"))
                return future
            self._pending[call_id] = future
        try:
            with self._send_lock:
                if self._connection is None:
                    raise OSError("not started")
                self._connection.send((call_id, kind, function_key, text))
        except OSError as error:
            with self._pending_lock:
                unanswered = self._pending.pop(call_id, None)
            if unanswered is not None:  # else the reader already failed it, as the process died
                unanswered.set_exception(WorkerProcessLostError(f"worker process {self.index}: {error}"))
        return future

    def _read(self) -> None:
        connection = self._connection
        assert connection is not None
        while True:
            try:
                call_id, reply = connection.recv()
            except (EOFError, OSError):
                break
            with self._pending_lock:
                future = self._pending.pop(call_id, None)
            self.replies += 1
            if future is None:
                continue
            if isinstance(reply, WorkerCallError):
                future.set_exception(reply)
            else:
                future.set_result(reply)
        with self._pending_lock:
            self.alive = False  # under the lock: a call either lands in `lost` or sees a dead process
            lost, self._pending = list(self._pending.values()), {}
        code = self._process.poll() if self._process is not None else None
        for future in lost:
            future.set_exception(WorkerProcessLostError(f"worker process {self.index} exited (code {code})"))
        self._on_lost(self)

    def stop(self) -> None:
        if self._connection is not None:
            with self._send_lock, contextlib.suppress(OSError):
                self._connection.send(None)
        if self._process is not None:
            try:
                self._process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        if self._connection is not None:
            self._connection.close()
        if self._reader is not None and self._reader is not threading.current_thread():
            self._reader.join(timeout=10)

    def kill(self) -> None:
        """What a crash does (tests)."""
        if self._process is not None:
            self._process.kill()


class WorkerProcesses:
    """The host's side of FUNCTIONS_WORKER_PROCESS_COUNT worker processes: start, spread calls, restart, stop."""

    def __init__(self, app_dir: Path, count: int, threads: int) -> None:
        self._app_dir = app_dir
        self._threads = threads
        self._closing = False
        self._replaced = threading.Condition()
        self._turns = itertools.count()
        self._workers = [_WorkerProcess(index, app_dir, threads, self._lost) for index in range(count)]
        # Activity calls made while no worker process was alive: sent to the first one back.
        self._deferred: list[tuple[str, str, Future[ActivityOutcome]]] = []

    def start(self) -> None:
        # Started side by side: each imports the app, about a second apiece.
        starters = ThreadPoolExecutor(len(self._workers))
        try:
            for started in [starters.submit(worker.start) for worker in self._workers]:
                started.result()
        except BaseException:
            self.stop()
            raise
        finally:
            starters.shutdown()
        log.info("Started %d worker processes: %s", len(self._workers), [w.pid for w in self._workers])

    @property
    def pids(self) -> list[int]:
        return [worker.pid for worker in self._workers]

    @property
    def in_flight(self) -> list[int]:
        """Calls each worker process is running now."""
        return [worker.in_flight for worker in self._workers]

    @property
    def replies(self) -> list[int]:
        """Calls answered by each worker process (its current one, after a restart)."""
        return [worker.replies for worker in self._workers]

    def _live(self) -> _WorkerProcess | None:
        # Round robin over the live processes, as the Functions host's RpcFunctionInvocationDispatcherLoadBalancer
        # picks a worker channel (azure-functions-host: a shared counter modulo the channels ready for invocations).
        live = [worker for worker in self._workers if worker.alive]
        return live[next(self._turns) % len(live)] if live else None

    def call_orchestrator(self, function_key: str, context_json: str) -> tuple[Any, float]:
        """Run an orchestrator function on a worker process (blocking: a worker thread of the host's); its
        OrchestratorResult and CPU seconds. While every worker process is being started again, it waits."""
        with self._replaced:
            worker = self._live()
            while worker is None and not self._closing:
                self._replaced.wait(timeout=START_TIMEOUT_SECONDS)
                worker = self._live()
        if worker is None:
            raise WorkerProcessLostError("no worker process is running")
        result: tuple[Any, float] = worker.call(ORCHESTRATOR, function_key, context_json).result()
        return result

    def call_activity(self, function_key: str, input_text: str) -> Future[ActivityOutcome]:
        """Run a sync activity on a worker process; never blocks (the host's event loop calls it)."""
        with self._replaced:
            worker = self._live()
            if worker is None:
                deferred: Future[ActivityOutcome] = Future()
                self._deferred.append((function_key, input_text, deferred))
                return deferred
        return worker.call(ACTIVITY, function_key, input_text)

    def _lost(self, worker: _WorkerProcess) -> None:
        if self._closing:
            return
        log.warning("Worker process %d (pid %d) exited; starting it again", worker.index, worker.pid)
        replacement = _WorkerProcess(worker.index, self._app_dir, self._threads, self._lost)
        try:
            replacement.start()
        except Exception:
            log.exception("Worker process %d could not be started again", worker.index)
            with self._replaced:
                if any(other.alive for other in self._workers):
                    return
                deferred, self._deferred = self._deferred, []
            for _, _, waiting in deferred:
                waiting.set_exception(WorkerProcessLostError("no worker process could be started again"))
            return
        with self._replaced:
            self._workers[worker.index] = replacement
            self._replaced.notify_all()
            deferred, self._deferred = self._deferred, []
        for function_key, input_text, waiting in deferred:
            _chain(replacement.call(ACTIVITY, function_key, input_text), waiting)
        worker.stop()

    def kill(self, index: int) -> None:
        """Kill a worker process as a crash would (tests); it is started again."""
        self._workers[index].kill()

    def stop(self) -> None:
        with self._replaced:
            self._closing = True
            self._replaced.notify_all()
            deferred, self._deferred = self._deferred, []
        for _, _, waiting in deferred:
            waiting.set_exception(WorkerProcessLostError("the host stopped"))
        for worker in list(self._workers):
            worker.stop()


def _chain(source: Future[Any], target: Future[Any]) -> None:
    def copy(done: Future[Any]) -> None:
        error = done.exception()
        if error is not None:
            target.set_exception(error)
        else:
            target.set_result(done.result())

    source.add_done_callback(copy)


# --- the worker process's side --------------------------------------------------------------------------------------


def serve(connection: Connection, app_dir: Path, threads: int) -> None:
    """Load the app, then run calls until the host closes the connection."""
    from sandbox.host import worker
    from sandbox.host.app_loader import load_app
    from sandbox.host.engine import activity_result_text, call_orchestrator, memoize_sdk_timestamp_parsing
    from sandbox.host.invoker import FunctionFailedError, FunctionInvoker

    try:
        registry = load_app(app_dir).registry
        memoize_sdk_timestamp_parsing()
    except BaseException as error:  # reported to the host, which refuses to start
        connection.send(("failed", f"{type(error).__name__}: {error}"))
        return
    invoker = FunctionInvoker(None, None, str(app_dir), client_binding=None)
    send_lock = threading.Lock()

    def activity(function_key: str, text: str) -> ActivityOutcome:
        info = registry.activities[function_key]
        try:
            returned = invoker.invoke_in_worker_thread(info, worker.typed_string(text))
            return ActivityOutcome(result=activity_result_text(returned))
        except Exception as error:
            failure = FunctionFailedError(info.name, str(uuid.uuid4()), error)
            log.error("Executed 'Functions.%s' (Failed, Id=%s)\n%s", info.name, failure.invocation_id, failure.stack)
            return ActivityOutcome(failure=(str(failure), failure.stack))

    def run(call_id: int, kind: str, function_key: str, text: str) -> None:
        reply: Any
        try:
            if kind == ORCHESTRATOR:
                reply = call_orchestrator(invoker, registry.orchestrators[function_key], text)
            else:
                reply = activity(function_key, text)
        except BaseException as error:  # never leave the host waiting for a reply
            reply = WorkerCallError(f"{kind} {function_key}: {type(error).__name__}: {error}")
        with send_lock:
            connection.send((call_id, reply))

    connection.send(("ready", os.getpid()))
    with ThreadPoolExecutor(threads, thread_name_prefix="worker") as pool:
        while True:
            try:
                message = connection.recv()
            except (EOFError, OSError):
                break
            if message is None:
                break
            pool.submit(run, *message)
