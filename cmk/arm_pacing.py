"""Pacing ARM by its budget: this process's reads and writes stay under ARM's token buckets, so 429 is the exception.

ARM gives each principal, per subscription and kind of request, a bucket of 250 reads refilled at 25 per second
and 200 writes (and 200 deletes) refilled at 10 per second (docs/azure-cmk-facts.md §4); a rollout that asks
faster is answered 429. Every management client (cmk.clients) sends its requests through `ArmPacingPolicy`,
which keeps a bucket of its own per subscription and kind, sized by app settings below ARM's (headroom for the
principal's other callers) and divided by the processes that run activities at once (instances times their worker
processes), and one for Resource Graph's per-user quota:

- An activity's first request that finds its bucket empty is not sent: the activity returns `throttled` with the
  wait (cmk.arm.arm_outcomes), and the orchestrator sleeps it on a durable timer, as it does a 429. The wait is a
  place in a queue: each paced activity reserves the requests it is expected to send (learned per activity), so
  activities paced together wake one after another, not all at once. Later requests of an activity that has begun
  are sent and counted (the bucket goes into debt, repaid before the next activity starts): an activity is never
  cut in half. Requests sent from an activity's helper threads are counted, never held.
- A batch of independent reads (a rollout's encryption estimates, one Azure Monitor read per account) takes what
  each bucket holds now (`allowance`) and comes back for the rest once it has refilled (`seconds_until`): the
  orchestrator sleeps between rounds, so the batch is never in debt and never throttled.
- What ARM says wins: `x-ms-ratelimit-remaining-subscription-*` (the principal's tokens left, all instances and
  callers counted) lowers the bucket to it, less the headroom, and a 429's Retry-After empties it until then.

Time is the orchestrations' (each ARM activity's payload carries its orchestration's time, `armPacing.at`), never
this process's clock: on Azure it trails real time by the queueing delay, which only makes the pacing cautious;
against the simulator it is the simulated time the simulator's buckets refill on.
"""

from __future__ import annotations

import contextlib
import math
import threading
from collections.abc import Iterator, Mapping
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, NotRequired, TypedDict
from urllib.parse import urlparse

from azure.core.pipeline import PipelineRequest, PipelineResponse
from azure.core.pipeline.policies import HTTPPolicy

from cmk import settings

# ARM's refill per principal and subscription (docs/azure-cmk-facts.md §4); its buckets hold ten seconds of it.
ARM_PER_SECOND = {"reads": 25.0, "writes": 10.0, "deletes": 10.0}
BURST_SECONDS = 10.0
# Resource Graph's own quota: 15 queries per 5-second window per user (docs/azure-cmk-facts.md §4). A bucket of 5
# refilled at 2 a second never sends more than 15 in any 5 seconds.
RESOURCE_GRAPH = "resourceGraph"
RESOURCE_GRAPH_PER_SECOND = 2.0
RESOURCE_GRAPH_BURST = 5.0
TENANT = "tenant"
# What an activity is expected to send in a bucket until it has been seen there (then: a running average). A
# Resource Graph search is one query (a page holds 1,000 rows), and the graph's bucket holds only a few: reserving
# more would hold the callers queued behind it for seconds each.
DEFAULT_REQUESTS_PER_ACTIVITY = 4.0
DEFAULT_GRAPH_QUERIES_PER_ACTIVITY = 1.0
AVERAGE_WEIGHT = 0.2
# Orchestration times this far behind the newest seen belong to another timeline, not to a late activity.
TIMELINE_JUMP_SECONDS = 3600.0
# Callers waiting for their turn in one bucket (beyond it they wait without a place: a burst of thousands).
MAX_RESERVATIONS = 10_000
# Throttled callers wake on whole multiples of this many seconds (see wake_delay_seconds).
WAKE_GRID_SECONDS = 1.0
# A turn not taken this long after it came gives its tokens back. Longer than the wake grid, so a caller back in this
# process on time finds its reservation (given back earlier, its tokens would be spent twice: by others and by it).
UNCLAIMED_TURN_SECONDS = 2 * WAKE_GRID_SECONDS


