"""Suite-wide order: the longest files first.

`make test` runs the files on two xdist workers (`--dist loadfile`), which take the files in collection order as
they free up. Collected alphabetically, the longest files (the fuzz run, the chaos run) came last, and one worker ran
on alone for a minute after the other had finished. Handing out the longest first (LPT scheduling) keeps both busy
to the end. The list holds the files that took longest in a full run (`--durations`, junit times); a file missing
from it keeps its place after them, so a stale list costs balance, never tests.
"""

from __future__ import annotations

import pytest

LONGEST_FIRST = (
    "tests/test_api_fuzz.py",
    "tests/test_chaos.py",
    "tests/orchestrations/test_true_outcomes.py",
    "tests/orchestrations/test_sovereign_clouds.py",
    "tests/orchestrations/test_account_orchestration.py",
    "tests/orchestrations/test_rollout_overlaps.py",
    "tests/orchestrations/test_rollouts.py",
    "tests/infra/test_fleet_access_in_simulator.py",
    "tests/orchestrations/test_enrolment.py",
    "tests/orchestrations/test_rollout_cap.py",
    "tests/orchestrations/test_permissions.py",
    "tests/dashboard/test_dashboard_browser.py",
    "tests/orchestrations/test_fleet_scale.py",
    "tests/sandbox/azure/test_azsim_persistence.py",
    "tests/orchestrations/test_restart.py",
    "tests/orchestrations/test_demo.py",
    "tests/test_access.py",
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    rank = {path: index for index, path in enumerate(LONGEST_FIRST)}
    # A stable sort: each file's tests stay together and in their own order.
    items.sort(key=lambda item: rank.get(item.nodeid.split("::", 1)[0], len(rank)))
