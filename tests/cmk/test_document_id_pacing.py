"""The document-id scan's pacing, budgets and id measurement, on a fake clock (no network, no sleeping)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from cmk.document_ids import (
    MAX_THROTTLED_RESPONSES,
    ScanBudget,
    _Found,
    _OutOfBudget,
    _over_limit,
    _Pacer,
)


class FakeTime:
    def __init__(self) -> None:
        self.now = 0.0
        self.slept: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def pacer(ru_per_second: float = 100, seconds: float = 10, page_size: int = 100) -> tuple[_Pacer, FakeTime]:
    fake = FakeTime()
    return _Pacer(ScanBudget(ru_per_second, seconds, page_size), clock=fake.clock, sleep=fake.sleep), fake


def page(charge: float, continuation: str | None = "more") -> dict[str, str]:
    headers = {"x-ms-request-charge": f"{charge:.2f}", "x-ms-item-count": "0"}
    if continuation is not None:
        headers["x-ms-continuation"] = continuation
    return headers


def throttled(retry_after_ms: int) -> dict[str, str]:
    return {"x-ms-retry-after-ms": str(retry_after_ms), "x-ms-substatus": "3200"}


def test_each_page_waits_until_the_ones_before_it_are_paid_for_at_the_budget() -> None:
    scan, fake = pacer(ru_per_second=100)
    for _ in range(4):
        scan.on_response(page(50), {"Documents": []})
    assert fake.now == pytest.approx(2.0)  # 200 RU at 100 RU/s
    assert scan.charged == 200


def test_time_spent_waiting_for_the_service_counts_towards_the_pace() -> None:
    scan, fake = pacer(ru_per_second=100)
    fake.now = 1.0  # the first page took a second to come back: it is already paid for
    scan.on_response(page(50), None)
    assert fake.slept == []


def test_a_page_that_cannot_be_afforded_before_the_deadline_stops_the_scan() -> None:
    scan, fake = pacer(ru_per_second=100, seconds=1)
    with pytest.raises(_OutOfBudget) as stopped:
        scan.on_response(page(150), {"Documents": []})
    assert stopped.value.reason == "time"


def test_the_last_page_of_a_query_never_fails_the_scan_but_the_next_query_does_not_start() -> None:
    scan, fake = pacer(ru_per_second=100, seconds=1)
    scan.on_response(page(150, continuation=None), {"Documents": []})
    assert fake.now == pytest.approx(1.0)
    with pytest.raises(_OutOfBudget):
        scan.check_time()


def test_a_429_halves_the_pace_and_the_page_size_and_the_retry_counts_from_its_wait() -> None:
    scan, fake = pacer(ru_per_second=100, page_size=100)
    scan.on_throttled(throttled(250))  # the SDK sleeps 250 ms and retries the request in place
    assert fake.slept == []
    assert (scan.page_size, scan.pace, scan.throttled) == (50, 50, 1)
    fake.now = 0.3
    scan.on_response(page(10), {"Documents": []})  # the retry, sent at 0.25, is paid for at 50 RU/s
    assert fake.now == pytest.approx(0.25 + 10 / 50)
    for _ in range(6):
        scan.on_throttled(throttled(1))
    assert scan.page_size == 1 and scan.pace == pytest.approx(100 / 8)  # floors


def test_the_raw_response_hook_sees_the_429s_the_sdk_retries() -> None:
    scan, _fake = pacer()
    scan.on_raw_response(SimpleNamespace(http_response=SimpleNamespace(status_code=200, headers={})))
    scan.on_raw_response(SimpleNamespace(http_response=SimpleNamespace(status_code=429, headers=throttled(5))))
    assert scan.throttled == 1


def test_throttling_past_the_time_budget_or_the_429_limit_gives_up() -> None:
    scan, _fake = pacer(seconds=1)
    with pytest.raises(_OutOfBudget) as stopped:
        scan.on_throttled(throttled(5000))
    assert stopped.value.reason == "throttled"
    scan, _fake = pacer(seconds=1000)
    for _ in range(MAX_THROTTLED_RESPONSES):
        scan.on_throttled(throttled(1))
    with pytest.raises(_OutOfBudget):
        scan.on_throttled(throttled(1))


def test_ids_are_measured_in_utf8_bytes_on_every_page_the_service_returns() -> None:
    scan, _fake = pacer()
    scan.measure = _over_limit
    scan.on_response(page(3), {"Documents": [{"id": "é" * 495}, {"id": "x" * 990}]})  # 990 bytes each: allowed
    with pytest.raises(_Found) as found:
        scan.on_response(page(3), {"Documents": [{"id": "short"}, {"id": "é" * 496}]})  # 992 bytes
    assert found.value.document_id == "é" * 496


@pytest.mark.parametrize("values", [("0", "120", "100"), ("100", "0", "100"), ("100", "120", "0")])
def test_budgets_must_be_positive(monkeypatch: pytest.MonkeyPatch, values: tuple[str, str, str]) -> None:
    names = ("CMK_DOCUMENT_ID_SCAN_RU_PER_SECOND", "CMK_DOCUMENT_ID_SCAN_SECONDS", "CMK_DOCUMENT_ID_SCAN_PAGE_SIZE")
    for name, value in zip(names, values, strict=True):
        monkeypatch.setenv(name, value)
    with pytest.raises(ValueError, match="must be positive"):
        ScanBudget.from_settings()


def test_default_budgets() -> None:
    assert ScanBudget.from_settings() == ScanBudget(ru_per_second=100, seconds=120, page_size=100)
