"""Binding parameters and invoking functions as the Python worker does, with the worker's own binding code.

Each input goes through `sandbox.host.worker.decode_argument` (the worker's `from_incoming_proto`, with the
converter the worker chose when it indexed the function), so a function receives exactly what it would receive on
Azure: `func.HttpRequest`, `func.EventGridEvent`/`func.CloudEvent` (chosen by `specversion`), the activity input
decoded with the Durable JSON codec, `func.OrchestrationContext(body)`, and the durable client binding as the JSON
string the `DFApp` middleware turns into a `DurableOrchestrationClient`. `context` is passed when the worker's
index says the function requires it, `func.Out` parameters get the worker's `Out`. The return value goes through
`sandbox.host.worker.encode_result` (the worker's `get_datum`): a function without a return binding that returns
something fails, as does a value the return binding's converter cannot encode.

Async functions run on the host's event loop (the SDK's aiohttp session is module-global and bound to one loop);
sync functions run in the worker thread pool.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import threading
import traceback
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import azure.functions as func
from azure.functions._abc import RetryContext, TraceContext

from sandbox.host import worker
from sandbox.host.app_loader import DURABLE_CLIENT, FunctionInfo

log = logging.getLogger("sandbox.host")


class _TraceContext(TraceContext):
    @property
    def trace_state(self) -> str:
        return ""

    @property
    def trace_parent(self) -> str:
        return ""

    @property
    def attributes(self) -> dict[str, str]:
        return {}


class _RetryContext(RetryContext):
    @property
    def retry_count(self) -> int:
        return 0

    @property
    def max_retry_count(self) -> int:
        return 0

    @property
    def exception(self) -> Any:
        return None


class InvocationContext(func.Context):
    """The `context` parameter of a function invocation."""

    _thread_local = threading.local

    def __init__(self, invocation_id: str, function_name: str, function_directory: str) -> None:
        self._invocation_id = invocation_id
        self._function_name = function_name
        self._function_directory = function_directory

    @property
    def invocation_id(self) -> str:
        return self._invocation_id

    @property
    def thread_local_storage(self) -> type[threading.local]:
        return self._thread_local

    @property
    def function_name(self) -> str:
        return self._function_name

    @property
    def function_directory(self) -> str:
        return self._function_directory

    @property
    def trace_context(self) -> TraceContext:
        return _TraceContext()

    @property
    def retry_context(self) -> RetryContext:
        return _RetryContext()


class FunctionFailedError(Exception):
    """A function raised; carries what the host reports about it."""

    def __init__(self, function_name: str, invocation_id: str, error: BaseException) -> None:
        super().__init__(f"{type(error).__name__}: {error}")
        self.function_name = function_name
        self.invocation_id = invocation_id
        self.error = error
        self.stack = "".join(traceback.format_exception(error))


class FunctionInvoker:
    def __init__(
        self,
        loop: asyncio.AbstractEventLoop | None,
        worker_pool: ThreadPoolExecutor | None,
        app_directory: str,
        client_binding: Any,
    ) -> None:
        """`loop` and `worker_pool` are needed by `invoke` only (a worker process calls `invoke_in_worker_thread`)."""
        self._loop = loop
        self._pool = worker_pool
        self._app_directory = app_directory
        self._client_binding = client_binding  # Callable[[dict[str, Any]], str]: the durable client binding JSON

    def _arguments(self, info: FunctionInfo, trigger: worker.TypedData, invocation_id: str) -> dict[str, Any]:
        facts = info.worker_info
        arguments: dict[str, Any] = {
            info.trigger_parameter: worker.decode_argument(facts, info.trigger_parameter, trigger)
        }
        for binding in info.input_bindings(DURABLE_CLIENT):
            name = str(binding["name"])
            arguments[name] = worker.decode_argument(facts, name, worker.typed_string(self._client_binding(binding)))
        if facts.requires_context:
            arguments["context"] = InvocationContext(invocation_id, info.name, self._app_directory)
        for name in facts.output_types:
            arguments[name] = worker.output_argument()
        return arguments

    async def invoke(self, info: FunctionInfo, trigger: worker.TypedData) -> Any:
        """Run a function from the event loop and return its encoded result (a Datum, or None without a return
        binding); raises FunctionFailedError when the input cannot be decoded, the function raises or its result
        cannot be encoded (already logged)."""
        invocation_id = str(uuid.uuid4())
        assert self._loop is not None
        try:
            arguments = self._arguments(info, trigger, invocation_id)
            if info.is_async:
                returned = await info.user_function(**arguments)
            else:
                returned = await self._loop.run_in_executor(
                    self._pool, functools.partial(info.user_function, **arguments)
                )
            return worker.encode_result(info.worker_info, returned)
        except Exception as error:
            failure = FunctionFailedError(info.name, invocation_id, error)
            log.error("Executed 'Functions.%s' (Failed, Id=%s)\n%s", info.name, invocation_id, failure.stack.rstrip())
            raise failure from error

    def invoke_in_worker_thread(self, info: FunctionInfo, trigger: worker.TypedData) -> Any:
        """Run a sync function on the calling worker thread (orchestrator episodes); returns its encoded result and
        raises what the function raises."""
        invocation_id = str(uuid.uuid4())
        returned = info.user_function(**self._arguments(info, trigger, invocation_id))
        return worker.encode_result(info.worker_info, returned)
