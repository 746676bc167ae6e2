"""Step times from an account orchestration's history, steps on a time axis, remedies, paging and filters, and the
dashboard's files: the pure parts of the status API and the page, without a host."""

from __future__ import annotations

import fnmatch
import re
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import azure.functions as func
import pytest

from cmk.errors import InvalidRequest
from cmk.findings import Code
from cmk.progress import account_parts, account_state, api_time, parse_time, segments, timings_from_history
from cmk.remedies import GENERIC, REMEDIES, remedy, with_remedies
from sandbox.stack import REPO_ROOT
from triggers import dashboard_api, status_api

T0 = "2026-01-05T10:00:00.0000000Z"


def _at(seconds: int) -> str:
    return f"2026-01-05T10:{seconds // 60:02d}:{seconds % 60:02d}.0000000Z"


def _done(name: str, scheduled: int, completed: int, result: Any = None) -> dict[str, Any]:
    event = {"EventType": "TaskCompleted", "FunctionName": name, "ScheduledTime": _at(scheduled)}
    event["Timestamp"] = _at(completed)
    if result is not None:
        event["Result"] = result
    return event


def _timer(created: int, fire_at: int, fired: bool) -> list[dict[str, Any]]:
    events = [{"EventType": "TimerCreated", "Timestamp": _at(created), "FireAt": _at(fire_at)}]
    if fired:
        events.append({"EventType": "TimerFired", "Timestamp": _at(fire_at), "FireAt": _at(fire_at)})
    return events


START = [{"EventType": "ExecutionStarted", "FunctionName": "cmk_account", "Timestamp": T0}]


def test_step_times_of_an_rbac_vault_without_approval() -> None:
    history = [
        *START,
        _done("preflight", 1, 5),
        _done("ensure_identity", 6, 8, {"status": "ready"}),
        _done("grant_key_access", 9, 10, {"propagationWaitSeconds": 600}),
        *_timer(11, 611, fired=True),
        _done("find_older_orchestration", 612, 613),
        _done("enable_cmk", 614, 615),
        _done("poll_operation", 616, 617),
        *_timer(618, 700, fired=True),
        _done("verify_cmk", 701, 702),
    ]
    assert timings_from_history(history) == {
        "startedAt": _at(1),
        "preflightDoneAt": _at(6),
        "identityReadyAt": _at(9),
        "keyAccessReadyAt": _at(612),
        "enableRequestedAt": _at(616),
        "encryptionDoneAt": _at(701),
    }
    # While the role assignment propagates, key access has not ended.
    assert "keyAccessReadyAt" not in timings_from_history(history[:5] + _timer(11, 611, fired=False))


def test_step_times_of_an_approval_pending_then_given() -> None:
    waiting = [
        *START,
        _done("preflight", 1, 5),
        _done("ensure_identity", 6, 8),
        _done("grant_key_access", 9, 10, {"propagationWaitSeconds": 0}),
        *_timer(11, 3000, fired=False),  # the approval's deadline
    ]
    assert timings_from_history(waiting)["keyAccessReadyAt"] == _at(11)
    assert "approvedAt" not in timings_from_history(waiting)
    approved = [
        *waiting,
        {"EventType": "EventRaised", "Name": "approval", "Timestamp": _at(100)},
        _done("preflight", 102, 110),
        _done("enable_cmk", 111, 112),
        _done("poll_operation", 113, 114),
    ]
    timings = timings_from_history(approved)
    assert (timings["approvedAt"], timings["enableRequestedAt"]) == (_at(102), _at(113))


