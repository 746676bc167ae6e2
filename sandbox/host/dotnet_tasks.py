"""The .NET task model the replay (`orchestration_replay.py`) runs on, and the exceptions of the .NET code it emulates.

The Durable extension drives an orchestration in C#: `async` methods awaiting `Task`s that DTFx completes as history
events arrive. Here a `DtTask` is that `Task`, whose completion runs its continuations inline as DTFx's synchronous
task scheduler does; `start` runs a Python coroutine standing in for a C# async method, keeping C#'s rule that an
`async` method never throws synchronously (its exceptions land in its task); `when_all`/`when_any` are
`Task.WhenAll`/`Task.WhenAny` (the first never fails fast, the second throws synchronously on an empty list);
`CancellationSource` is a `CancellationTokenSource` (sources: DTFx `TaskOrchestrationContext.cs`, .NET's `Task`).
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine, Generator
from typing import Any


class ShimError(Exception):
    """An exception raised by emulated .NET code."""


class TaskFailedError(ShimError):
    """DTFx TaskFailedException / SubOrchestrationFailedException."""


class TaskCanceledError(ShimError):
    pass


class ArgumentError(ShimError):
    """.NET ArgumentException."""


class InvalidOperationError(ShimError):
    pass


class NonDeterminismError(ShimError):
    def __init__(self, message: str) -> None:
        super().__init__(f"Non-Deterministic workflow detected: {message}")


class OrchestrationFailure(ShimError):
    """Extension OrchestrationFailureException: becomes the failed instance's output (reason) and details."""

    def __init__(self, reason: str, details: str | None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.details = details


# Task states as plain ints: the replay touches them on every event, and Enum attribute access is slow.
_PENDING = 0
_SUCCEEDED = 1
_FAULTED = 2


class DtTask:
    """A .NET Task whose completion runs continuations inline, as DTFx's synchronous scheduler does."""

    __slots__ = ("_callbacks", "_error", "_result", "_state")

    def __init__(self) -> None:
        self._state = _PENDING
        self._result: Any = None
        self._error: BaseException | None = None
        self._callbacks: list[Callable[[DtTask], None]] = []

    @property
    def done(self) -> bool:
        return self._state != _PENDING

    @property
    def faulted(self) -> bool:
        return self._state == _FAULTED

    @property
    def error(self) -> BaseException | None:
        return self._error

    @property
    def result(self) -> Any:
        return self._result

    def try_set_result(self, value: Any) -> bool:
        if self._state != _PENDING:
            return False
        self._state, self._result = _SUCCEEDED, value
        self._run_callbacks()
        return True

    def try_set_exception(self, error: BaseException) -> bool:
        if self._state != _PENDING:
            return False
        self._state, self._error = _FAULTED, error
        self._run_callbacks()
        return True

    def add_done_callback(self, callback: Callable[[DtTask], None]) -> None:
        if self._state != _PENDING:
            callback(self)
        else:
            self._callbacks.append(callback)

    def _run_callbacks(self) -> None:
        callbacks, self._callbacks = self._callbacks, []
        for callback in callbacks:
            callback(self)

    def __await__(self) -> Generator[DtTask, None, Any]:
        if self._state == _PENDING:
            yield self
        if self._state == _FAULTED:
            assert self._error is not None
            raise self._error
        return self._result


def start(coroutine: Coroutine[DtTask, None, Any]) -> DtTask:
    """Run an emulated C# async method until its first incomplete await; its outcome lands in the task."""
    task = DtTask()

    def step(_: DtTask | None = None) -> None:
        try:
            awaited = coroutine.send(None)
        except StopIteration as stop:
            task.try_set_result(stop.value)
            return
        except Exception as error:  # an async method's exceptions belong to its task
            task.try_set_exception(error)
            return
        awaited.add_done_callback(step)

    step()
    return task


def completed(value: Any = None) -> DtTask:
    task = DtTask()
    task.try_set_result(value)
    return task


def when_all(tasks: list[DtTask]) -> DtTask:
    """`Task.WhenAll`: completes when every task has, faulted if any faulted (it never fails fast)."""
    result = DtTask()
    if not tasks:
        result.try_set_result([])
        return result
    remaining = len(tasks)

    def on_child_done(_: DtTask) -> None:
        nonlocal remaining
        remaining -= 1
        if remaining:
            return
        first_error = next((child.error for child in tasks if child.faulted), None)
        if first_error is not None:
            result.try_set_exception(first_error)
        else:
            result.try_set_result([child.result for child in tasks])

    for child in tasks:
        child.add_done_callback(on_child_done)
    return result


def when_any(tasks: list[DtTask]) -> DtTask:
    """`Task.WhenAny`: completes with the first task to complete; an empty list throws synchronously."""
    if not tasks:
        raise ArgumentError("The tasks argument contains no tasks. (Parameter 'tasks')")
    result = DtTask()

    def on_child_done(child: DtTask) -> None:
        result.try_set_result(child)

    for child in tasks:
        child.add_done_callback(on_child_done)
    return result


class CancellationSource:
    def __init__(self) -> None:
        self.cancelled = False
        self._callbacks: list[Callable[[], None]] = []

    def register(self, callback: Callable[[], None]) -> None:
        if self.cancelled:
            callback()
        else:
            self._callbacks.append(callback)

    def cancel(self) -> None:
        if self.cancelled:
            return
        self.cancelled = True
        for callback in self._callbacks:
            callback()
