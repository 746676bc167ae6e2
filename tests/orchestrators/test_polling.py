"""The waits between reads (cmk.polling): prompt for short encryptions, about 2 reads an hour for long ones."""

from __future__ import annotations

from cmk.polling import doubled, monitor_interval_seconds


def reads_over(seconds: float, first: int = 60, ceiling: int = 1800) -> int:
    elapsed, reads = 0.0, 0
    while elapsed < seconds:
        elapsed += monitor_interval_seconds(elapsed, first, ceiling)
        reads += 1
    return reads


def test_the_wait_is_a_tenth_of_the_elapsed_time_within_its_bounds() -> None:
    assert monitor_interval_seconds(0, 60, 1800) == 60
    assert monitor_interval_seconds(3000, 60, 1800) == 300
    assert monitor_interval_seconds(10 * 86400, 60, 1800) == 1800


def test_a_three_week_encryption_costs_about_two_reads_an_hour() -> None:
    hours = 21 * 24
    assert reads_over(hours * 3600) / hours < 2.1


def test_a_ten_minute_encryption_is_read_every_minute() -> None:
    assert reads_over(600) == 10


def test_doubling_stops_at_its_ceiling() -> None:
    assert [doubled(v, 600) for v in (60, 300, 400, 600)] == [120, 600, 600, 600]
