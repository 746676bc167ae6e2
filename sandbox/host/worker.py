"""The Azure Functions Python worker's own code, run in the host's process: indexing at start, bindings per call.

At start-up the Python worker imports `function_app.py`, asks its `FunctionApp`/`DFApp` for its functions
(`loader.index_function_app`), then validates each one and builds the metadata it sends to the Functions host
(`loader.process_indexed_function`, which calls `functions.Registry.add_indexed_function` per function: parameter
names against binding names, directions, `context`, and every parameter's annotation against its binding's
converter). A function it refuses fails the worker's start with a `FunctionLoadError`. Per invocation it decodes
each input through the converter that indexing chose (`bindings.meta.from_incoming_proto`) and encodes the return
value through the return binding's converter (`bindings.meta.get_datum`).

This module runs those functions from the pinned `azure-functions-runtime` wheel (the worker's code, pure Python,
see `functions-worker.txt`), which `make install` puts in `<venv>/functions-worker` outside site-packages: it
declares Python >= 3.13 but imports and runs on 3.11. The worker expects gRPC message classes of
FunctionRpc.proto (`protos`); the few it touches are stood in for here, with the proto's field names and enum
numbers, and type-checked as protobuf would. The copies of the worker's own checks that live in its gRPC event
handler (not callable without a gRPC channel) are marked "as the worker's invocation_request does".
"""

from __future__ import annotations

import importlib
import os
import re
import sys
import threading
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from types import ModuleType
from typing import Any, ClassVar

PIN_FILE = Path(__file__).with_name("functions-worker.txt")
PACKAGE = "azure_functions_runtime"
DISTRIBUTION = "azure-functions-runtime"
DIRECTORY_SETTING = "SANDBOX_FUNCTIONS_WORKER_DIR"  # where the wheel was unpacked, when not <venv>/functions-worker


class WorkerUnavailableError(RuntimeError):
    """The worker's code is not installed where the host looks for it."""


def pinned_version() -> str:
    match = re.search(rf"^{DISTRIBUTION}==([0-9A-Za-z.]+)", PIN_FILE.read_text(encoding="utf-8"), re.MULTILINE)
    if match is None:
        raise WorkerUnavailableError(f"{PIN_FILE} pins no {DISTRIBUTION} version")
    return match.group(1)


def worker_directory() -> Path:
    configured = os.environ.get(DIRECTORY_SETTING)
    return Path(configured) if configured else Path(sys.prefix) / "functions-worker"


# --- the gRPC messages the worker builds or reads (FunctionRpc.proto), field for field ------------------------------


def _enum(name: str, values: dict[str, int]) -> Any:
    def check(value: Any) -> int:
        if isinstance(value, str) and value in values:
            return values[value]
        if isinstance(value, int) and not isinstance(value, bool) and -(2**31) <= value < 2**31:
            return int(value)  # proto3 enums are open: any int32 is accepted
        raise TypeError(f"{value!r} is not a valid value of the enum {name}")

    return check


def _of(*types: type) -> Any:
    def check(value: Any) -> Any:
        if not isinstance(value, types) or (isinstance(value, bool) and bool not in types):
            raise TypeError(f"{value!r} has type {type(value).__name__}, but expected one of: {types}")
        return value

    return check


def _map(value_check: Any) -> Any:
    def check(value: Any) -> dict[str, Any]:
        if not isinstance(value, dict) or not all(isinstance(key, str) for key in value):
            raise TypeError(f"{value!r} is not a map with string keys")
        return {key: value_check(item) for key, item in value.items()}

    return check


def _repeated(item_check: Any) -> Any:
    def check(value: Any) -> list[Any]:
        if isinstance(value, str | bytes) or not hasattr(value, "__iter__"):
            raise TypeError(f"{value!r} is not a repeated field value")
        return [item_check(item) for item in value]

    return check


class _Message:
    """A protobuf message: keyword fields only, unknown names refused, values checked against the field's type.

    A field given as None is left unset, as protobuf does; an unset field reads as None (protobuf would give its
    type's default), which nothing here reads.
    """

    FIELDS: ClassVar[dict[str, Any]] = {}
    ONEOF: ClassVar[tuple[str, ...]] = ()

    def __init__(self, **fields: Any) -> None:
        values: dict[str, Any] = {}
        for name, value in fields.items():
            if name not in self.FIELDS:
                raise ValueError(f'Protocol message {type(self).__name__} has no "{name}" field.')
            if value is not None:  # None leaves a field unset, as protobuf does
                values[name] = self.FIELDS[name](value)
        if len([name for name in values if name in self.ONEOF]) > 1:
            raise ValueError(f"{type(self).__name__}: more than one field of a oneof is set")
        object.__setattr__(self, "_values", values)

    def __getattr__(self, name: str) -> Any:
        if name in type(self).FIELDS:
            return self.__dict__["_values"].get(name)
        raise AttributeError(name)

    def WhichOneof(self, group: str) -> str | None:  # noqa: N802 (protobuf's name)
        return next((name for name in self.ONEOF if name in self.__dict__["_values"]), None)

    def fields(self) -> dict[str, Any]:
        return dict(self.__dict__["_values"])

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.__dict__['_values']!r})"