class PacingInfo(TypedDict):
    """What an orchestrator adds to an ARM activity's payload (orchestrators.steps.call_arm)."""

    at: str  # the orchestration's current time, ISO 8601
    key: str  # the caller: orchestration instance and activity, the same on every attempt
    # The bucket ("<subscription>|<kind>") whose turn the caller waited for: honoured by whichever process the
    # attempt lands on (the Functions host spreads invocations over its worker processes and instances).
    turn: NotRequired[str]


class ArmPaced(Exception):
    """The activity's first request found its bucket empty: nothing was sent; try again in `wait_seconds`."""

    def __init__(self, subscription_id: str, kind: str, wait_seconds: float, *, reserved: bool = True) -> None:
        self.subscription_id = subscription_id
        self.kind = kind
        self.wait_seconds = wait_seconds
        # What the caller's next attempt names (PacingInfo.turn): only a reserved place is a turn; a caller beyond
        # the queue's bound waits without one and queues again.
        self.turn = f"{subscription_id}|{kind}" if reserved else ""
        super().__init__(
            f"paced: this rollout's {kind} in subscription {subscription_id} are at their budget "
            f"(CMK_ARM_{kind.upper()}_PER_SECOND); next in {wait_seconds:g} s"
        )


def request_kind(method: str) -> str:
    upper = method.upper()
    if upper in ("GET", "HEAD"):
        return "reads"
    return "deletes" if upper == "DELETE" else "writes"


def subscription_of(url: str) -> str | None:
    """The subscription an ARM request counts against (None: tenant-level)."""
    parts = urlparse(url).path.split("/")
    if len(parts) > 2 and parts[1].lower() == "subscriptions" and parts[2]:
        return parts[2].lower()
    return None


def bucket_of(url: str, method: str) -> tuple[str, str] | None:
    """(scope, kind) of the bucket a request counts against: a subscription's reads, writes or deletes, or the
    tenant's Resource Graph queries (whatever subscriptions they name); None for what ARM does not meter so."""
    path = urlparse(url).path.lower()
    if path.startswith("/providers/microsoft.resourcegraph/"):
        return TENANT, RESOURCE_GRAPH
    subscription = subscription_of(url)
    return (subscription, request_kind(method)) if subscription is not None else None


@dataclass
class Budget:
    """Per-second rates of the app (all its instances) and of this process (its share), per kind of request."""

    total_per_second: dict[str, float]
    instances: int = 1

    @property
    def per_second(self) -> dict[str, float]:
        shares = {kind: rate / max(1, self.instances) for kind, rate in self.total_per_second.items()}
        return {**shares, RESOURCE_GRAPH: RESOURCE_GRAPH_PER_SECOND / max(1, self.instances)}

    @classmethod
    def from_settings(cls) -> Budget:
        reads = settings.get_float("CMK_ARM_READS_PER_SECOND")
        writes = settings.get_float("CMK_ARM_WRITES_PER_SECOND")
        # ARM's delete bucket has the write bucket's size and refill.
        # Each worker process of each instance keeps its own buckets (this module's state is per process).
        processes = max(1, settings.get_int("CMK_ARM_PACING_INSTANCES")) * max(
            1, settings.get_int("FUNCTIONS_WORKER_PROCESS_COUNT")
        )
        return cls({"reads": reads, "writes": writes, "deletes": writes}, processes)

    def capacity(self, kind: str) -> float:
        if kind == RESOURCE_GRAPH:
            return max(1.0, RESOURCE_GRAPH_BURST / max(1, self.instances))
        return max(1.0, self.per_second[kind] * BURST_SECONDS)


@dataclass
class _Bucket:
    tokens: float
    updated_at: float
    # caller key -> (requests reserved, when its turn comes), in the order the turns come
    reservations: dict[str, tuple[float, float]] = field(default_factory=dict)


@dataclass
class _Caller:
    """The activity running in this context: its pacing info and whether it has sent anything yet."""

    key: str
    activity: str
    turn: str = ""  # the bucket whose turn it waited for (PacingInfo.turn)
    sent: dict[str, int] = field(default_factory=dict)  # (subscription|kind) -> requests sent


_current: ContextVar[_Caller | None] = ContextVar("cmk_arm_pacing_caller", default=None)


