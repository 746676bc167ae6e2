"""Binding parameters and invoking functions as the Python worker does.

Trigger payloads go through the `azure.functions` converters the worker uses (`meta.Datum` in, converter
`decode`/`encode`), so a function receives exactly what it would receive on Azure: `func.HttpRequest`,
`func.EventGridEvent`/`func.CloudEvent` (chosen by `specversion`), the activity input decoded with the Durable
JSON codec, `func.OrchestrationContext(body)`, and the durable client binding as the JSON string the `DFApp`
middleware turns into a `DurableOrchestrationClient`. A parameter named `context` receives a `func.Context`.

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
from azure.functions import meta
from azure.functions._abc import RetryContext, TraceContext

from sandbox.host.app_loader import FunctionInfo

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


def _converter(binding_type: str) -> Any:
    registry: Any = meta.get_binding_registry()  # type: ignore[no-untyped-call]
    return registry.get(binding_type)


def decode(binding_type: str, datum: meta.Datum) -> Any:
    converter = _converter(binding_type)
    if converter is None:
        raise ValueError(f"no converter for {binding_type} bindings")
    return converter.decode(datum, trigger_metadata={})


def encode(binding_type: str, value: Any) -> meta.Datum:
    converter = _converter(binding_type)
    if converter is None:
        raise ValueError(f"no converter for {binding_type} bindings")
    datum: meta.Datum = converter.encode(value, expected_type=None)
    return datum


class FunctionInvoker:
    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        worker_pool: ThreadPoolExecutor,
        app_directory: str,
        client_binding: Any,
    ) -> None:
        self._loop = loop
        self._pool = worker_pool
        self._app_directory = app_directory
        self._client_binding = client_binding  # Callable[[dict[str, Any]], str]: the durable client binding JSON

    def _arguments(self, info: FunctionInfo, trigger_value: Any, invocation_id: str) -> dict[str, Any]:
        arguments: dict[str, Any] = {info.trigger_parameter: trigger_value}
        for binding in info.input_bindings("durableClient"):
            arguments[str(binding["name"])] = self._client_binding(binding)
        if "context" in info.parameter_names and "context" not in arguments:
            arguments["context"] = InvocationContext(invocation_id, info.name, self._app_directory)
        return arguments

    async def invoke(self, info: FunctionInfo, trigger_value: Any) -> Any:
        """Run a function from the event loop; raises FunctionFailedError when it raises (already logged)."""
        invocation_id = str(uuid.uuid4())
        arguments = self._arguments(info, trigger_value, invocation_id)
        try:
            if info.is_async:
                return await info.user_function(**arguments)
            return await self._loop.run_in_executor(self._pool, functools.partial(info.user_function, **arguments))
        except Exception as error:
            failure = FunctionFailedError(info.name, invocation_id, error)
            log.error("Executed 'Functions.%s' (Failed, Id=%s)\n%s", info.name, invocation_id, failure.stack.rstrip())
            raise failure from error

    def invoke_in_worker_thread(self, info: FunctionInfo, trigger_value: Any) -> Any:
        """Run a sync function on the calling worker thread (used for orchestrator episodes)."""
        invocation_id = str(uuid.uuid4())
        return info.user_function(**self._arguments(info, trigger_value, invocation_id))
