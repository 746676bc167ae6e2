"""Persisting the simulated clock's anchor in a state directory, so a restarted process keeps the same timeline.

The host stores the anchor next to its task hub (`clock-anchor.json`); anything else sharing the clock in the same
process (the Azure simulator in `serve`) loads it with `load_clock` from the same directory before starting, and
gets the time that passed while the process was down, as a real cloud would.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from sandbox.clock import ClockAnchor, SimClock

ANCHOR_FILE = "clock-anchor.json"


def load_clock(state_dir: Path, time_scale: float) -> SimClock:
    """The clock of `state_dir` (continuing its timeline), or a new one anchored now; the anchor is saved."""
    anchor = read_anchor(state_dir)
    clock = SimClock(time_scale, anchor=anchor)
    save_anchor(state_dir, clock.anchor)
    return clock


def read_anchor(state_dir: Path) -> ClockAnchor | None:
    path = state_dir / ANCHOR_FILE
    try:
        return ClockAnchor.from_json(json.loads(path.read_text(encoding="utf-8")))
    except FileNotFoundError:
        return None


def save_anchor(state_dir: Path, anchor: ClockAnchor) -> None:
    """Write atomically: a crash leaves either the old anchor or the new one, never half a file."""
    state_dir.mkdir(parents=True, exist_ok=True)
    path = state_dir / ANCHOR_FILE
    temporary = path.with_suffix(".tmp")
    temporary.write_text(json.dumps(anchor.to_json()), encoding="utf-8")
    os.replace(temporary, path)
