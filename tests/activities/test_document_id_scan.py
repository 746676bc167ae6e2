"""The preflight document-id scan does no harm: low priority, paced under its RU budget, stopped by its time budget
and by throttling, and stopped at the first offender. Against the simulator's data plane, which charges request
units per page, throttles on spare RU/s and synthesizes a million documents lazily.

Time: the product paces itself in real time (time.monotonic / time.sleep) and the simulator charges on its
simulated clock; at time_scale 1 both advance together, so the simulator's ledger measures the product's real RU rate.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from activities.preflight import preflight_activity
from sandbox.azure import AzureSimulator, dataplane
from sandbox.azure import builders as b
from sandbox.azure.testing import IDENTITY_ENV, SYSTEM
from tests.activities.conftest import RG, SUB, build_world

pytestmark = pytest.mark.filterwarnings("ignore::urllib3.exceptions.InsecureRequestWarning")

KEY_URI = "https://kv-cmk-ready.vault.azure.net/keys/cosmos-cmk"
MILLION = 1_000_000
# 100 four-byte and 200 three-byte characters: 300 characters (391 UTF-16 units), 1,000 bytes.
MULTI_BYTE_ID = "\U0001f600" * 100 + "漢" * 200


def _account_id(name: str) -> str:
    return f"/subscriptions/{SUB}/resourceGroups/{RG}/providers/Microsoft.DocumentDB/databaseAccounts/{name}"


ACCOUNT_DATA: dict[str, dict[str, Any]] = {
    "acct-scan-million": {"documentCount": MILLION},
    "acct-scan-first": {
        "databases": {
            "orders": {
                "orders": [{"id": "o" * 1000}] + [{"id": f"order-{index}"} for index in range(5000)],
                "audit": [{"id": "a" * 995}],
            },
            "catalog": {"products": [{"id": "p" * 1010}]},
        }
    },
    "acct-scan-multibyte": {
        "databases": {
            "app": {
                "ascii": [{"id": "x" * 300}, {"id": "short"}],  # 300 characters, 300 bytes: a suspect, not an offender
                "names": [{"id": "n-1"}, {"id": MULTI_BYTE_ID}, {"id": "n-2"}],
                "later": [{"id": "l-1"}],
            }
        }
    },
    "acct-scan-throttled": {"documentCount": 100_000, "spareRuPerSecond": 5},
}


@pytest.fixture(scope="module")
def simulator() -> Iterator[AzureSimulator]:
    world = build_world()
    accounts = [b.cosmos_account(SUB, RG, name) for name in ACCOUNT_DATA]
    world["resources"] += accounts + [b.sql_role_assignment(account, SYSTEM) for account in accounts]
    world["accountData"].update({_account_id(name): data for name, data in ACCOUNT_DATA.items()})
    with pytest.MonkeyPatch.context() as patch, AzureSimulator(world, time_scale=1.0) as simulator:
        for name in IDENTITY_ENV:
            patch.delenv(name, raising=False)
        for name, value in simulator.app_settings().items():
            patch.setenv(name, value)
        yield simulator


def _preflight(simulator: AzureSimulator, account: str) -> dict[str, Any]:
    request = {"accountId": _account_id(account), "keyUri": KEY_URI}
    result: dict[str, Any] = preflight_activity({"request": request, "asOf": simulator.clock.now().isoformat()})
    return result


def _charges(simulator: AzureSimulator, account: str) -> list[dict[str, Any]]:
    with simulator.state.lock:
        return dataplane.request_charges(simulator.state, _account_id(account))


def _finding(result: dict[str, Any], code: str) -> dict[str, Any]:
    found: list[dict[str, Any]] = [finding for finding in result["findings"] if finding["code"] == code]
    assert len(found) == 1, result["findings"]
    return found[0]


def _budget(monkeypatch: pytest.MonkeyPatch, ru_per_second: float, seconds: float, page_size: int = 100) -> None:
    monkeypatch.setenv("CMK_DOCUMENT_ID_SCAN_RU_PER_SECOND", str(ru_per_second))
    monkeypatch.setenv("CMK_DOCUMENT_ID_SCAN_SECONDS", str(seconds))
    monkeypatch.setenv("CMK_DOCUMENT_ID_SCAN_PAGE_SIZE", str(page_size))


def test_a_million_documents_are_scanned_within_the_ru_budget_until_the_time_budget(
    simulator: AzureSimulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    budget = 500.0
    _budget(monkeypatch, budget, 3)
    before = len(simulator.requests())
    result = _preflight(simulator, "acct-scan-million")

    scan = result["documentIds"]
    assert scan["status"] == "unavailable", scan
    warning = _finding(result, "DOCUMENT_ID_SCAN_UNAVAILABLE")
    assert warning["severity"] == "warning" and not result["blocked"]
    assert "3 s time budget after 0 of 1 containers" in warning["message"]
    assert scan["elapsedSeconds"] < 4.5

    charges = _charges(simulator, "acct-scan-million")
    assert charges and {entry["priority"] for entry in charges} == {"Low"}
    assert {entry["status"] for entry in charges} == {200}
    times = [entry["time"] for entry in charges]
    spent = [entry["charge"] for entry in charges]
    largest_page = max(spent)
    # Each request leaves only when the ones before it are paid for at the budget: the RU of all but the last,
    # over the time from the first to the last, is within budget; so is any second of the scan, but for one page.
    rate = sum(spent[:-1]) / (times[-1] - times[0])
    assert 0 < rate <= budget * 1.02, rate
    for start in times:
        in_window = sum(charge for at, charge in zip(times, spent, strict=True) if start <= at < start + 1)
        assert in_window <= budget * 1.02 + largest_page
    # Pages read a bounded slice of the million (the backend's per-page limit): no 500s, nothing materialized.
    assert len(charges) * dataplane.DOCUMENTS_READ_PER_PAGE < MILLION
    assert all(entry["status"] < 500 for entry in simulator.requests(since=before))
    print(f"1M documents: {sum(spent):.0f} RU in {times[-1] - times[0]:.2f} s = {rate:.0f} RU/s (budget {budget:.0f})")


def test_an_id_over_990_characters_is_found_by_top_1_and_the_scan_stops_there(
    simulator: AzureSimulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    _budget(monkeypatch, 100, 30)
    result = _preflight(simulator, "acct-scan-first")

    assert result["blocked"]
    finding = _finding(result, "DOCUMENT_ID_TOO_LONG")
    assert "orders/orders is 1000 bytes (1000 characters)" in finding["message"]
    scan = result["documentIds"]
    assert scan["status"] == "found"
    assert scan["offendingId"] == {"container": "orders/orders", "bytes": 1000, "characters": 1000}
    # One query, one page, one document read: the TOP 1 in the first container. The 5,000 documents after the
    # long id, and the two other containers (which hold offenders too), are never read.
    charges = _charges(simulator, "acct-scan-first")
    assert [(entry["path"], entry["charge"]) for entry in charges] == [
        ("/dbs/orders/colls/orders/docs", dataplane.QUERY_BASE_CHARGE + dataplane.QUERY_CHARGE_PER_DOCUMENT_READ)
    ]


def test_a_300_character_multi_byte_id_over_990_bytes_is_found_by_the_byte_exact_pass(
    simulator: AzureSimulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    _budget(monkeypatch, 100, 30)
    result = _preflight(simulator, "acct-scan-multibyte")

    scan = result["documentIds"]
    assert scan["status"] == "found", scan
    assert scan["offendingId"] == {"container": "app/names", "bytes": 1000, "characters": 300}
    assert "of 248-990 characters" in scan["detail"]
    assert "app/names is 1000 bytes (300 characters)" in _finding(result, "DOCUMENT_ID_TOO_LONG")["message"]
    # First the TOP 1 pass in every container (nothing over 990 characters), then the byte-exact pass, which
    # passes the 300-byte ASCII id and stops in `names`: `later` is never read a second time.
    paths = [entry["path"].split("/")[4] for entry in _charges(simulator, "acct-scan-multibyte")]
    assert paths == ["ascii", "names", "later", "ascii", "names"]


def test_a_throttled_account_gives_the_warning_naming_throttling(
    simulator: AzureSimulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    _budget(monkeypatch, 1000, 2)
    result = _preflight(simulator, "acct-scan-throttled")

    scan = result["documentIds"]
    assert scan["status"] == "unavailable"
    assert not result["blocked"]
    message = _finding(result, "DOCUMENT_ID_SCAN_UNAVAILABLE")["message"]
    assert "throttled (429) by the account" in message and "2 s time budget" in message
    charges = _charges(simulator, "acct-scan-throttled")
    throttled = [entry for entry in charges if entry["status"] == 429]
    # Every 429 reached the scan (the SDK's own retries are off) and was waited out as x-ms-retry-after-ms said:
    # the account (5 spare RU/s, 22.5 RU a page) served about one low-priority page a second.
    assert throttled and scan["throttledResponses"] == len(throttled)
    served = [entry["time"] for entry in charges if entry["status"] == 200]
    assert all(later - earlier >= 0.95 for earlier, later in zip(served, served[1:], strict=False))
    assert scan["elapsedSeconds"] < 3.5
