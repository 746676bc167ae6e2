"""The simulated clock shared by the Azure simulator and the local Functions host.

Simulated time runs `time_scale` times faster than real time, so hours of encryption pass in seconds. The clock
is anchored by a pair (simulated instant, real instant); persisting that pair lets a restarted process continue
the same timeline, including the time that passed while it was down, as a real cloud would.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta


@dataclass(frozen=True)
class ClockAnchor:
    """A point where simulated and real time are known to coincide."""

    simulated_epoch_seconds: float
    real_epoch_seconds: float
    time_scale: float

    def to_json(self) -> dict[str, float]:
        return {
            "simulatedEpochSeconds": self.simulated_epoch_seconds,
            "realEpochSeconds": self.real_epoch_seconds,
            "timeScale": self.time_scale,
        }

    @classmethod
    def from_json(cls, data: dict[str, float]) -> ClockAnchor:
        return cls(
            simulated_epoch_seconds=float(data["simulatedEpochSeconds"]),
            real_epoch_seconds=float(data["realEpochSeconds"]),
            time_scale=float(data["timeScale"]),
        )


class SimClock:
    """Simulated UTC time: `now()` advances `time_scale` simulated seconds per real second.

    `advance()` jumps the timeline forward (tests use it to skip waits without sleeping).
    """

    def __init__(self, time_scale: float = 1.0, *, anchor: ClockAnchor | None = None) -> None:
        if anchor is None:
            real_now = time.time()
            anchor = ClockAnchor(real_now, real_now, time_scale)
        elif anchor.time_scale != time_scale:
            # Re-anchor at the current simulated instant so the timeline stays continuous at the new speed.
            anchor = ClockAnchor(_simulated_at(anchor, time.time()), time.time(), time_scale)
        if time_scale <= 0:
            raise ValueError("time_scale must be positive")
        self._anchor = anchor

    @property
    def time_scale(self) -> float:
        return self._anchor.time_scale

    @property
    def anchor(self) -> ClockAnchor:
        return self._anchor

    def timestamp(self) -> float:
        """Simulated POSIX seconds."""
        return _simulated_at(self._anchor, time.time())

    def now(self) -> datetime:
        """Simulated time as an aware UTC datetime."""
        return datetime.fromtimestamp(self.timestamp(), tz=UTC)

    def advance(self, simulated_seconds: float) -> None:
        """Move the simulated timeline forward without waiting."""
        if simulated_seconds < 0:
            raise ValueError("the clock does not run backwards")
        anchor = self._anchor
        self._anchor = ClockAnchor(
            anchor.simulated_epoch_seconds + simulated_seconds, anchor.real_epoch_seconds, anchor.time_scale
        )

    def real_seconds_until(self, simulated_instant: datetime | float) -> float:
        """Real seconds to wait until the simulated clock reaches `simulated_instant` (0 if already past)."""
        target = simulated_instant.timestamp() if isinstance(simulated_instant, datetime) else simulated_instant
        return max(0.0, (target - self.timestamp()) / self.time_scale)

    def real_seconds(self, simulated_seconds: float) -> float:
        return simulated_seconds / self.time_scale

    async def sleep(self, simulated_seconds: float) -> None:
        await asyncio.sleep(self.real_seconds(max(0.0, simulated_seconds)))

    async def sleep_until(self, simulated_instant: datetime | float) -> None:
        # Re-check after waking: advance() may have moved the target closer while we slept.
        while (delay := self.real_seconds_until(simulated_instant)) > 0:
            await asyncio.sleep(min(delay, 0.25))

    def in_seconds(self, simulated_seconds: float) -> datetime:
        return self.now() + timedelta(seconds=simulated_seconds)


def _simulated_at(anchor: ClockAnchor, real_seconds: float) -> float:
    return anchor.simulated_epoch_seconds + (real_seconds - anchor.real_epoch_seconds) * anchor.time_scale
