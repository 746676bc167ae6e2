"""Proof by fuzzing: schemathesis, driven by the app's own /api/openapi.json, against the local host with function
keys required, every check on, positive and negative data, bounded and seeded.

The run is in-process (schemathesis' engine, the one its CLI runs), its requests go over HTTP to the local host
running function_app.py against the simulator. What it must show:

- at least MIN_REQUESTS requests across every operation of the document;
- no response is a 5xx, and every response conforms to the document (status code, content type, headers, body
  schema), as every other check of schemathesis holds (schema-valid requests accepted, schema-violating ones
  refused, undeclared methods 405 with Allow, requests without a key 401);
- no invalid request started an orchestration: every orchestration in the host's task hub descends from one whose
  id a schema-valid request was answered with; and nothing was written to Azure (the simulator's request log has no
  PUT, PATCH, POST or DELETE under /subscriptions: the world holds no account any generated request can name).

The figures are printed (`-s` shows them) and kept in FuzzFigures for the assertions.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import requests
import schemathesis
import schemathesis.engine
from hypothesis import strategies as st
from schemathesis.config import SchemathesisConfig
from schemathesis.engine import events

from sandbox.azure import builders as b
from sandbox.azure.testing import IDENTITY_ENV, TENANT
from sandbox.host.store import _encode_token
from sandbox.stack import LocalAzureStack
from triggers.instances_api import encode_continuation

SEED = 20261130
MIN_REQUESTS = 1000
# Examples per operation and phase, from the number of operations: a run sends about 2 requests per example and
# operation, plus the coverage phase's, so about TARGET_REQUESTS are spread over whatever the document holds.
TARGET_REQUESTS = 1100
SUB = "6c0d2e4f-1a3b-4c5d-8e9f-0a1b2c3d4e5f"
RG = "rg-fuzz-7q"
KEY = "https://kv-fuzz-7q.vault.azure.net/keys/cosmos-cmk"
START_ROUTES = {"POST /cmk/accounts", "POST /cmk/rollouts"}
WRITE_METHODS = {"PUT", "PATCH", "POST", "DELETE"}


def _world() -> dict[str, Any]:
    vault = b.key_vault(SUB, RG, "kv-fuzz-7q", tenant_id=TENANT)
    # No generated account id can name this account (its group and name are outside what the patterns produce
    # from the seed), so a schema-valid start reaches preflight and ends Refused: it never writes.
    account = b.cosmos_account(SUB, RG, "fuzz-account-never-named-9x")
    return b.world([vault, b.vault_key(vault, "cosmos-cmk"), account], tenant_id=TENANT)


@dataclass
class FuzzFigures:
    seconds: float = 0.0
    requests: int = 0
    by_operation: Counter[str] = field(default_factory=Counter)
    by_status: Counter[int] = field(default_factory=Counter)
    failures: list[dict[str, Any]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    # Instance ids a start route answered 202 with, by the mode of the request's data.
    started_by_valid: set[str] = field(default_factory=set)
    started_by_invalid: set[str] = field(default_factory=set)
    invalid_starts: list[str] = field(default_factory=list)
    orchestrations: int = 0
    orphan_orchestrations: list[str] = field(default_factory=list)
    azure_writes: list[str] = field(default_factory=list)
    # What the host logged as errors while the fuzz ran: the stack of a function that failed (answered 500).
    host_errors: list[str] = field(default_factory=list)

    @property
    def server_errors(self) -> int:
        return sum(count for status, count in self.by_status.items() if status >= 500)

    def summary(self) -> dict[str, Any]:
        return {
            "seconds": round(self.seconds, 1),
            "requests": self.requests,
            "operations": len(self.by_operation),
            "byStatus": dict(sorted(self.by_status.items())),
            "serverErrors": self.server_errors,
            "failures": len(self.failures),
            "orchestrations": self.orchestrations,
            "startedByValidRequests": len(self.started_by_valid),
            "startedByInvalidRequests": len(self.started_by_invalid),
            "orphanOrchestrations": len(self.orphan_orchestrations),
            "azureWrites": len(self.azure_writes),
        }


def _continuation_tokens() -> st.SearchStrategy[str]:
    """Tokens as the API hands them out (a page boundary after some instance id): the document's format."""
    return st.from_regex(r"\A[A-Za-z0-9._:@-]{1,100}\Z").map(
        lambda after: str(encode_continuation(_encode_token(after)))
    )