_DIRECTIONS = {"in": 0, "out": 1, "inout": 2}
_DATA_TYPES = {"undefined": 0, "string": 1, "binary": 2, "stream": 3}


class BindingInfo(_Message):
    FIELDS: ClassVar[dict[str, Any]] = {
        "type": _of(str),
        "direction": _enum("BindingInfo.Direction", _DIRECTIONS),
        "data_type": _enum("BindingInfo.DataType", _DATA_TYPES),
        "properties": _map(_of(str)),
    }
    out = _DIRECTIONS["out"]
    inout = _DIRECTIONS["inout"]
    undefined = _DATA_TYPES["undefined"]
    string = _DATA_TYPES["string"]
    binary = _DATA_TYPES["binary"]
    stream = _DATA_TYPES["stream"]


setattr(BindingInfo, "in", _DIRECTIONS["in"])  # a Python keyword, as in the generated class


class RpcRetryOptions(_Message):
    FIELDS: ClassVar[dict[str, Any]] = {
        "max_retry_count": _of(int),
        "delay_interval": _of(timedelta),
        "minimum_interval": _of(timedelta),
        "maximum_interval": _of(timedelta),
        "retry_strategy": _enum("RpcRetryOptions.RetryStrategy", {"exponential_backoff": 0, "fixed_delay": 1}),
    }


class RpcFunctionMetadata(_Message):
    FIELDS: ClassVar[dict[str, Any]] = {
        "name": _of(str),
        "directory": _of(str),
        "script_file": _of(str),
        "entry_point": _of(str),
        "bindings": _map(_of(BindingInfo)),
        "is_proxy": _of(bool),
        "status": _of(object),
        "language": _of(str),
        "raw_bindings": _repeated(_of(str)),
        "function_id": _of(str),
        "managed_dependency_enabled": _of(bool),
        "retry_options": _of(RpcRetryOptions),
        "properties": _map(_of(str)),
    }


class RpcHttp(_Message):
    """The part of RpcHttp the worker reads from an incoming request (Datum.from_typed_data)."""

    FIELDS: ClassVar[dict[str, Any]] = {
        "method": _of(str),
        "url": _of(str),
        "headers": _map(_of(str)),
        "body": lambda value: _of(TypedData)(value),
        "params": _map(_of(str)),
        "query": _map(_of(str)),
    }


class TypedData(_Message):
    FIELDS: ClassVar[dict[str, Any]] = {
        "string": _of(str),
        "json": _of(str),
        "bytes": _of(bytes),
        "stream": _of(bytes),
        "http": _of(RpcHttp),
        "int": _of(int),
        "double": _of(float),
    }
    ONEOF: ClassVar[tuple[str, ...]] = ("string", "json", "bytes", "stream", "http", "int", "double")


class ParameterBinding(_Message):
    FIELDS: ClassVar[dict[str, Any]] = {"name": _of(str), "data": _of(TypedData)}
    ONEOF: ClassVar[tuple[str, ...]] = ("data",)


class _Protos:
    """The `protos` module the worker is handed by its gRPC front end, reduced to what indexing and calls use."""

    BindingInfo = BindingInfo
    RpcRetryOptions = RpcRetryOptions
    RpcFunctionMetadata = RpcFunctionMetadata
    RpcHttp = RpcHttp
    TypedData = TypedData
    ParameterBinding = ParameterBinding


protos = _Protos()


# --- the worker's modules -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class WorkerRuntime:
    version: str
    directory: Path
    loader: ModuleType
    functions: ModuleType
    meta: ModuleType
    out: ModuleType
    validators: ModuleType
    settings: ModuleType
    constants: ModuleType

    @property
    def FunctionLoadError(self) -> type[Exception]:  # noqa: N802 (the worker's class)
        error: type[Exception] = self.functions.FunctionLoadError
        return error


_runtime: WorkerRuntime | None = None
_runtime_lock = threading.Lock()


def runtime() -> WorkerRuntime:
    """Import the pinned worker package from its folder (once per process)."""
    global _runtime
    with _runtime_lock:
        if _runtime is None:
            _runtime = _import_runtime()
        return _runtime


