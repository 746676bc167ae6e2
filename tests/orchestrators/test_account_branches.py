"""The per-account orchestrator's branches, driven in milliseconds by the generator harness: a scripted Azure
answers each activity from the orchestration's own clock. What each test asserts is what an operator would read."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import pytest

from cmk.orchestration import AccountInput, OrchestrationConfig
from orchestrators.account import run_account
from tests.orchestrators.harness import START, Activity, Run, drive
from triggers.status_api import _recorded_decision

SUB = "00000000-0000-4000-8000-000000000001"
ACCOUNT = f"/subscriptions/{SUB}/resourceGroups/rg/providers/Microsoft.DocumentDB/databaseAccounts/a"
KEY = "https://kv.vault.azure.net/keys/k"
STATUS_URL = (
    "https://management.azure.com/subscriptions/s/providers/Microsoft.DocumentDB/locations/l/operationsStatus/1"
)
CONFIG: OrchestrationConfig = {
    "pollIntervalSeconds": 60,
    "pollMaxIntervalSeconds": 1800,
    "monitorDeadlineHours": 720,
    "pollsPerGeneration": 10,
    "approvalTimeoutHours": 72,
    "activityMaxAttempts": 4,
    "activityRetrySeconds": 30,
    "busyWaitHours": 24,
    "verifyWindowMinutes": 60,
}


def _input(**request: Any) -> AccountInput:
    return {"request": {"accountId": ACCOUNT, "keyUri": KEY, **request}, "config": dict(CONFIG)}  # type: ignore[typeddict-item]


def _preflight(findings: list[dict[str, str]] | None = None) -> dict[str, Any]:
    blocked = any(f["severity"] == "blocking" for f in findings or [])
    plan = {
        "accountId": ACCOUNT,
        "keyUri": KEY,
        "identity": {"type": "SystemAssigned"},
        "defaultIdentity": "SystemAssignedIdentity",
        "vault": {"id": "/v", "permissionModel": "accessPolicy", "tenantId": "t"},
    }
    return {"accountId": ACCOUNT, "findings": findings or [], "blocked": blocked, "plan": None if blocked else plan}


def _reading(status: str, source: str = "statusUrl", error: dict[str, str] | None = None) -> dict[str, Any]:
    terminal = status.lower() in ("succeeded", "failed", "canceled")
    return {
        "status": status,
        "terminal": terminal,
        "succeeded": status == "Succeeded",
        "error": error,
        "source": source,
        "readError": None,
        "retryAfterSeconds": None,
        "percentComplete": None,
    }


def _operation(status_url: str | None = STATUS_URL) -> dict[str, Any]:
    return {
        "accountId": ACCOUNT,
        "kind": "enableCmk",
        "statusUrl": status_url,
        "locationUrl": None,
        "retryAfterSeconds": None,
        "expectedKeyUri": KEY,
    }


def _enabled(status: str = "accepted", operation: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"status": status, "operation": operation, "provisioningState": "Updating", "detail": status}


class Azure:
    """A scripted Azure: one encryption that ends `encryption` after the key PATCH, a verification that confirms
    `verify_lag` after the end, and overridable answers per activity."""

    def __init__(self, encryption: timedelta, verify_lag: timedelta = timedelta(0)) -> None:
        self.encryption = encryption
        self.verify_lag = verify_lag
        self.patched_at: datetime | None = None

    def ends(self) -> datetime:
        assert self.patched_at is not None
        return self.patched_at + self.encryption

    def activities(self, **overrides: Activity) -> dict[str, Activity]:
        def enable(payload: Any, now: datetime) -> Any:
            if self.patched_at is None:
                self.patched_at = now
                return _enabled("accepted", _operation())
            return _enabled("busy")

        def poll(payload: Any, now: datetime) -> Any:
            return _reading("Succeeded" if now >= self.ends() else "InProgress")

        def verify(payload: Any, now: datetime) -> Any:
            confirmed = now >= self.ends() + self.verify_lag
            return {"verified": confirmed, "detail": "confirmed" if confirmed else "customerManagedKeyStatus is None"}

        answers: dict[str, Activity] = {
            "preflight": lambda payload, now: _preflight(),
            "ensure_identity": lambda payload, now: {"status": "ready", "principalId": "p", "tenantId": "t"},
            "grant_key_access": lambda payload, now: {"changed": True, "propagationWaitSeconds": 0},
            "find_older_orchestration": lambda payload, now: None,
            "enable_cmk": enable,
            "poll_operation": poll,
            "verify_cmk": verify,
        }
        answers.update(overrides)
        return answers


def _run(azure: Azure, orchestration_input: AccountInput | None = None, **kwargs: Any) -> Run:
    activities = kwargs.pop("activities", azure.activities())
    return drive(run_account, orchestration_input or _input(), activities, **kwargs)


def test_a_three_week_encryption_is_followed_to_its_end_at_about_two_reads_an_hour() -> None:
    azure = Azure(timedelta(days=21))
    run = _run(azure)
    assert run.output["outcome"] == "Enabled"
    assert run.count("enable_cmk") == 1
    reads = run.count("poll_operation")
    assert reads / (21 * 24) < 2.3, reads
    noticed = datetime.fromisoformat(run.output["timings"]["encryptionDoneAt"].replace("Z", "+00:00")) - azure.ends()
    assert timedelta(0) <= noticed <= timedelta(minutes=30)
    assert run.generations > 10, "continue_as_new bounds the history"


def test_a_ten_minute_encryption_is_noticed_within_a_minute() -> None:
    azure = Azure(timedelta(minutes=10))
    run = _run(azure)
    noticed = datetime.fromisoformat(run.output["timings"]["encryptionDoneAt"].replace("Z", "+00:00")) - azure.ends()
    assert run.output["outcome"] == "Enabled" and noticed <= timedelta(minutes=1)


def test_past_the_deadline_the_outcome_is_encrypting_not_failed() -> None:
    azure = Azure(timedelta(days=60))
    run = _run(azure)
    assert run.output["outcome"] == "Encrypting"
    assert "goes on in Azure" in run.output["reason"] and "Azure accepted the key PATCH" in run.output["reason"]
    assert run.output["operation"]["statusUrl"] == STATUS_URL, "a new request can follow the same operation"
    assert run.now - START <= timedelta(hours=CONFIG["monitorDeadlineHours"]) + timedelta(minutes=1)


def test_status_reads_that_keep_failing_are_not_an_outcome() -> None:
    azure = Azure(timedelta(hours=5))

    def flaky(payload: Any, now: datetime) -> Any:
        if now < azure.ends():
            raise RuntimeError("Activity function 'poll_operation' failed: ServiceResponseError")
        return _reading("Succeeded")

    run = _run(azure, activities=azure.activities(poll_operation=flaky))
    assert run.output["outcome"] == "Enabled"


def test_a_refused_status_read_is_not_an_outcome_either() -> None:
    azure = Azure(timedelta(hours=2))
    refused = {"refused": {"httpStatus": 403, "code": "AuthorizationFailed", "message": "no"}}

    def sometimes(payload: Any, now: datetime) -> Any:
        return refused if now < azure.ends() else _reading("Succeeded")

    run = _run(azure, activities=azure.activities(poll_operation=sometimes))
    assert run.output["outcome"] == "Enabled"


def test_azure_reporting_the_operation_failed_is_failed_with_its_message() -> None:
    azure = Azure(timedelta(hours=1))
    failed = _reading("Failed", error={"code": "LargeDocumentIdFound", "message": "an id is over 990 bytes"})

    def poll(payload: Any, now: datetime) -> Any:
        return failed if now >= azure.ends() else _reading("InProgress")

    run = _run(azure, activities=azure.activities(poll_operation=poll))
    assert run.output["outcome"] == "Failed" and "LargeDocumentIdFound" in run.output["reason"]


def test_a_verification_that_lags_by_20_minutes_ends_enabled() -> None:
    run = _run(Azure(timedelta(hours=1), verify_lag=timedelta(minutes=20)))
    assert run.output["outcome"] == "Enabled"
    assert run.count("verify_cmk") > 1


def test_a_verification_that_never_confirms_fails_after_its_window_saying_the_key_stays() -> None:
    azure = Azure(timedelta(hours=1), verify_lag=timedelta(days=1))
    run = _run(azure)
    assert run.output["outcome"] == "Failed"
    assert "cannot be removed" in run.output["reason"] and "CMK_VERIFY_WINDOW_MINUTES" in run.output["reason"]
    waited = run.now - azure.ends()
    assert timedelta(minutes=30) <= waited <= timedelta(minutes=CONFIG["verifyWindowMinutes"] + 1)


def test_a_lost_reply_then_busy_follows_the_account_and_never_patches_twice() -> None:
    azure = Azure(timedelta(hours=3))
    answers = iter([_enabled("uncertain"), _enabled("busy")])

    def enable(payload: Any, now: datetime) -> Any:
        if azure.patched_at is None:
            azure.patched_at = now  # the first attempt reached Azure; its reply was lost
        return next(answers)

    def poll(payload: Any, now: datetime) -> Any:
        assert payload["operation"]["statusUrl"] is None, "no status URL is known: follow the account itself"
        if now >= azure.ends():
            return _reading("Succeeded", source="account")
        return _reading("Updating", source="account")

    run = _run(azure, activities=azure.activities(enable_cmk=enable, poll_operation=poll))
    assert run.output["outcome"] == "Enabled"
    assert run.count("enable_cmk") == 2


def test_an_account_that_went_idle_without_the_key_is_patched_then() -> None:
    """Following an operation that was not ours (the account was busy): when it ends without the key, the enable
    step decides again and sends the PATCH."""
    azure = Azure(timedelta(hours=1))
    other_ends = START + timedelta(hours=2)
    not_applied = _reading("Failed", source="account", error={"code": "NotApplied", "message": "idle without key"})

    def enable(payload: Any, now: datetime) -> Any:
        if now < other_ends:
            return _enabled("busy")
        azure.patched_at = now
        return _enabled("accepted", _operation())

    def poll(payload: Any, now: datetime) -> Any:
        if payload["operation"]["statusUrl"] is None:
            return not_applied if now >= other_ends else _reading("Updating", source="account")
        return _reading("Succeeded" if now >= azure.ends() else "InProgress")

    run = _run(azure, activities=azure.activities(enable_cmk=enable, poll_operation=poll))
    assert run.output["outcome"] == "Enabled"
    assert run.count("enable_cmk") == 2


def test_a_key_patch_refused_by_azure_before_anything_applied_is_failed() -> None:
    refused = {
        "refused": {"httpStatus": 400, "code": "BadRequest", "message": "Cannot update CMK and other properties"}
    }
    run = _run(
        Azure(timedelta(hours=1)), activities=Azure(timedelta(hours=1)).activities(enable_cmk=lambda p, n: refused)
    )
    assert run.output["outcome"] == "Failed"
    assert "Azure refused the key PATCH: HTTP 400" in run.output["reason"]


def _busy(message: str = "Account a is Updating") -> dict[str, Any]:
    return _preflight([{"code": "ACCOUNT_BUSY", "severity": "blocking", "message": message}])


def test_a_busy_account_is_waited_for_then_enabled() -> None:
    free_at = START + timedelta(hours=5)
    azure = Azure(timedelta(hours=1))
    preflight: Callable[[Any, datetime], Any] = lambda p, now: _busy() if now < free_at else _preflight()  # noqa: E731
    run = _run(azure, activities=azure.activities(preflight=preflight))
    assert run.output["outcome"] == "Enabled"
    assert any((s or {}).get("phase") == "waitingForAccount" for s in run.statuses)


def test_an_account_busy_past_the_busy_wait_is_refused_and_nothing_is_changed() -> None:
    azure = Azure(timedelta(hours=1))
    run = _run(azure, activities=azure.activities(preflight=lambda p, now: _busy()))
    assert run.output["outcome"] == "Refused" and "CMK_BUSY_WAIT_HOURS" in run.output["reason"]
    assert run.count("enable_cmk") == 0 and run.count("ensure_identity") == 0
    assert timedelta(hours=CONFIG["busyWaitHours"]) - timedelta(hours=1) <= run.now - START
    assert run.now - START <= timedelta(hours=CONFIG["busyWaitHours"])


def test_busy_together_with_another_blocker_is_refused_at_once() -> None:
    both = _preflight(
        [
            {"code": "ACCOUNT_BUSY", "severity": "blocking", "message": "busy"},
            {"code": "CASSANDRA_NOT_SUPPORTED", "severity": "blocking", "message": "cassandra"},
        ]
    )
    run = _run(Azure(timedelta(hours=1)), activities=Azure(timedelta(hours=1)).activities(preflight=lambda p, n: both))
    assert run.output["outcome"] == "Refused" and run.now == START


@pytest.mark.parametrize(
    ("events", "reason"),
    [
        ({}, "No approval before"),
        ({"approval": (timedelta(hours=1), {"approved": False, "comment": "not today"})}, "not today"),
    ],
)
def test_approval_that_times_out_or_is_rejected_is_refused_before_the_key_patch(
    events: dict[str, tuple[timedelta, Any]], reason: str
) -> None:
    run = _run(Azure(timedelta(hours=1)), _input(approval="required"), events=events)
    assert run.output["outcome"] == "Refused" and reason in run.output["reason"]
    assert run.count("enable_cmk") == 0


def test_an_approval_runs_preflight_again_before_the_key_patch() -> None:
    azure = Azure(timedelta(hours=1))
    run = _run(azure, _input(approval="required"), events={"approval": (timedelta(hours=3), {"approved": True})})
    assert run.output["outcome"] == "Enabled"
    assert run.count("preflight") == 2
    assert azure.patched_at is not None and azure.patched_at >= START + timedelta(hours=3)


def test_the_deciders_comment_outlives_continue_as_new() -> None:
    # A week-long encryption continues as new many times: the approval's history goes, its comment must not.
    decision = {"approved": True, "comment": "change 4711", "by": {"objectId": "o-1", "displayName": "Ana"}}
    run = _run(
        Azure(timedelta(days=7)), _input(approval="required"), events={"approval": (timedelta(hours=1), decision)}
    )
    assert run.output["outcome"] == "Enabled" and run.generations > 10
    assert run.inputs[-1]["request"]["decisionComment"] == "change 4711"
    assert _recorded_decision(run.output, run.inputs[-1]["request"]) == {
        "approved": True,
        "by": run.output["approvedBy"],
        "comment": "change 4711",
    }


def test_a_reattach_follows_the_given_operation_without_any_patch() -> None:
    azure = Azure(timedelta(hours=4))
    azure.patched_at = START - timedelta(hours=2)
    orchestration_input = _input()
    orchestration_input["reattach"] = _operation()  # type: ignore[typeddict-item]
    run = _run(azure, orchestration_input)
    assert run.output["outcome"] == "Enabled"
    assert run.count("enable_cmk") == 0 and run.count("preflight") == 0


def test_a_younger_orchestration_of_the_same_account_waits_for_the_older_before_any_patch() -> None:
    """Two starters raced and both started one: the younger sends no PATCH while the older runs, then reads the
    account, finds the key applied, and verifies."""
    azure = Azure(timedelta(hours=2))
    azure.patched_at = START + timedelta(minutes=5)  # the older orchestration's PATCH
    older_until = azure.ends() + timedelta(minutes=10)

    def older(payload: Any, now: datetime) -> Any:
        return "cmk-a-000000000000.older" if now < older_until else None

    def enable(payload: Any, now: datetime) -> Any:
        assert now >= older_until, "no enable attempt while the older orchestration runs"
        return {"status": "applied", "operation": None, "provisioningState": "Succeeded", "detail": "applied"}

    run = _run(azure, activities=azure.activities(find_older_orchestration=older, enable_cmk=enable))
    assert run.output["outcome"] == "Enabled"
    assert run.count("enable_cmk") == 1
    assert any("is enabling this account" in ((s or {}).get("detail") or "") for s in run.statuses)