def max_examples(operations: int) -> int:
    return max(10, math.ceil(TARGET_REQUESTS / max(operations, 1) / 2.2))


def _config(base_url: str, key: str, operations: int) -> SchemathesisConfig:
    return SchemathesisConfig.from_dict(
        {
            "seed": SEED,
            "base-url": base_url,
            # The app runs in functionKey mode here: the key goes as the document's functionKeyHeader scheme, so
            # schemathesis knows it is the credential (ignored_auth sends requests without it and wants a 401).
            "auth": {"openapi": {"functionKeyHeader": {"api_key": key}}},
            "workers": 1,
            "continue-on-failure": True,
            "suppress-health-check": ["all"],
            "generation": {
                "mode": "all",
                "max-examples": max_examples(operations),
                "deterministic": True,
                "database": "none",
            },
            "phases": {"stateful": {"enabled": False}},
            # A body is refused over 1 MiB (413, documented) whatever its schema says: JSON Schema cannot bound a
            # document's bytes, and 10,000 account ids take 1.3 MB.
            "checks": {"positive_data_acceptance": {"expected-statuses": ["2xx", "401", "404", "409", "413"]}},
        }
    )


def run_fuzz(stack: LocalAzureStack) -> FuzzFigures:
    assert stack.host is not None and stack.host.keys is not None
    key = stack.host.keys.default_function
    document = requests.get(f"{stack.host_url}/api/openapi.json", headers={"x-functions-key": key}, timeout=30)
    document.raise_for_status()
    schemathesis.openapi.format("continuation-token", _continuation_tokens())
    operations = sum(len(item) for item in document.json()["paths"].values())
    schema = schemathesis.openapi.from_dict(document.json(), config=_config(f"{stack.host_url}/api", key, operations))
    figures = FuzzFigures()
    started = time.monotonic()
    for event in schemathesis.engine.from_schema(schema).execute():
        if isinstance(event, events.ScenarioFinished | events.FuzzScenarioFinished):
            _record(figures, event.recorder)
        elif isinstance(event, events.NonFatalError | events.FatalError):
            figures.errors.append(repr(getattr(event, "value", None) or getattr(event, "exception", None)))
    figures.seconds = time.monotonic() - started
    _audit(figures, stack)
    return figures


def _record(figures: FuzzFigures, recorder: Any) -> None:
    for case_id, interaction in recorder.interactions.items():
        figures.requests += 1
        figures.by_operation[recorder.label] += 1
        response = interaction.response
        if response is None:
            continue
        figures.by_status[response.status_code] += 1
        if recorder.label in START_ROUTES and response.status_code == 202:
            node = recorder.cases.get(case_id)
            meta = node.value.meta if node is not None else None
            negative = meta is not None and _invalid(meta)
            instance_id = json.loads(response.content or b"{}").get("id")
            (figures.started_by_invalid if negative else figures.started_by_valid).add(str(instance_id))
            if negative and meta is not None:
                figures.invalid_starts.append(
                    f"{interaction.request.method} {interaction.request.uri} {meta.phase} "
                    f"{(interaction.request.body or b'')[:300]!r} {dict(interaction.request.headers)}"
                )

    for case_id, checks in recorder.checks.items():
        for check in checks:
            if check.failure_info is None:
                continue
            interaction = recorder.interactions.get(case_id)
            figures.failures.append(
                {
                    "operation": recorder.label,
                    "check": check.name,
                    "title": check.failure_info.failure.title,
                    "status": interaction.response.status_code if interaction and interaction.response else None,
                    "request": f"{interaction.request.method} {interaction.request.uri}" if interaction else None,
                    "body": (interaction.request.body or b"")[:50000].decode(errors="replace") if interaction else None,
                }
            )