class ArmPacer:
    """The process's buckets. Thread-safe: activities run in a thread pool."""

    def __init__(self, budget: Budget | None = None) -> None:
        self._budget = budget
        self._lock = threading.Lock()
        self._buckets: dict[tuple[str, str], _Bucket] = {}
        self._clock = 0.0  # the newest orchestration time seen, POSIX seconds
        self._per_activity: dict[tuple[str, str], float] = {}

    def budget(self) -> Budget:
        return self._budget or Budget.from_settings()

    def observe(self, at: float) -> None:
        with self._lock:
            if at < self._clock - TIMELINE_JUMP_SECONDS:
                # Another timeline (a clock set back, a rehearsal's simulated time started again): start afresh.
                self._buckets.clear()
                self._clock = at
            self._clock = max(self._clock, at)

    @contextlib.contextmanager
    def activity(self, info: PacingInfo | None, activity: str) -> Iterator[None]:
        """Run an activity under its orchestration's pacing info (None: not paced, only counted)."""
        if info is None:
            yield
            return
        self.observe(datetime.fromisoformat(info["at"].replace("Z", "+00:00")).timestamp())
        caller = _Caller(str(info["key"]), activity, str(info.get("turn") or ""))
        token = _current.set(caller)
        try:
            yield
        finally:
            _current.reset(token)
            self._learn(caller)

    def before_send(self, subscription_id: str, kind: str) -> None:
        """Take a token for a request, or raise ArmPaced when it is an activity's first in this bucket."""
        caller = _current.get()
        budget = self.budget()
        rate, capacity = budget.per_second[kind], budget.capacity(kind)
        slot = f"{subscription_id}|{kind}"
        with self._lock:
            bucket = self._refilled(subscription_id, kind, rate, capacity)
            if caller is not None and not caller.sent.get(slot):
                reserved = bucket.reservations.pop(caller.key, None)
                if reserved is not None:
                    bucket.tokens += reserved[0]  # its turn: what it reserved is counted as it sends, from here
                elif caller.turn == slot:
                    pass  # its turn, reserved in another process: sent and counted here (that one gives it back)
                elif bucket.tokens < 1:
                    # Its place in the queue: after the debt and everyone already waiting, with what it is
                    # expected to send reserved now, so those paced together wake one after another.
                    first_guess = (
                        DEFAULT_GRAPH_QUERIES_PER_ACTIVITY if kind == RESOURCE_GRAPH else DEFAULT_REQUESTS_PER_ACTIVITY
                    )
                    expected = self._per_activity.get((caller.activity, slot), first_guess)
                    reserving = len(bucket.reservations) < MAX_RESERVATIONS
                    if reserving:
                        bucket.tokens -= expected
                    wait = max(-bucket.tokens, 1.0) / rate
                    if reserving:
                        bucket.reservations[caller.key] = (expected, self._clock + wait)
                    raise ArmPaced(subscription_id, kind, math.ceil(wait * 1000) / 1000, reserved=reserving)
            # An activity under way, or a request no activity can be paced for (a helper thread): counted, never
            # cut; the debt is repaid before the next activity starts.
            bucket.tokens -= 1
            if caller is not None:
                caller.sent[slot] = caller.sent.get(slot, 0) + 1

    def after_response(self, subscription_id: str, kind: str, status: int, headers: Mapping[str, str]) -> None:
        """What ARM said: the principal's remaining tokens (all its instances and callers counted), and a 429's
        Retry-After."""
        budget = self.budget()
        rate, capacity = budget.per_second[kind], budget.capacity(kind)
        header = (
            "x-ms-user-quota-remaining" if kind == RESOURCE_GRAPH else f"x-ms-ratelimit-remaining-subscription-{kind}"
        )
        remaining = _number(headers.get(header))
        retry_after = _number(headers.get("Retry-After")) if status == 429 else None
        if remaining is None and retry_after is None:
            return
        with self._lock:
            bucket = self._refilled(subscription_id, kind, rate, capacity)
            if remaining is not None:
                # Leave ARM's headroom (what the settings keep below its refill, ten seconds of it) to others.
                headroom = (
                    0.0
                    if kind == RESOURCE_GRAPH
                    else BURST_SECONDS * max(0.0, ARM_PER_SECOND[kind] - budget.total_per_second[kind])
                )
                bucket.tokens = min(bucket.tokens, remaining - headroom)
            if retry_after is not None:
                bucket.tokens = min(bucket.tokens, -retry_after * rate)

    def allowance(self, subscription_id: str, kind: str) -> int:
        """Requests that may be sent now without debt (waiting callers' reservations already held back). For a batch
        of independent reads (cmk.rollouts.estimate_within_budget) that takes what the bucket holds and comes back
        for the rest, instead of one paced activity that would go into debt."""
        budget = self.budget()
        with self._lock:
            bucket = self._refilled(subscription_id, kind, budget.per_second[kind], budget.capacity(kind))
            return max(0, math.floor(bucket.tokens))

    def seconds_until(self, subscription_id: str, kind: str, requests: float) -> float:
        """When the bucket will hold `requests` (at most its capacity), on the orchestrations' clock."""
        budget = self.budget()
        rate, capacity = budget.per_second[kind], budget.capacity(kind)
        with self._lock:
            bucket = self._refilled(subscription_id, kind, rate, capacity)
            return max(0.0, min(requests, capacity) - bucket.tokens) / rate

    def _refilled(self, subscription_id: str, kind: str, rate: float, capacity: float) -> _Bucket:
        key = (subscription_id, kind)
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = _Bucket(capacity, self._clock)
        if bucket.updated_at > 0:  # refilled from the first orchestration time it saw, not from the epoch
            bucket.tokens = min(capacity, bucket.tokens + max(0.0, self._clock - bucket.updated_at) * rate)
        bucket.updated_at = max(bucket.updated_at, self._clock)
        # A reservation holds its tokens until its caller comes back for them. The caller sends on its turn (named in
        # its next attempt) whichever process that attempt lands on, and counts there as it sends; a turn not taken
        # here soon after it came (the caller came back to another process, or never) gives its tokens back.
        while bucket.reservations:
            caller_key, (reserved, turn_at) = next(iter(bucket.reservations.items()))
            if turn_at + UNCLAIMED_TURN_SECONDS > self._clock:
                break
            del bucket.reservations[caller_key]
            bucket.tokens = min(capacity, bucket.tokens + reserved)
        return bucket

    def _learn(self, caller: _Caller) -> None:
        with self._lock:
            for slot, count in caller.sent.items():
                # Per bucket: a preflight sends several reads in its account's subscription and one in its vault's.
                key = (caller.activity, slot)
                previous = self._per_activity.get(key)
                self._per_activity[key] = count if previous is None else previous + AVERAGE_WEIGHT * (count - previous)


