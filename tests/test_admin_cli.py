"""cmk-admin against the app on the local host: start, watch with progress bars, list, approve, report, errors."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from cmk_admin.cli import bar, main, render, succeeded
from sandbox.azure import builders as b
from sandbox.azure.testing import IDENTITY_ENV, SYSTEM, TENANT
from sandbox.stack import LocalAzureStack

SUB = "5f6a7b8c-9d0e-4f1a-8b2c-3d4e5f6a7b8c"
RG = "rg-cli"
KEY = "https://kv-cli.vault.azure.net/keys/cosmos-cmk"


def _id(name: str) -> str:
    return f"/subscriptions/{SUB}/resourceGroups/{RG}/providers/Microsoft.DocumentDB/databaseAccounts/{name}"


@pytest.fixture(scope="module")
def url() -> Iterator[str]:
    vault = b.key_vault(SUB, RG, "kv-cli", tenant_id=TENANT)
    accounts = [b.cosmos_account(SUB, RG, name) for name in ("cli-one", "cli-two", "cli-three", "cli-four")]
    resources = [
        vault,
        b.vault_key(vault, "cosmos-cmk"),
        *accounts,
        *(b.sql_role_assignment(a, SYSTEM) for a in accounts),
    ]
    with pytest.MonkeyPatch.context() as patch:
        for name in IDENTITY_ENV:
            patch.delenv(name, raising=False)
        with LocalAzureStack(b.world(resources, tenant_id=TENANT), time_scale=1500) as stack:
            yield stack.host_url


def test_enable_with_watch_follows_to_the_outcome(url: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--url", url, "enable", _id("cli-one"), "--key-uri", KEY, "--watch"]) == 0
    printed = capsys.readouterr().out
    assert "cmk-cli-one-" in printed and "outcome Enabled" in printed and "phase" in printed


def test_a_dry_run_rollout_watch_shows_bars_and_the_report_is_saved(
    url: str, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    assert main(["--url", url, "rollout", "--subscription", SUB, "--key-uri", KEY, "--dry-run", "--watch"]) == 0
    printed = capsys.readouterr().out
    rollout_id = printed.splitlines()[0]
    assert "finished" in printed and "[" in printed and "= Planned" in printed
    report = tmp_path / "report.csv"
    assert main(["--url", url, "report", rollout_id, "--output", str(report)]) == 0
    lines = report.read_text().splitlines()
    assert lines[0].startswith("accountId,outcome") and len(lines) == 5


def test_approve_lets_a_waiting_account_through(url: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--url", url, "enable", _id("cli-two"), "--key-uri", KEY, "--approval"]) == 0
    instance_id = capsys.readouterr().out.strip()
    results: list[int] = []
    watcher = threading.Thread(
        target=lambda: results.append(main(["--url", url, "watch", instance_id, "--interval", "0.2"]))
    )
    watcher.start()
    deadline = time.monotonic() + 60
    while main(["--url", url, "approve", instance_id]) != 0:
        assert time.monotonic() < deadline
        time.sleep(0.3)
    watcher.join(timeout=120)
    assert results == [0]
    assert f"{instance_id}: approved" in capsys.readouterr().out


def test_list_and_errors(url: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--url", url, "list", "--all", "--prefix", "cmk-cli-"]) == 0
    assert "cmk-cli-one-" in capsys.readouterr().out
    assert main(["--url", url, "enable", "not-an-account", "--key-uri", KEY]) == 2
    assert "InvalidAccountId" in capsys.readouterr().err


def test_rendering_of_bars_and_rollout_counts() -> None:
    assert bar(1, 4, width=8) == "[##......]  25.0%"
    lines = render(
        {
            "instanceId": "cmk-rollout-x",
            "name": "cmk_rollout",
            "runtimeStatus": "Running",
            "customStatus": {
                "phase": "running",
                "total": 10,
                "lanes": 3,
                "byOutcome": {"Enabled": 4},
                "byPhase": {"encrypting": 3, "queued": 3},
            },
        }
    )
    assert lines[1].strip().startswith("finished") and "4/10" in lines[1]
    assert [line.split()[0] for line in lines[2:4]] == ["queued", "encrypting"]


def test_a_rollout_that_could_not_see_part_of_its_scope_is_shown_and_does_not_succeed() -> None:
    unreadable = {"subscriptionId": "s-2", "code": "SUBSCRIPTION_NOT_READABLE", "message": "grant the app its role"}
    empty = {"subscriptionId": "s-3", "code": "NO_ACCOUNTS_IN_SCOPE", "message": "none match"}
    status: dict[str, Any] = {
        "instanceId": "cmk-rollout-x",
        "name": "cmk_rollout",
        "runtimeStatus": "Completed",
        "customStatus": {"phase": "done", "total": 1, "byOutcome": {"Enabled": 1}},
        "output": {"total": 1, "totals": {"Enabled": 1}, "discovery": {"scopeFindings": [unreadable, empty]}},
    }
    lines = render(status)
    assert "  ! SUBSCRIPTION_NOT_READABLE: grant the app its role" in lines
    assert "  ! NO_ACCOUNTS_IN_SCOPE: none match" in lines
    assert not succeeded(status)
    status["output"]["discovery"]["scopeFindings"] = [empty]
    assert succeeded(status)
