"""A rollout that has run longer than its status-refresh loop has continued as new, and Azure then shows a new
createdTime for it (azure-functions-durable-extension #2088; the local host does the same). The views measure the
rollout from when it started, which its custom status says: the timeline's axis, an account's time queued, the
rollout's header and the order of the rollout list."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from cmk.progress import account_state
from coordination import fleet_status
from triggers.status_api import timeline

STARTED = datetime(2026, 11, 2, 8, 0, tzinfo=UTC)
# Sixteen hours of refreshes later, the rollout continued as new: Azure's createdTime is now that moment.
CONTINUED = STARTED + timedelta(hours=16)
NOW = CONTINUED + timedelta(hours=1)
ACCOUNT = (
    "/subscriptions/00000000-0000-0000-0000-000000000001/resourceGroups/rg/providers/Microsoft.DocumentDB"
    "/databaseAccounts/{}"
)


def _iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def _rollout(instance_id: str, started: datetime, created: datetime) -> dict[str, Any]:
    return {
        "instanceId": instance_id,
        "runtimeStatus": "Running",
        "createdTime": _iso(created),
        "lastUpdatedTime": _iso(NOW),
        "customStatus": {"phase": "running", "startedAt": _iso(started), "total": 2, "done": 0, "lanes": 1},
        "input": {"request": {"accounts": [], "dryRun": False}},
        "output": None,
    }


def _encrypting(name: str, began: datetime) -> Any:
    instance = {
        "instanceId": f"cmk-{name}",
        "runtimeStatus": "Running",
        "customStatus": {"phase": "encrypting"},
        "createdTime": _iso(CONTINUED),  # its monitor, too, has continued as new
    }
    timings = {
        "startedAt": _iso(began),
        "preflightDoneAt": _iso(began + timedelta(minutes=1)),
        "identityReadyAt": _iso(began + timedelta(minutes=2)),
        "keyAccessReadyAt": _iso(began + timedelta(minutes=12)),
        "enableRequestedAt": _iso(began + timedelta(minutes=12)),
    }
    return account_state(ACCOUNT.format(name), instance, now=NOW, timings=timings)


def test_the_timeline_of_a_rollout_that_continued_as_new_starts_where_the_rollout_started() -> None:
    rollout = _rollout("cmk-rollout-long", STARTED, CONTINUED)
    queued = account_state(
        ACCOUNT.format("waiting"), None, now=NOW, queued_since=fleet_status.rollout_started_at(rollout)
    )
    view = fleet_status.RolloutView(
        rollout=rollout, accounts=[_encrypting("early", STARTED + timedelta(hours=2)), queued], now=NOW, lanes=1
    )
    drawn = timeline(view)
    assert drawn["start"] == _iso(STARTED)
    assert drawn["nowSeconds"] == (NOW - STARTED).total_seconds()
    rows = {row["name"]: row for row in drawn["accounts"]}
    # An account that began two hours in is on the axis at 7,200 s, not dropped as "before the rollout began".
    assert rows["early"]["segments"][0][:2] == ["preflight", 7200]
    assert rows["early"]["segments"][-1][0] == "encrypting" and rows["early"]["segments"][-1][2] is None
    # Its monitor continued as new since (a newer createdTime): its step times still say when it began.
    assert view.accounts[0]["timings"]["startedAt"] == _iso(STARTED + timedelta(hours=2))
    # The account still queued has waited since the rollout started, 17 hours, not since it last continued.
    assert rows["waiting"]["segments"] == [["queued", 0, None]]
    assert drawn["phaseTotals"]["queued"]["seconds"] == (NOW - STARTED).total_seconds()


def test_the_rollout_header_and_list_show_when_each_rollout_started() -> None:
    long_running = _rollout("cmk-rollout-long", STARTED, CONTINUED)
    later = _rollout("cmk-rollout-later", STARTED + timedelta(hours=3), STARTED + timedelta(hours=3))
    view = fleet_status.RolloutView(rollout=long_running, accounts=[], now=NOW, lanes=1)
    assert fleet_status.rollout_summary(view)["createdTime"] == _iso(STARTED)
    listed = fleet_status.rollouts_newest_first([long_running, later])
    assert [r["instanceId"] for r in listed] == ["cmk-rollout-later", "cmk-rollout-long"]


def test_a_rollout_written_before_its_status_said_when_it_started_falls_back_to_its_later_input_or_created_time() -> (
    None
):
    following = _rollout("cmk-rollout-old", STARTED, CONTINUED)
    following["customStatus"] = {"phase": "running"}
    following["input"] = {"request": {}, "following": {"timings": {"startedAt": _iso(STARTED)}}}
    assert fleet_status.rollout_started_at(following) == _iso(STARTED)
    first_generation = {**following, "input": {"request": {}}}
    assert fleet_status.rollout_started_at(first_generation) == _iso(CONTINUED)
