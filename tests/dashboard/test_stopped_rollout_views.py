"""A rollout that was terminated or failed has a reason for its output, a string, and no report: its views still
answer (the fuzz test met a 500 on the timeline of a rollout it had terminated)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from coordination import fleet_status
from triggers.status_api import timeline

STARTED = datetime(2026, 11, 2, 8, 0, tzinfo=UTC)
NOW = STARTED + timedelta(minutes=5)


def _stopped(status: str, output: str) -> dict[str, Any]:
    started = STARTED.isoformat().replace("+00:00", "Z")
    return {
        "instanceId": "cmk-rollout-stopped",
        "runtimeStatus": status,
        "createdTime": started,
        "lastUpdatedTime": NOW.isoformat().replace("+00:00", "Z"),
        "customStatus": {"phase": "running", "startedAt": started, "total": 0, "done": 0, "lanes": 0},
        # The Durable API hands the input back as the JSON text the client posted.
        "input": '{"request": {"accounts": [], "dryRun": true, "keyUri": "https://kv.vault.azure.net/keys/k"}}',
        "output": output,
    }


@pytest.mark.parametrize(
    ("status", "output"),
    [
        ("Terminated", "Stopped by an admin"),
        ("Failed", "Orchestrator function 'cmk_rollout' failed: boom"),
    ],
)
def test_the_timeline_and_header_of_a_stopped_rollout_answer_without_a_finish_time(status: str, output: str) -> None:
    view = fleet_status.RolloutView(rollout=_stopped(status, output), accounts=[], now=NOW, lanes=0)
    assert view.finished
    drawn = timeline(view)
    assert drawn["endSeconds"] is None and drawn["nowSeconds"] == 300.0 and drawn["accounts"] == []
    header = fleet_status.rollout_summary(view)
    assert header["runtimeStatus"] == status and header["dryRun"] is True and header["timings"] is None