def test_step_times_of_an_account_prepared_ahead_of_its_slot() -> None:
    waiting = [
        *START,
        _done("preflight", 1, 5),
        _done("ensure_identity", 6, 8),
        _done("grant_key_access", 9, 10, {"propagationWaitSeconds": 0}),
        *_timer(11, 311, fired=True),  # reads its lane now and then while it waits
        _done("read_account_instance", 311, 312),
        *_timer(312, 912, fired=False),
    ]
    timings = timings_from_history(waiting)
    assert timings["keyAccessReadyAt"] == _at(11) and "slotGrantedAt" not in timings
    assert "enableRequestedAt" not in timings
    granted = [
        *waiting,
        {"EventType": "EventRaised", "Name": "slot", "Timestamp": _at(500)},
        _done("find_older_orchestration", 501, 502),
        _done("enable_cmk", 503, 504),
        _done("poll_operation", 505, 506),
    ]
    timings = timings_from_history(granted)
    assert (timings["slotGrantedAt"], timings["enableRequestedAt"]) == (_at(501), _at(505))
    assert "approvedAt" not in timings, "the slot is not an approval"
    # The slot given while the account still prepared: kept for the wait, which ends as it begins.
    early = [*waiting[:3], {"EventType": "EventRaised", "Name": "slot", "Timestamp": _at(7)}, *waiting[3:5]]
    early += [_done("find_older_orchestration", 11, 12), _done("enable_cmk", 13, 14), _done("poll_operation", 15, 16)]
    assert timings_from_history(early)["slotGrantedAt"] == _at(11)
    assert timings_from_history(early)["enableRequestedAt"] == _at(15)
    # The slot given while a read of the lane was under way: the orchestration moves on once that read is back.
    during_read = [
        *waiting[:6],
        {"EventType": "EventRaised", "Name": "slot", "Timestamp": _at(311)},
        _done("read_account_instance", 310, 312),
        _done("find_older_orchestration", 312, 313),
        _done("enable_cmk", 314, 315),
        _done("poll_operation", 316, 317),
    ]
    assert timings_from_history(during_read)["slotGrantedAt"] == _at(312)
    steps = segments({**timings, "finishedAt": _at(900)}, "done")
    assert [s["phase"] for s in steps][3:5] == ["waitingForSlot", "enabling"]
    assert segments(timings_from_history(waiting), "waitingForSlot")[-1] == {
        "phase": "waitingForSlot",
        "start": _at(11),
        "end": None,
    }


def test_every_time_the_api_returns_is_utc_with_z() -> None:
    assert api_time(datetime(2026, 1, 5, 10, 0, tzinfo=UTC)) == "2026-01-05T10:00:00Z"
    assert api_time(datetime(2026, 1, 5, 11, 0, tzinfo=timezone(timedelta(hours=1)))) == "2026-01-05T10:00:00Z"
    assert api_time("2026-01-05T10:00:00+00:00") == "2026-01-05T10:00:00Z"
    assert api_time("2026-01-05T10:00:00Z") == "2026-01-05T10:00:00Z"
    assert api_time(None) is None


def test_a_monitor_generation_or_a_reattached_follow_has_no_steps_before_the_encryption_in_its_history() -> None:
    history = [*START, _done("poll_operation", 1, 2), *_timer(3, 60, fired=True), _done("poll_operation", 61, 62)]
    assert timings_from_history(history) == {"startedAt": _at(1)}
    assert timings_from_history(START) == {}


def test_steps_on_a_time_axis() -> None:
    timings = {
        "startedAt": _at(10),
        "preflightDoneAt": _at(20),
        "identityReadyAt": _at(30),
        "keyAccessReadyAt": _at(40),
        "enableRequestedAt": _at(50),
    }
    running = segments(timings, "encrypting", queued_since=_at(0))
    assert [(s["phase"], s["start"], s["end"]) for s in running] == [
        ("queued", _at(0), _at(10)),
        ("preflight", _at(10), _at(20)),
        ("identity", _at(20), _at(30)),
        ("keyAccess", _at(30), _at(40)),
        ("enabling", _at(40), _at(50)),
        ("encrypting", _at(50), None),
    ]
    # Approval-gated: key access is followed by the wait for a decision, which is open while it lasts.
    gated = segments({k: v for k, v in timings.items() if k != "enableRequestedAt"}, "awaitingApproval")
    assert [(s["phase"], s["end"]) for s in gated][-1] == ("awaitingApproval", None)
    # A step the history has not closed yet shows as the phase the orchestration says it is in.
    assert segments({"startedAt": _at(10)}, "waitingForAccount")[-1]["phase"] == "waitingForAccount"
    # Re-attached to an encryption: no preflight of its own.
    assert [s["phase"] for s in segments({"startedAt": _at(10)}, "encrypting")] == ["encrypting"]
    # Azure failed the encryption: the orchestration ended as verification would begin.
    failed = {**timings, "encryptionDoneAt": _at(90), "finishedAt": _at(90)}
    assert [s["phase"] for s in segments(failed, "done")][-1] == "encrypting"
    # An orchestration that was running before the rollout began was not queued by it.
    assert segments(timings, "encrypting", queued_since=_at(15))[0]["phase"] == "preflight"


