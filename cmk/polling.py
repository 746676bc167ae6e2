"""When to look again: the waits the orchestrators put between reads, as pure functions of time and settings.

Orchestrators call these with their own clock (`context.current_utc_datetime`), so the waits replay identically.
"""

from __future__ import annotations

# Between two verification reads: customerManagedKeyStatus lags the operation's end by minutes, not hours.
MAX_VERIFY_INTERVAL_SECONDS = 600
# A tenth of the elapsed time: the longer an encryption has run, the less a few minutes' delay in noticing its end
# matters, while the reads per hour fall to 3600 / ceiling.
ELAPSED_FRACTION = 0.1


def monitor_interval_seconds(elapsed_seconds: float, first_seconds: int, ceiling_seconds: int) -> int:
    """The wait before the next status read of an encryption that has run `elapsed_seconds`: a tenth of that,
    between `first_seconds` and `ceiling_seconds`. A 10-minute encryption is noticed within a minute of its end;
    with a 30-minute ceiling a 3-week one costs about 2 reads an hour."""
    return int(min(ceiling_seconds, max(first_seconds, elapsed_seconds * ELAPSED_FRACTION)))


def doubled(interval_seconds: int, ceiling_seconds: int) -> int:
    """Exponential back-off for waits whose end nobody announces (a busy account, a lagging status)."""
    return min(interval_seconds * 2, ceiling_seconds)