def _number(value: str | None) -> float | None:
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


PACER = ArmPacer()


class ArmPacingPolicy(HTTPPolicy[Any, Any]):
    """The pipeline policy every management client sends through (cmk.clients)."""

    def __init__(self, pacer: ArmPacer = PACER) -> None:
        super().__init__()
        self._pacer = pacer

    def send(self, request: PipelineRequest[Any]) -> PipelineResponse[Any, Any]:
        http = request.http_request
        bucket = bucket_of(http.url, http.method)
        if bucket is None:
            return self.next.send(request)
        scope, kind = bucket
        self._pacer.before_send(scope, kind)
        response = self.next.send(request)
        self._pacer.after_response(scope, kind, response.http_response.status_code, response.http_response.headers)
        return response


def wake_delay_seconds(now_epoch_seconds: float, wait_seconds: float) -> float:
    """How long a throttled caller sleeps: at least `wait_seconds`, ending on the next whole WAKE_GRID_SECONDS.

    The pacing queue hands out turns a fraction of a second apart; rounded up to one grid, the callers whose turns
    fall in the same second wake at the same instant and run side by side (the bucket holds ten seconds of refill,
    so a second's turns at once stay within it) instead of each on a timer of its own. At most one grid later than
    the turn; a 429's Retry-After is never shortened."""
    wake = now_epoch_seconds + max(0.0, wait_seconds)
    return math.ceil(wake / WAKE_GRID_SECONDS - 1e-9) * WAKE_GRID_SECONDS - now_epoch_seconds