def test_an_account_state_from_a_report_row_when_no_orchestration_handled_it() -> None:
    account = "/subscriptions/0000/resourceGroups/rg-x/providers/Microsoft.DocumentDB/databaseAccounts/acct-1"
    row = {"accountId": account, "outcome": "Refused", "reason": "ACCOUNT_NOT_FOUND: gone", "findings": ["X"]}
    state = account_state(account, None, now=parse_time(T0), row=row)  # type: ignore[arg-type]
    assert (state["name"], state["subscriptionId"], state["resourceGroup"]) == ("acct-1", "0000", "rg-x")
    assert (state["phase"], state["outcome"], state["reason"]) == ("done", "Refused", "ACCOUNT_NOT_FOUND: gone")
    assert state["findings"] == [{"code": "X", "severity": None, "message": None}]
    assert account_parts("not-an-id/acct") == ("acct", None, None)


def test_every_finding_code_says_what_to_do() -> None:
    assert {code.value for code in Code} <= set(REMEDIES)
    assert remedy("SOMETHING_NEW") == GENERIC
    assert with_remedies([{"code": "KEY_DISABLED", "severity": "blocking", "message": "m"}])[0]["remedy"].startswith(
        "Enable the key"
    )


def _request(**params: str) -> func.HttpRequest:
    return func.HttpRequest(method="GET", url="http://localhost/api/cmk/x", params=params, body=b"")


def test_paging_tokens_and_filters() -> None:
    items = list(range(12))
    page, token = status_api._paged(_request(top="5"), items)
    assert page == [0, 1, 2, 3, 4] and token
    page, token = status_api._paged(_request(top="5", continuationToken=token), items)
    assert page == [5, 6, 7, 8, 9]
    page, token = status_api._paged(_request(top="5", continuationToken=token or ""), items)
    assert page == [10, 11] and token is None
    with pytest.raises(InvalidRequest):
        status_api._paged(_request(continuationToken="%%%"), items)
    filters = status_api.Filters(_request(phase="encrypting,queued", outcome="Refused", search=" Orders "))
    assert filters.phases == {"encrypting", "queued"} and filters.outcomes == {"Refused"} and filters.search == "orders"
    account = "/subscriptions/S1/resourceGroups/rg/providers/Microsoft.DocumentDB/databaseAccounts/cosmos-orders"
    assert filters.matches(account, None, "queued", "Refused")
    assert not filters.matches(account, None, "done", "Refused")
    assert not status_api.Filters(_request(subscription="s2")).matches(account, None, "done", None)
    for bad in ({"phase": "napping"}, {"phase": "Encrypting"}, {"outcome": ""}, {"subscription": "a,,b"}):
        with pytest.raises(InvalidRequest):
            status_api.Filters(_request(**bad))


def test_the_page_names_its_files_with_a_digest_under_any_route_prefix() -> None:
    page = dashboard_api.render_page("https://app.example.net/api/cmk/dashboard/?rollout=x")
    assert 'data-api-base="/api"' in page
    assert re.search(r'src="/api/cmk/dashboard/app\.js\?v=[0-9a-f]{12}"', page)
    assert re.search(r'href="/api/cmk/dashboard/app\.css\?v=[0-9a-f]{12}"', page)
    assert "{{" not in page
    assert 'data-api-base="/v1"' in dashboard_api.render_page("http://localhost/v1/cmk/dashboard")
    # Nothing from elsewhere: no CDN, no inline script or style for the policy to allow.
    assert not re.search(r"https?://", page.replace("http://www.w3.org", ""))
    assert "<script>" not in page and "<style" not in page and " style=" not in page


def test_the_page_and_its_files_weigh_under_300_kb_and_deploy() -> None:
    files = [dashboard_api.DASHBOARD_DIR / name for name in ("index.html", *dashboard_api.ASSETS)]
    assert sum(path.stat().st_size for path in files) < 300 * 1024
    ignored = [
        line.strip()
        for line in (REPO_ROOT / ".funcignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    for path in files:
        relative = path.relative_to(REPO_ROOT).as_posix()
        hits = [p for p in ignored if fnmatch.fnmatch(relative, p) or relative.startswith(p.rstrip("/") + "/")]
        assert not hits, f"{relative} is left out of the deployment by {hits}"
    script = (dashboard_api.DASHBOARD_DIR / "app.js").read_text()
    assert "x-functions-key" in script and "sessionStorage" in script
    assert not re.search(r"\beval\(|new Function\(|innerHTML\s*=", script), "the page builds its DOM from text nodes"
