"""One list of phases and outcomes: what the orchestration reports is what the API filters on and cmk-admin draws, in
the same order, and cmk-admin still needs nothing beyond the standard library to import it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import get_args

from cmk import orchestration, progress
from cmk.phases import OUTCOMES, PHASES, Outcome, Phase
from cmk_admin.cli import render

ROOT = Path(__file__).resolve().parents[2]


def test_the_orchestration_the_status_api_and_cmk_admin_read_one_list() -> None:
    assert (orchestration.Phase, orchestration.Outcome) == (Phase, Outcome)
    assert progress.PHASES is PHASES and progress.OUTCOMES is OUTCOMES
    assert set(get_args(Phase)) < set(PHASES) and set(get_args(Outcome)) < set(OUTCOMES)
    assert len(set(PHASES)) == len(PHASES) and len(set(OUTCOMES)) == len(OUTCOMES)


def test_cmk_admin_draws_a_rollout_s_phases_in_the_order_accounts_go_through_them() -> None:
    by_phase = {phase: 1 for phase in reversed(PHASES)}
    status = {"instanceId": "r1", "runtimeStatus": "Running", "name": "cmk_rollout", "customStatus": {}}
    status["customStatus"] = {"phase": "running", "total": len(PHASES), "byPhase": by_phase}
    drawn = [line.split()[0] for line in render(status)[2:]]
    assert drawn == list(PHASES)


def test_cmk_admin_imports_with_nothing_but_the_standard_library() -> None:
    """Without site-packages (python -S) any third-party import would fail; the CLI must not need one."""
    code = "import sys; sys.path.insert(0, sys.argv[1]); import cmk_admin.cli; print(' '.join(sorted(sys.modules)))"
    loaded = subprocess.run(
        [sys.executable, "-S", "-c", code, str(ROOT)], capture_output=True, text=True, check=True
    ).stdout.split()
    ours = [name for name in loaded if name.split(".")[0] not in sys.stdlib_module_names and name != "__main__"]
    assert ours == ["cmk", "cmk.phases", "cmk_admin", "cmk_admin.api", "cmk_admin.cli"]