def _import_runtime() -> WorkerRuntime:
    version = pinned_version()
    directory = worker_directory().resolve()
    if not (directory / f"{PACKAGE}-{version}.dist-info").is_dir():
        raise WorkerUnavailableError(
            f"the Functions Python worker's code ({DISTRIBUTION}=={version}) is not installed in {directory}: "
            f"run `make install`, or `pip install --no-deps --only-binary :all: --python-version 3.13 "
            f"--target {directory} -r {PIN_FILE}`"
        )
    loaded = sys.modules.get(PACKAGE)
    if loaded is not None and Path(str(loaded.__file__)).resolve().parents[1] != directory:
        raise WorkerUnavailableError(f"{PACKAGE} is already imported from {loaded.__file__}, not from {directory}")
    if str(directory) not in sys.path:
        sys.path.append(str(directory))

    def module(name: str) -> ModuleType:
        return importlib.import_module(f"{PACKAGE}.{name}")

    found = str(module("version").VERSION)
    if found != version:
        raise WorkerUnavailableError(f"{directory} holds {DISTRIBUTION} {found}; {PIN_FILE.name} pins {version}")
    worker = WorkerRuntime(
        version=version,
        directory=directory,
        loader=module("loader"),
        functions=module("functions"),
        meta=module("bindings.meta"),
        out=module("bindings.out"),
        validators=module("utils.validators"),
        settings=module("utils.app_setting_manager"),
        constants=module("utils.constants"),
    )
    # The worker loads the azure-functions converters before it indexes (worker_init_request).
    worker.meta.load_binding_registry()
    return worker


# --- start-up: indexing -------------------------------------------------------------------------------------------


def script_file_name() -> str:
    """`PYTHON_SCRIPT_FILE_NAME` (default function_app.py), validated as the worker validates it."""
    worker = runtime()
    name = str(
        worker.settings.get_app_setting(
            setting=worker.constants.PYTHON_SCRIPT_FILE_NAME,
            default_value=worker.constants.PYTHON_SCRIPT_FILE_NAME_DEFAULT,
        )
    )
    worker.validators.validate_script_file_name(name)
    return name


@dataclass(frozen=True)
class IndexedFunction:
    """One function as the worker indexed it."""

    function: Any  # the azure.functions `Function` the app registered
    info: Any  # the worker's `functions.FunctionInfo`: input/output/return types, requires_context, has_return
    metadata: RpcFunctionMetadata  # what the worker sends the Functions host: name, bindings, raw_bindings


def index(script: Path) -> list[IndexedFunction]:
    """Index the app as the worker does at start-up: import, find the app, validate every function.

    Raises what the worker raises (`FunctionLoadError` for a function it refuses, `ValueError` for no or several
    function apps, the import's own error). The script's directory must come first on `sys.path`.
    """
    worker = runtime()
    functions = worker.loader.index_function_app(str(script)) or []
    registry = worker.functions.Registry()
    metadata, _ = worker.loader.process_indexed_function(protos, registry, functions, str(script.parent))
    return [
        IndexedFunction(function, registry.get_function(entry.function_id), entry)
        for function, entry in zip(functions, metadata, strict=True)
    ]


# --- invocations: bindings --------------------------------------------------------------------------------------------


def typed_string(value: str) -> TypedData:
    return TypedData(string=value)


def typed_json(value: str) -> TypedData:
    return TypedData(json=value)


def typed_http(
    *,
    method: str,
    url: str,
    headers: dict[str, str],
    query: dict[str, str],
    params: dict[str, str],
    body: bytes,
) -> TypedData:
    return TypedData(
        http=RpcHttp(method=method, url=url, headers=headers, query=query, params=params, body=TypedData(bytes=body))
    )


def decode_argument(info: Any, parameter: str, data: TypedData) -> Any:
    """The Python value of one input, through the converter the worker chose at indexing (`from_incoming_proto`)."""
    worker = runtime()
    type_info = info.input_types[parameter]
    return worker.meta.from_incoming_proto(
        type_info.binding_name,
        ParameterBinding(name=parameter, data=data),
        pytype=type_info.pytype,
        trigger_metadata=None,
        function_name=info.name,
        is_deferred_binding=type_info.deferred_bindings_enabled,
    )


def output_argument() -> Any:
    """What the worker passes for a `func.Out[...]` parameter."""
    return runtime().out.Out()


def encode_result(info: Any, value: Any) -> Any:
    """The function's return value as the worker sends it (a Datum), or None when it has no return binding."""
    worker = runtime()
    if value is not None and not info.has_return:
        # As the worker's invocation_request does, in its words (the missing space included).
        raise RuntimeError("function %s without a $return bindingreturned a non-None value", repr(info.name))
    if info.return_type is None:
        return None
    return worker.meta.get_datum(info.return_type.binding_name, value, info.return_type.pytype)