def _invalid(meta: Any) -> bool:
    """Whether schemathesis made the request invalid where the document constrains it: the body, a path or query
    parameter, or the Content-Type. A header the document does not name (schemathesis adds
    `x-schemathesis-unknown-property`) does not make a request invalid: clients, proxies and the platform add
    headers of their own."""
    data = getattr(meta.phase, "data", None)
    for location, info in meta.components.items():
        if not info.mode.is_negative:
            continue
        if location.name in ("BODY", "PATH", "QUERY"):
            return True
        if location.name == "HEADER" and str(getattr(data, "parameter", "") or "").lower() == "content-type":
            return True
    return False


def _audit(figures: FuzzFigures, stack: LocalAzureStack) -> None:
    """Every orchestration descends from one a valid request started; nothing was written to Azure."""
    assert stack.host is not None
    parents: dict[str, str | None] = {}
    for instance_id in stack.host.instance_ids():
        status = stack.host.instance(instance_id) or {}
        parents[instance_id] = status.get("parentInstanceId")
    figures.orchestrations = len(parents)
    for instance_id in parents:
        root = instance_id
        while parents.get(root):
            root = str(parents[root])
        if root not in figures.started_by_valid:
            figures.orphan_orchestrations.append(instance_id)
    figures.azure_writes = [
        f"{r['method']} {r['path']}"
        for r in stack.simulator.requests()
        if r["method"] in WRITE_METHODS
        and r["path"].lower().startswith("/subscriptions/")
        and "/providers/microsoft.resourcegraph/" not in r["path"].lower()
    ]


class _HostErrors(logging.Handler):
    """Collects what the local host logs at ERROR (a failed function's stack), for the assertion messages: the
    module's fixture runs the fuzz, so pytest would show its captured log only with a failure of the first test."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@pytest.fixture(scope="module")
def fuzzed() -> Iterator[FuzzFigures]:
    with pytest.MonkeyPatch.context() as patch:
        for name in IDENTITY_ENV:
            patch.delenv(name, raising=False)
        settings = {"CMK_KEY_POLICY": json.dumps({"default": KEY}), "CMK_DOCUMENT_ID_SCAN": "false"}
        host_errors = _HostErrors()
        logging.getLogger("sandbox.host").addHandler(host_errors)
        try:
            with LocalAzureStack(_world(), require_keys=True, settings=settings) as stack:
                figures = run_fuzz(stack)
                figures.host_errors = host_errors.messages
                print(f"\nschemathesis against the local host: {json.dumps(figures.summary())}")
                yield figures
        finally:
            logging.getLogger("sandbox.host").removeHandler(host_errors)


def test_the_fuzz_covers_every_operation_with_enough_requests(fuzzed: FuzzFigures) -> None:
    assert not fuzzed.errors, fuzzed.errors
    assert fuzzed.requests >= MIN_REQUESTS, fuzzed.summary()
    document = json.loads(Path("triggers/openapi.json").read_text())
    operations = {f"{method.upper()} {path}" for path, item in document["paths"].items() for method in item}
    assert set(fuzzed.by_operation) == operations


def test_no_response_is_a_server_error(fuzzed: FuzzFigures) -> None:
    assert fuzzed.server_errors == 0, (fuzzed.by_status, fuzzed.host_errors[:3])


def test_every_response_conforms_and_every_check_holds(fuzzed: FuzzFigures) -> None:
    assert fuzzed.failures == [], json.dumps(fuzzed.failures[:10], indent=1)


def test_no_invalid_request_started_an_orchestration_or_wrote_to_azure(fuzzed: FuzzFigures) -> None:
    assert fuzzed.started_by_invalid == set(), fuzzed.invalid_starts[:5]
    assert fuzzed.orphan_orchestrations == [], fuzzed.orphan_orchestrations[:10]
    assert fuzzed.azure_writes == [], fuzzed.azure_writes[:10]
    assert fuzzed.started_by_valid, "valid starts were generated too: the audit has something to check"
