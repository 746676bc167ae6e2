"""When to look again: the waits the orchestrators put between reads, as pure functions of time and settings.

Orchestrators call these with their own clock (`context.current_utc_datetime`), so the waits replay identically.
"""

from __future__ import annotations

import math

# Between two verification reads: customerManagedKeyStatus lags the operation's end by minutes, not hours.
MAX_VERIFY_INTERVAL_SECONDS = 600

# How promptly the monitor notices an encryption's end: within 2 minutes for one under an hour, within 10 minutes
# for a longer one. An encryption still running after an hour is a long one, so the budget follows the elapsed time.
SHORT_ENCRYPTION_SECONDS = 3600
NOTICE_SHORT_SECONDS = 120
NOTICE_LONG_SECONDS = 600
# The first minutes are read at the first interval: Azure fails a key PATCH it cannot carry out (no key access, an
# id over 990 bytes) soon after accepting it, and a failure noticed early frees the rollout's slot early.
EARLY_SECONDS = 180
# Estimates are rough: reads become frequent this share of the expected duration before the expected end, so an
# encryption that ends up to a quarter earlier than expected is still noticed within the budget.
END_WINDOW_SHARE = 0.25
# The read that closes in on the expected end comes this long after it: an encryption that ends when expected is
# noticed seconds, not a whole budget, after its end (in a rollout, the slot it frees goes to the next account).
END_MARGIN_SECONDS = 5
# ... and the read before it this long before the expected end: whichever side of the expected end the encryption
# ends on, two reads 15 s apart bracket it, which is what a rollout learns its estimates from (cmk.fleet).
APPROACH_SECONDS = 10
# Past the expected end the estimate was short, often by a little (a rollout's learned estimates err short on
# purpose: cmk.fleet.estimate_scale): one read this soon after the one at the expected end, then the budget, so an
# end soon after the estimate is noticed soon after it, for one read more.
OVERDUE_FIRST_SECONDS = 15
# Without an estimate: a tenth of the elapsed time. The longer an encryption has run, the less a few minutes' delay
# in noticing its end matters, while the reads per hour fall to 3600 / ceiling.
ELAPSED_FRACTION = 0.1


def notice_budget_seconds(elapsed_seconds: float) -> int:
    """The longest wait that still notices an end in time: 2 minutes in the first hour, 10 minutes after it."""
    return NOTICE_SHORT_SECONDS if elapsed_seconds < SHORT_ENCRYPTION_SECONDS else NOTICE_LONG_SECONDS


def monitor_interval_seconds(
    elapsed_seconds: float, expected_seconds: float | None, first_seconds: int, ceiling_seconds: int
) -> int:
    """The wait before the next status read of an encryption that has run `elapsed_seconds` and is expected to take
    `expected_seconds` in all (None: no estimate).

    Early on, every `first_seconds`. Then, while the expected end is far, rarely: half the time left before the
    window around it opens (at most `ceiling_seconds`), so the reads thin out in the middle of a long encryption and
    close in on the window. In the window, equal steps of at most the notice budget that land just before the
    expected end (APPROACH_SECONDS), then one just after it (END_MARGIN_SECONDS), so an encryption that ends when
    expected is noticed at once; past the expected end (the estimate was short), once OVERDUE_FIRST_SECONDS later,
    then the budget. An encryption that ends in the window or later is noticed within the budget; one that ends
    well before its estimate, within the sparse wait it was in. Without an estimate: the budget in the first hour,
    then a tenth of the elapsed time (a 3-week encryption costs about 2 reads an hour, its end noticed within a
    tenth of it).
    """
    if elapsed_seconds < EARLY_SECONDS:
        return max(1, min(first_seconds, ceiling_seconds))
    budget = min(notice_budget_seconds(elapsed_seconds), ceiling_seconds)
    if expected_seconds is None:
        # Nothing says when it ends: a tenth of the elapsed time, so the reads of a long encryption fall to
        # 3600 / ceiling an hour and its end is noticed within a tenth of its length; in the first hour the budget.
        bound = budget if elapsed_seconds < SHORT_ENCRYPTION_SECONDS else ceiling_seconds
        return int(min(bound, max(first_seconds, elapsed_seconds * ELAPSED_FRACTION)))
    window_opens = expected_seconds * (1 - END_WINDOW_SHARE)
    until_window = window_opens - elapsed_seconds
    if until_window <= budget:
        until_approach = expected_seconds - APPROACH_SECONDS - elapsed_seconds
        if until_approach > 0:
            steps = math.ceil(until_approach / budget)
            return max(1, math.ceil(until_approach / steps))
        until_end = expected_seconds + END_MARGIN_SECONDS - elapsed_seconds
        if until_end > 0:
            return max(1, math.ceil(until_end))
        overdue = elapsed_seconds - expected_seconds
        return min(budget, OVERDUE_FIRST_SECONDS) if overdue < OVERDUE_FIRST_SECONDS else budget
    return int(min(ceiling_seconds, max(budget, until_window / 2)))


def expected_from_progress(elapsed_seconds: float, percent_complete: float | None) -> float | None:
    """The whole duration Azure's own progress implies (`percentComplete` of the operation status, when it carries
    one): elapsed / share done. None when there is no progress to go by."""
    if percent_complete is None or not 0 < percent_complete < 100 or elapsed_seconds <= 0:
        return None
    return elapsed_seconds * 100 / percent_complete


def doubled(interval_seconds: int, ceiling_seconds: int) -> int:
    """Exponential back-off for waits whose end nobody announces (a busy account, a lagging status)."""
    return min(interval_seconds * 2, ceiling_seconds)
