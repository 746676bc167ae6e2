"""Rollout discovery through Resource Graph against the simulator: scope filters, paging past one page, named
accounts (found or not), and encryption estimates read from Azure Monitor."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any

import pytest

from activities.discover_accounts import discover_accounts_activity
from activities.estimate_encryption import estimate_encryption_activity
from cmk.arm_pacing import PACER, ArmPacer
from cmk.fleet import expected_encryption_seconds
from cmk.rollouts import next_estimate_batch
from sandbox.azure import AzureSimulator
from sandbox.azure import builders as b
from sandbox.azure.testing import IDENTITY_ENV, TENANT
from sandbox.stack import FROZEN_TIME_SCALE

SUB_A = "1f2e3d4c-5b6a-4978-8695-a4b3c2d1e0f9"
SUB_B = "2a3b4c5d-6e7f-4a8b-9c0d-1e2f3a4b5c6d"
FLEET = 1050


def _account(subscription: str, group: str, index: int) -> dict[str, Any]:
    tags = {"env": "prod" if index % 3 else "dev"}
    return b.cosmos_account(subscription, group, f"fleet-{index:04d}", tags=tags)


@pytest.fixture(scope="module")
def fleet() -> Iterator[tuple[AzureSimulator, list[dict[str, Any]]]]:
    accounts = [_account(SUB_A, "rg-fleet-a" if i % 2 else "rg-fleet-b", i) for i in range(FLEET)]
    accounts += [_account(SUB_B, "rg-other", FLEET + i) for i in range(5)]
    data = {accounts[0]["id"]: {"dataSizeGiB": 50, "spareRuPerSecond": 500}}
    with _app_against(b.world(accounts, tenant_id=TENANT, account_data=data)) as simulator:
        yield simulator, accounts


@contextmanager
def _app_against(
    world: dict[str, Any], *, throttling: bool = False, time_scale: float = 1.0
) -> Iterator[AzureSimulator]:
    """The simulator (throttling off unless asked), and the app's settings pointing at it (no identity from this
    machine)."""
    with (
        pytest.MonkeyPatch.context() as patch,
        AzureSimulator(
            world, time_scale=time_scale, settings_overrides={"throttling": {"enabled": throttling}}
        ) as simulator,
    ):
        for name in IDENTITY_ENV:
            patch.delenv(name, raising=False)
        for name, value in simulator.app_settings().items():
            patch.setenv(name, value)
        yield simulator


def test_a_subscription_scope_pages_through_resource_graph(fleet: tuple[AzureSimulator, list[dict[str, Any]]]) -> None:
    simulator, accounts = fleet
    discovery = discover_accounts_activity({"scope": {"subscriptions": [SUB_A]}})
    found = {a["accountId"].lower() for a in discovery["accounts"]}
    assert found == {str(a["id"]).lower() for a in accounts if SUB_A in a["id"]}
    assert discovery["resourceGraphPages"] == 2
    graph_calls = [r for r in simulator.requests() if "Microsoft.ResourceGraph" in r["path"]]
    assert len(graph_calls) == 2


def test_scope_filters_on_resource_groups_and_tags(fleet: tuple[AzureSimulator, list[dict[str, Any]]]) -> None:
    _, accounts = fleet
    scope = {"subscriptions": [SUB_A, SUB_B], "resourceGroups": ["RG-FLEET-A"], "tags": {"env": "dev"}}
    discovery = discover_accounts_activity({"scope": scope})
    expected = {
        str(a["id"]).lower() for a in accounts if "/rg-fleet-a/" in a["id"].lower() and a["tags"]["env"] == "dev"
    }
    assert {a["accountId"].lower() for a in discovery["accounts"]} == expected
    assert all(a["tags"]["env"] == "dev" for a in discovery["accounts"])


def test_named_accounts_are_found_and_missing_ones_reported(fleet: tuple[AzureSimulator, list[dict[str, Any]]]) -> None:
    _, accounts = fleet
    missing = f"/subscriptions/{SUB_B}/resourceGroups/rg-other/providers/Microsoft.DocumentDB/databaseAccounts/ghost"
    named = [str(accounts[0]["id"]), str(accounts[-1]["id"]).upper().replace("/PROVIDERS/", "/providers/"), missing]
    discovery = discover_accounts_activity({"accounts": named})
    assert {a["accountId"].lower() for a in discovery["accounts"]} == {named[0].lower(), named[1].lower()}
    assert [m.lower() for m in discovery["missing"]] == [missing.lower()]


def _estimates(account_ids: list[str], at: datetime) -> dict[str, Any]:
    """One estimate round as the rollout orchestrator calls it (orchestrators.rollout._estimate_encryptions)."""
    payload = {"accounts": account_ids, "armPacing": {"at": at.isoformat(), "key": "rollout/estimate_encryption"}}
    result: dict[str, Any] = estimate_encryption_activity(payload)
    return result


@pytest.fixture
def fresh_pacer(monkeypatch: pytest.MonkeyPatch) -> None:
    """This process's ARM buckets as a newly started worker's (other tests in the process have spent them)."""
    for name, value in vars(ArmPacer()).items():
        monkeypatch.setattr(PACER, name, value)


@pytest.mark.usefixtures("fresh_pacer")
def test_estimates_come_from_data_size_and_spare_throughput(fleet: tuple[AzureSimulator, list[dict[str, Any]]]) -> None:
    simulator, accounts = fleet
    discovery = discover_accounts_activity({"accounts": [str(accounts[0]["id"]), str(accounts[1]["id"])]})
    assert all("expectedSeconds" not in a for a in discovery["accounts"])  # read in rounds, within the budget
    result = _estimates([a["accountId"] for a in discovery["accounts"]], simulator.clock.now())
    by_id = {account_id.lower(): seconds for account_id, seconds in result["estimates"].items()}
    big = by_id[str(accounts[0]["id"]).lower()]
    default = by_id[str(accounts[1]["id"]).lower()]
    assert big == pytest.approx(expected_encryption_seconds(50 * 2**30, 500))
    assert big > default
    assert result["retryAfterSeconds"] == 0


@pytest.mark.usefixtures("fresh_pacer")
def test_a_large_fleets_estimates_are_read_in_rounds_within_arms_read_budget_without_a_429(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # 1,000 accounts in one subscription and 20 in another, ARM's real buckets (250 reads, 25 a second): read at
    # once, as discovery did, 750 of the reads were answered 429 and those accounts planned on the default.
    many = [_account(SUB_A, "rg-many", i) for i in range(1000)]
    few = [_account(SUB_B, "rg-few", 2000 + i) for i in range(20)]
    data = {str(a["id"]): {"dataSizeGiB": 1 + i % 7, "spareRuPerSecond": 400} for i, a in enumerate(many + few)}
    monkeypatch.setenv("CMK_ARM_READS_PER_SECOND", "20")
    world = b.world(many + few, tenant_id=TENANT, account_data=data)
    # Simulated time moves only by the rounds' waits (simulator.advance), not with this machine's speed.
    with _app_against(world, throttling=True, time_scale=FROZEN_TIME_SCALE) as simulator:
        first = len(simulator.requests())
        started = simulator.clock.timestamp()
        pending = [str(a["id"]) for a in many + few]
        estimates: dict[str, float] = {}
        rounds = 0
        while pending:
            rounds += 1
            assert rounds < 40, "the rounds make no progress"
            result = _estimates(next_estimate_batch(pending), simulator.clock.now())
            estimates.update(result["estimates"])
            pending = [a for a in pending if a not in estimates]
            if pending:
                assert result["retryAfterSeconds"] > 0
                simulator.advance(result["retryAfterSeconds"])
        took = simulator.clock.timestamp() - started
        statuses = [
            entry["status"]
            for entry in simulator.requests(first)
            if "/microsoft.insights/metrics" in entry["path"].lower()
        ]
    assert statuses.count(429) == 0
    assert len(statuses) == 1020  # one metrics read per account, none twice
    assert all(
        estimates[str(a["id"])] == pytest.approx(expected_encryption_seconds((1 + i % 7) * 2**30, 400))
        for i, a in enumerate(many + few)
    )
    # Not slower than the app's budget allows: its 200-read burst, then 20 reads a second for the other 800 in the
    # busy subscription (the few in the other subscription in the first round), plus a round's wake.
    assert 800 / 20 <= took <= 800 / 20 + 6


SUB_UNREADABLE = "3b4c5d6e-7f8a-4b9c-8d0e-2f3a4b5c6d7e"
SUB_NO_ACCOUNTS = "4c5d6e7f-8a9b-4cad-9e1f-3a4b5c6d7e8f"
SUB_UNKNOWN = "5d6e7f8a-9bac-4dbe-8f20-4b5c6d7e8f90"


def test_a_scope_subscription_the_app_cannot_read_is_reported_not_silently_dropped() -> None:
    # Resource Graph answers from the subscriptions the caller may read and leaves the others out without an
    # error: the rollout must say which subscriptions of its scope it could not see, and why.
    readable = b.cosmos_account(SUB_A, "rg-a", "seen")
    hidden = b.cosmos_account(SUB_UNREADABLE, "rg-hidden", "hidden")
    vault = b.key_vault(SUB_NO_ACCOUNTS, "rg-keys", "kv-central", tenant_id=TENANT)
    world = b.world([readable, hidden, vault], tenant_id=TENANT)
    world["resources"] = [
        body
        for body in world["resources"]
        if not (
            "/providers/Microsoft.Authorization/roleAssignments/" in body["id"]
            and body["id"].lower().startswith(f"/subscriptions/{SUB_UNREADABLE}/")
        )
    ]
    scope = {"subscriptions": [SUB_A, SUB_UNREADABLE, SUB_NO_ACCOUNTS, SUB_UNKNOWN]}
    with _app_against(world):
        discovery = discover_accounts_activity({"scope": scope})
    assert [a["accountId"].lower() for a in discovery["accounts"]] == [str(readable["id"]).lower()]
    findings = {f["subscriptionId"]: f for f in discovery["scopeFindings"]}
    assert {s: f["code"] for s, f in findings.items()} == {
        SUB_UNREADABLE: "SUBSCRIPTION_NOT_READABLE",
        SUB_NO_ACCOUNTS: "NO_ACCOUNTS_IN_SCOPE",
        SUB_UNKNOWN: "SUBSCRIPTION_NOT_FOUND",
    }
    # Azure's own refusal names the action to grant.
    assert "Microsoft.DocumentDB/databaseAccounts/read" in findings[SUB_UNREADABLE]["message"]


@pytest.mark.usefixtures("fresh_pacer")
def test_a_query_whose_connection_is_reset_is_sent_again() -> None:
    """A Resource Graph query is a POST, which azure-core does not resend after a reset connection; it only reads,
    so the app's clients do."""
    account = b.cosmos_account(SUB_A, "rg-a", "reset-once")
    with _app_against(b.world([account], tenant_id=TENANT)) as simulator:
        simulator.add_fault({"path": "Microsoft.ResourceGraph", "kind": "reset", "count": 2})
        discovery = discover_accounts_activity({"scope": {"subscriptions": [SUB_A]}})
        graph_calls = [r for r in simulator.requests() if "Microsoft.ResourceGraph" in r["path"]]
    assert [a["accountId"].lower() for a in discovery["accounts"]] == [str(account["id"]).lower()]
    assert [call["status"] for call in graph_calls][:3] == [0, 0, 200]
