"""The live state of the fleet as the status API serves it: every rollout with its counts, every account of a
rollout with its phase and step times, the fleet overview, one account's details. Read through the Durable client
only (the rollout's own customStatus stays a handful of counters whatever the fleet size).

Where each account of a rollout stands comes from its lanes: a lane's latest input holds its planned accounts, the
position it has reached and the report rows it wrote itself, and its custom status names the orchestration holding
its slot now and those it prepares ahead of it (`upcoming`). Every other account the lane finished is found by the
instance id the lane gives it (deterministic per rollout, account and claim), else from the lane's history.

Finished orchestrations never change, so their status payloads are kept in memory (`_TERMINAL`): a refresh reads
only the orchestrations still running and the ones that ended since. Whole views are kept for `VIEW_TTL_SECONDS`,
so the requests of one page refresh share one read.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter, OrderedDict
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import azure.durable_functions as df

from cmk.fleet import PlannedAccount
from cmk.orchestration import (
    ACCOUNT_ORCHESTRATOR,
    LANE_ORCHESTRATOR,
    ROLLOUT_ORCHESTRATOR,
    account_instance_base,
    rollout_instance_id,
    short_digest,
)
from cmk.progress import (
    ACTIVE_RUNTIME_STATUSES,
    AccountState,
    account_state,
    api_time,
    as_dict,
    instance_base,
    known_timings,
    latest_moment,
    outcome_of,
    parse_time,
    phase_of,
)
from coordination.account_instances import list_instances

ROLLOUT_PREFIX = "cmk-rollout-"
ACCOUNT_PREFIX = "cmk-"
# Claims a lane makes of one account at most (orchestrators.rollout_lane.MAX_CLAIMS).
MAX_CLAIMS = 4
VIEW_TTL_SECONDS = 1.0
MAX_TERMINAL_CACHED = 20_000
MAX_VIEWS_CACHED = 16
# Parallel status reads of one view.
READERS = 16
# Running orchestrations read again (with their history) per view when their phase moved on.
HISTORY_READS_PER_VIEW = 8
LIST_PAGE = "1000"
# When more finished orchestrations than this are unknown, one list query reads them instead of one read each.
LIST_INSTEAD_OF_READS = 24

_TERMINAL: OrderedDict[str, dict[str, Any]] = OrderedDict()
# (rollout id, account id) -> the orchestration that handles the account for the rollout, once seen.
_CLAIMED: OrderedDict[tuple[str, str], str] = OrderedDict()
_VIEWS: OrderedDict[str, tuple[float, Any]] = OrderedDict()
_LOCKS: dict[str, asyncio.Lock] = {}
# The newest time any status this process read carries (see `now`).
_NEWEST: list[datetime] = []


def payload(status: Any) -> dict[str, Any] | None:
    """A DurableOrchestrationStatus as the plain JSON of the Durable status API (None: no such instance)."""
    if status is None or getattr(status, "runtime_status", None) is None:
        return None
    result: dict[str, Any] = {
        "instanceId": status.instance_id,
        "name": status.name,
        "runtimeStatus": status.runtime_status.value,
        "input": decoded(status.input_),
        "customStatus": status.custom_status,
        "output": status.output,
        "createdTime": _iso(status.created_time),
        "lastUpdatedTime": _iso(status.last_updated_time),
    }
    history = getattr(status, "historyEvents", None)
    if history is not None:
        result["historyEvents"] = history
    return result


def input_of(instance: dict[str, Any]) -> dict[str, Any]:
    """An instance's input as a JSON object ({} when it has none or it is not one)."""
    return as_dict(decoded(instance.get("input")))


def decoded(value: Any) -> Any:
    """An orchestration input as JSON: the Durable API hands some back as the JSON text the client posted."""
    if isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value


def _iso(value: Any) -> str | None:
    return api_time(value)


def now(instances: Iterable[dict[str, Any]] = ()) -> datetime:
    """Now, for elapsed times: the wall clock, or the newest time the task hub wrote if that is later. In Azure the
    two agree; the local simulator runs orchestration time faster than the wall clock, and the newest write it
    has seen (kept across reads) is its best reading of that clock."""
    newest = latest_moment(list(instances), floor=max([datetime.now(UTC), *_NEWEST]))
    _NEWEST[:] = [newest]
    return newest


async def recent_now(client: df.DurableOrchestrationClient) -> datetime:
    """`now`, also from the orchestrations running now (lanes and monitors write often)."""
    query = {
        "instanceIdPrefix": ACCOUNT_PREFIX,
        "runtimeStatus": ",".join(sorted(ACTIVE_RUNTIME_STATUSES)),
        "showInput": "false",
        "top": LIST_PAGE,
    }
    return now(await list_instances(client, query))


def _remember(instance: dict[str, Any]) -> None:
    if instance.get("runtimeStatus") in ACTIVE_RUNTIME_STATUSES:
        return
    kept = {key: value for key, value in instance.items() if key != "historyEvents"}
    _TERMINAL[str(instance["instanceId"])] = kept
    _TERMINAL.move_to_end(str(instance["instanceId"]))
    while len(_TERMINAL) > MAX_TERMINAL_CACHED:
        _TERMINAL.popitem(last=False)


def _claimed(rollout_id: str, account_id: str, instance_id: str) -> None:
    _CLAIMED[(rollout_id, account_id.lower())] = instance_id
    while len(_CLAIMED) > MAX_TERMINAL_CACHED:
        _CLAIMED.popitem(last=False)


async def read_instance(
    client: df.DurableOrchestrationClient, instance_id: str, *, show_input: bool = False, show_history: bool = False
) -> dict[str, Any] | None:
    """One instance (from memory when it has ended and neither history nor input is asked for)."""
    if not show_history and instance_id in _TERMINAL and (not show_input or "input" in _TERMINAL[instance_id]):
        return _TERMINAL[instance_id]
    status = await client.get_status(
        instance_id, show_history=show_history, show_history_output=show_history, show_input=show_input
    )
    instance = payload(status)
    if instance is not None and show_input:
        _remember(instance)
    return instance


async def _gather(calls: Iterable[Callable[[], Awaitable[Any]]]) -> list[Any]:
    semaphore = asyncio.Semaphore(READERS)

    async def limited(call: Callable[[], Awaitable[Any]]) -> Any:
        async with semaphore:
            return await call()

    return list(await asyncio.gather(*(limited(call) for call in calls)))


async def _running_details(
    client: df.DurableOrchestrationClient, instance_ids: Iterable[str]
) -> dict[str, dict[str, Any]]:
    """Running account orchestrations with their input and history (their step times so far)."""
    ids = sorted(set(instance_ids))
    found = await _gather(
        [lambda i=i: read_instance(client, i, show_input=True, show_history=True) for i in ids]  # type: ignore[misc]
    )
    return {str(item["instanceId"]): item for item in found if item is not None}


def _history(instance: dict[str, Any] | None) -> list[dict[str, Any]] | None:
    if instance is None:
        return None
    events = instance.get("historyEvents")
    return events if isinstance(events, list) else None


# --- rollouts ----------------------------------------------------------------------------------------------------


@dataclass
class RolloutView:
    """A rollout and every one of its accounts, at `now`."""

    rollout: dict[str, Any]
    accounts: list[AccountState]
    now: datetime
    lanes: int
    read_at: float = field(default_factory=time.monotonic)
    # What the routes derive from the view once (the timeline), kept with it.
    derived: dict[str, Any] = field(default_factory=dict)

    @property
    def finished(self) -> bool:
        return self.rollout.get("runtimeStatus") not in ACTIVE_RUNTIME_STATUSES and all(
            account["phase"] == "done" for account in self.accounts
        )


@dataclass
class _LaneSlot:
    lane: int
    index: int
    planned: PlannedAccount
    row: dict[str, Any] | None = None
    instance_id: str | None = None
    current: bool = False
    finished_here: bool = False  # finished in the lane's current generation: no row in its input yet


async def rollout_view(client: df.DurableOrchestrationClient, rollout_id: str) -> RolloutView | None:
    """The rollout's accounts, each with its live state (read at most once per VIEW_TTL_SECONDS)."""
    cached = _VIEWS.get(rollout_id)
    if cached is not None and (cached[1].finished or time.monotonic() - cached[0] < VIEW_TTL_SECONDS):
        view: RolloutView = cached[1]
        return view
    lock = _LOCKS.setdefault(rollout_id, asyncio.Lock())
    async with lock:
        cached = _VIEWS.get(rollout_id)
        if cached is not None and (cached[1].finished or time.monotonic() - cached[0] < VIEW_TTL_SECONDS):
            return cached[1]  # type: ignore[no-any-return]
        fresh = await _read_rollout(client, rollout_id)
        if fresh is not None:
            _VIEWS[rollout_id] = (time.monotonic(), fresh)
            _VIEWS.move_to_end(rollout_id)
            while len(_VIEWS) > MAX_VIEWS_CACHED:
                _VIEWS.popitem(last=False)
    if len(_LOCKS) > 4 * MAX_VIEWS_CACHED:
        _LOCKS.clear()
    return fresh


@dataclass
class _Memo:
    """What earlier reads of a rollout learnt that does not change: its input, each lane's input as last read (its
    planned accounts and the rows of the generations before), and the state of every account that is done."""

    input: Any
    lanes: dict[str, dict[str, Any]] = field(default_factory=dict)
    ended_lanes: dict[str, dict[str, Any]] = field(default_factory=dict)
    done: dict[str, AccountState] = field(default_factory=dict)


_MEMOS: OrderedDict[str, _Memo] = OrderedDict()
# A running account orchestration as last read with its input and history: (phase, input, step times). Its step
# times change only with its phase, so a refresh reads its history again only then.
_RUNNING: OrderedDict[str, tuple[str, Any, dict[str, Any]]] = OrderedDict()


async def _read_rollout(client: df.DurableOrchestrationClient, rollout_id: str) -> RolloutView | None:
    memo = _MEMOS.get(rollout_id)
    rollout, active = await asyncio.gather(
        read_instance(client, rollout_id, show_input=memo is None), _active_instances(client)
    )
    if rollout is None or rollout.get("name") != ROLLOUT_ORCHESTRATOR:
        return None
    if memo is None:
        memo = _MEMOS[rollout_id] = _Memo(input=rollout.get("input"))
        while len(_MEMOS) > MAX_VIEWS_CACHED:
            _MEMOS.popitem(last=False)
    else:
        rollout = {**rollout, "input": memo.input}
    expected = int(as_dict(rollout.get("customStatus")).get("lanes") or 0)
    lanes = await _lanes(client, rollout_id, memo, expected, active)
    slots = _lane_slots(rollout_id, lanes)
    output = rollout.get("output") if isinstance(rollout.get("output"), dict) else None
    report_rows = {str(row["accountId"]).lower(): row for row in (output or {}).get("accounts") or []}
    for slot in slots:
        row = report_rows.get(slot.planned["accountId"].lower())
        if row is not None and slot.row is None:
            slot.row, slot.current, slot.finished_here = row, False, False
            slot.instance_id = row.get("instanceId")
    await _resolve_finished_here(client, rollout, slots, lanes)

    running = await _running_instances(client, {s.instance_id for s in slots if s.instance_id and s.current}, active)
    finished_ids = {
        s.instance_id
        for s in slots
        if s.instance_id and s.instance_id not in running and s.planned["accountId"].lower() not in memo.done
    }
    known = await terminal_instances(client, rollout, finished_ids)

    moment = now([rollout, *lanes, *(instance for instance, _ in running.values())])
    queued_since = rollout_started_at(rollout)
    accounts: list[AccountState] = []
    for slot in slots:
        key = slot.planned["accountId"].lower()
        if key in memo.done and slot.instance_id not in running:
            accounts.append(memo.done[key])
            continue
        instance, timings = running.get(slot.instance_id or "") or (known.get(slot.instance_id or ""), None)
        state = account_state(
            slot.planned["accountId"],
            instance,
            now=moment,
            timings=timings,
            expected_seconds=slot.planned.get("expectedSeconds"),
            queued_since=queued_since,
            row=slot.row if instance is None else None,
        )
        if instance is None and slot.current:
            state["phase"] = "starting"
            state["instanceId"] = slot.instance_id
        state["rolloutId"] = rollout_id
        state["lane"] = slot.lane
        if state["phase"] == "done" and (
            instance is None or instance.get("runtimeStatus") not in ACTIVE_RUNTIME_STATUSES
        ):
            memo.done[key] = state
        accounts.append(state)
    planned_ids = {slot.planned["accountId"].lower() for slot in slots}
    accounts += _unplanned(rollout, report_rows, planned_ids, len(lanes), moment)
    accounts.sort(key=lambda account: (account["name"].lower(), account["accountId"].lower()))
    return RolloutView(rollout=rollout, accounts=accounts, now=moment, lanes=len(lanes))


async def _active_instances(client: df.DurableOrchestrationClient) -> dict[str, dict[str, Any]]:
    """Every orchestration of the app running now (lanes and account orchestrations), without inputs: one query."""
    query = {
        "instanceIdPrefix": ACCOUNT_PREFIX,
        "runtimeStatus": ",".join(sorted(ACTIVE_RUNTIME_STATUSES)),
        "showInput": "false",
        "top": LIST_PAGE,
    }
    return {str(instance["instanceId"]): instance for instance in await list_instances(client, query)}


async def _lanes(
    client: df.DurableOrchestrationClient,
    rollout_id: str,
    memo: _Memo,
    expected: int,
    active: dict[str, dict[str, Any]],
) -> list[dict[str, Any]]:
    """The rollout's lanes, each with its input. Read with their inputs until every lane's is known; after that a
    running lane's status comes from the query of running orchestrations and its input from memory (its planned
    accounts never change; accounts finished since are found through its custom status), and an ended lane, whose
    output is all its rows, is read once."""
    if not memo.lanes or len(memo.lanes) < expected:
        query = {"instanceIdPrefix": f"{rollout_id}-lane-", "top": "100", "showInput": "true"}
        for lane in await list_instances(client, query):
            data = decoded(lane.get("input"))
            if lane.get("name") == LANE_ORCHESTRATOR and isinstance(data, dict):
                memo.lanes[str(lane["instanceId"])] = data
                if lane.get("runtimeStatus") not in ACTIVE_RUNTIME_STATUSES:
                    memo.ended_lanes[str(lane["instanceId"])] = lane
    ended = [lane_id for lane_id in memo.lanes if lane_id not in active and lane_id not in memo.ended_lanes]
    for lane in await _gather([lambda i=i: read_instance(client, i) for i in ended]):  # type: ignore[misc]
        if lane is not None and lane.get("runtimeStatus") not in ACTIVE_RUNTIME_STATUSES:
            memo.ended_lanes[str(lane["instanceId"])] = lane
    lanes = [
        {**(active.get(lane_id) or memo.ended_lanes.get(lane_id) or {"instanceId": lane_id}), "input": data}
        for lane_id, data in memo.lanes.items()
    ]
    lanes.sort(key=lambda lane: int(lane["input"].get("lane") or 0))
    return lanes


async def _running_instances(
    client: df.DurableOrchestrationClient, instance_ids: set[str], active: dict[str, dict[str, Any]]
) -> dict[str, tuple[dict[str, Any], dict[str, Any]]]:
    """Running account orchestrations with their step times: their status from the query of running ones, and a
    read with input and history for each one whose phase changed since it was last read."""
    listed = {i: active[i] for i in instance_ids if i in active}
    stale = [i for i, instance in listed.items() if _RUNNING.get(i, ("",))[0] != phase_of(instance)]
    # Never read before first; of those whose phase moved on, a few per read (the others show the step times of
    # their last read until the next one: the phase itself is always the current one).
    stale.sort(key=lambda i: i in _RUNNING)
    stale = [i for n, i in enumerate(stale) if i not in _RUNNING or n < HISTORY_READS_PER_VIEW]
    for full in await _gather(
        [lambda i=i: read_instance(client, i, show_input=True, show_history=True) for i in stale]  # type: ignore[misc]
    ):
        if full is None:
            continue
        _RUNNING[str(full["instanceId"])] = (phase_of(full), full.get("input"), known_timings(full, _history(full)))
        _RUNNING.move_to_end(str(full["instanceId"]))
    while len(_RUNNING) > MAX_TERMINAL_CACHED:
        _RUNNING.popitem(last=False)
    found: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {}
    for instance_id, instance in listed.items():
        cached = _RUNNING.get(instance_id)
        if cached is not None:
            found[instance_id] = ({**instance, "input": cached[1]}, cached[2])
    return found


def _lane_slots(rollout_id: str, lanes: list[dict[str, Any]]) -> list[_LaneSlot]:
    slots: list[_LaneSlot] = []
    for lane in lanes:
        data = lane["input"]
        index_of_lane = int(data.get("lane") or 0)
        planned: list[PlannedAccount] = list(data.get("accounts") or [])
        position = int(data.get("position") or 0)
        rows = {str(row["accountId"]).lower(): row for row in data.get("rows") or []}
        output = lane.get("output")
        if isinstance(output, list):
            rows.update({str(row["accountId"]).lower(): row for row in output if isinstance(row, dict)})
        custom = as_dict(lane.get("customStatus"))
        current = custom.get("current") if isinstance(custom.get("current"), dict) else None
        current_input = data.get("current") if isinstance(data.get("current"), dict) else None
        current_index: int | None = None
        current_id: str | None = None
        if lane.get("runtimeStatus") in ACTIVE_RUNTIME_STATUSES:
            if current and current.get("accountId"):
                wanted = str(current["accountId"]).lower()
                current_index = next(
                    (i for i, p in enumerate(planned) if p["accountId"].lower() == wanted and i >= position), None
                )
                current_id = current.get("instanceId")
            elif current or current_input:
                # Between generations the status names the orchestration only: its id names the account.
                current_id = (current or current_input or {}).get("instanceId")
                base = instance_base(str(current_id or ""))
                current_index = next(
                    (
                        i
                        for i, p in enumerate(planned)
                        if i >= position and account_instance_base(p["accountId"]) == base
                    ),
                    None,
                )
        # Accounts the lane prepares ahead of its slot (started, waiting for it or still preparing).
        upcoming: dict[int, str] = {}
        if lane.get("runtimeStatus") in ACTIVE_RUNTIME_STATUSES:
            for entry in custom.get("upcoming") or []:
                if isinstance(entry, dict) and entry.get("accountId") and entry.get("instanceId"):
                    wanted = str(entry["accountId"]).lower()
                    found = next(
                        (i for i, p in enumerate(planned) if p["accountId"].lower() == wanted and i >= position), None
                    )
                    if found is not None:
                        upcoming[found] = str(entry["instanceId"])
        frontier = current_index if current_index is not None else min(upcoming, default=None)
        for index, account in enumerate(planned):
            slot = _LaneSlot(lane=index_of_lane, index=index, planned=account)
            row = rows.get(account["accountId"].lower())
            if row is not None:
                slot.row, slot.instance_id = row, row.get("instanceId")
            elif current_index is not None and index == current_index:
                slot.current, slot.instance_id = True, current_id
                if current_id:
                    _claimed(rollout_id, account["accountId"], current_id)
            elif index in upcoming:
                slot.current, slot.instance_id = True, upcoming[index]
                _claimed(rollout_id, account["accountId"], upcoming[index])
            elif index < position or (frontier is not None and index < frontier):
                # Finished: in its current generation, or before without a row of the lane's own (its row is its
                # first claim's orchestration's output, orchestrators.rollout_lane).
                slot.finished_here = True
            elif lane.get("runtimeStatus") not in ACTIVE_RUNTIME_STATUSES and index >= position:
                slot.finished_here = True  # ended without an output: the report will have its row
            slots.append(slot)
    return slots


async def _resolve_finished_here(
    client: df.DurableOrchestrationClient,
    rollout: dict[str, Any],
    slots: list[_LaneSlot],
    lanes: list[dict[str, Any]],
) -> None:
    """The orchestrations of accounts a lane finished in its current generation: seen before as the lane's current
    one, else the instance id the lane gives them, else the claims in the lane's history."""
    rollout_id = str(rollout["instanceId"])
    pending = [slot for slot in slots if slot.finished_here and slot.row is None]
    for slot in pending:
        slot.instance_id = _CLAIMED.get((rollout_id, slot.planned["accountId"].lower()))
    unknown = [slot for slot in pending if slot.instance_id is None]
    if not unknown:
        return
    candidates = {
        rollout_instance_id(slot.planned["accountId"], rollout_id, claim): slot
        for slot in unknown
        for claim in range(MAX_CLAIMS)
    }
    found = await terminal_instances(client, rollout, set(candidates), missing_ok=True)
    for instance_id in sorted(found, key=lambda i: str(found[i].get("createdTime") or "")):
        candidates[instance_id].instance_id = instance_id
    still = {slot.lane for slot in unknown if slot.instance_id is None}
    for lane in lanes:
        if int(lane["input"].get("lane") or 0) not in still:
            continue
        history = _history(await read_instance(client, str(lane["instanceId"]), show_history=True)) or []
        named = [name for event in history for name in _instance_ids_in(event)]
        for slot in unknown:
            if slot.instance_id is None and slot.lane == int(lane["input"].get("lane") or 0):
                base = account_instance_base(slot.planned["accountId"])
                slot.instance_id = next((n for n in reversed(named) if instance_base(n) == base), None)
    for slot in pending:
        if slot.instance_id:
            _claimed(rollout_id, slot.planned["accountId"], slot.instance_id)


def _instance_ids_in(event: dict[str, Any]) -> list[str]:
    """Account orchestration ids a lane's history event names: a sub-orchestration it started, or an activity's
    answer naming the orchestration it claimed."""
    found = [event["InstanceId"]] if isinstance(event.get("InstanceId"), str) else []
    result = event.get("Result")
    if isinstance(result, dict):
        found += [str(value) for value in result.values() if isinstance(value, str)]
    return [name for name in found if name.startswith(ACCOUNT_PREFIX) and "." in name]


async def terminal_instances(
    client: df.DurableOrchestrationClient,
    rollout: dict[str, Any],
    ids: set[str],
    *,
    missing_ok: bool = False,
    remember: bool = True,
) -> dict[str, dict[str, Any]]:
    """Status payloads of the given instances: from memory, else one list query of the account orchestrations
    created since the rollout started (many unknown), else one read each. `remember`: keep the ended ones in memory
    for the status API's next reads (a one-off reader passes False)."""
    found = {i: _TERMINAL[i] for i in ids if i in _TERMINAL}
    unknown = ids - set(found)
    if len(unknown) > LIST_INSTEAD_OF_READS:
        since = rollout_started_at(rollout)
        query = {"instanceIdPrefix": ACCOUNT_PREFIX, "showInput": "false", "top": LIST_PAGE}
        if since:
            query["createdTimeFrom"] = str(since)
        for instance in await list_instances(client, query):
            if instance.get("name") != ACCOUNT_ORCHESTRATOR:
                continue
            if remember:
                _remember(instance)
            if instance["instanceId"] in unknown:
                found[str(instance["instanceId"])] = instance
        unknown -= set(found)
        if missing_ok:
            return found
    reads = await _gather([lambda i=i: read_instance(client, i) for i in sorted(unknown)])  # type: ignore[misc]
    for instance in reads:
        if instance is not None:
            if remember:
                _remember(instance)
            found[str(instance["instanceId"])] = instance
    return found


def rollout_started_at(rollout: dict[str, Any]) -> str | None:
    """When the rollout started. Azure resets an instance's createdTime when it continues as new
    (azure-functions-durable-extension #2088), and a rollout that runs longer than its refresh loop does: its custom
    status says when it started, as do its later generations' input and its output; createdTime only for a
    rollout written before the custom status carried it."""
    custom = as_dict(rollout.get("customStatus"))
    following = as_dict(input_of(rollout).get("following"))
    output = as_dict(rollout.get("output"))
    for started in (
        custom.get("startedAt"),
        as_dict(following.get("timings")).get("startedAt"),
        as_dict(output.get("timings")).get("startedAt"),
    ):
        if started:
            return str(started)
    created = rollout.get("createdTime")
    return str(created) if created else None


def _unplanned(
    rollout: dict[str, Any], report_rows: dict[str, dict[str, Any]], planned: set[str], lanes: int, moment: datetime
) -> list[AccountState]:
    """Accounts of the rollout no lane took: from the report once it exists; while it runs, the named accounts
    that discovery left out (not found, or no key for them)."""
    rollout_id = str(rollout["instanceId"])
    custom = as_dict(rollout.get("customStatus"))
    states: list[AccountState] = []
    if report_rows:
        for key, row in report_rows.items():
            if key not in planned:
                states.append(
                    _with_rollout(account_state(str(row["accountId"]), None, now=moment, row=row), rollout_id)
                )
        return states
    request = as_dict(input_of(rollout).get("request"))
    named = [str(a) for a in request.get("accounts") or []]
    discovering = custom.get("phase") in (None, "discovering") or (custom.get("lanes") or 0) > lanes
    for account_id in named:
        if account_id.lower() in planned:
            continue
        if discovering:
            state = account_state(account_id, None, now=moment, queued_since=rollout_started_at(rollout))
        else:
            row = {
                "accountId": account_id,
                "outcome": "Refused",
                "reason": "Not planned: not found by Resource Graph, or no key for it in the key policy "
                "(the report names which once the rollout ends)",
            }
            state = account_state(account_id, None, now=moment, row=row)
        states.append(_with_rollout(state, rollout_id))
    return states


def _with_rollout(state: AccountState, rollout_id: str) -> AccountState:
    state["rolloutId"] = rollout_id
    state["lane"] = None
    return state


def counts(accounts: Iterable[AccountState]) -> dict[str, Any]:
    """Counts by phase, outcome and subscription, what awaits approval, and the oldest running encryption."""
    by_phase: Counter[str] = Counter()
    by_outcome: Counter[str] = Counter()
    by_subscription: Counter[str] = Counter()
    oldest: AccountState | None = None
    oldest_at: datetime | None = None
    total = 0
    for account in accounts:
        total += 1
        by_phase[account["phase"]] += 1
        if account["outcome"]:
            by_outcome[account["outcome"]] += 1
        by_subscription[account["subscriptionId"] or "unknown"] += 1
        started = parse_time(account["timings"].get("enableRequestedAt"))
        if account["phase"] == "encrypting" and started and (oldest_at is None or started < oldest_at):
            oldest, oldest_at = account, started
    return {
        "total": total,
        "done": by_phase.get("done", 0),
        "byPhase": dict(by_phase),
        "byOutcome": dict(by_outcome),
        "bySubscription": dict(by_subscription),
        "awaitingApproval": by_phase.get("awaitingApproval", 0),
        "oldestEncryption": _encryption_ref(oldest),
    }


def _encryption_ref(account: AccountState | None) -> dict[str, Any] | None:
    if account is None:
        return None
    encryption: dict[str, Any] = dict(account["encryption"] or {})
    return {
        "instanceId": account["instanceId"],
        "accountId": account["accountId"],
        "name": account["name"],
        "since": account["timings"].get("enableRequestedAt"),
        "elapsedSeconds": encryption.get("elapsedSeconds"),
        "percentComplete": account["percentComplete"],
        "rolloutId": account.get("rolloutId"),
    }


def rollout_summary(view: RolloutView) -> dict[str, Any]:
    """The rollout's header: its request, state and live counts."""
    rollout = view.rollout
    request = as_dict(input_of(rollout).get("request"))
    custom = as_dict(rollout.get("customStatus"))
    output = as_dict(rollout.get("output"))
    return {
        "instanceId": rollout["instanceId"],
        "runtimeStatus": rollout.get("runtimeStatus"),
        "phase": custom.get("phase"),
        "createdTime": rollout_started_at(rollout),
        "lastUpdatedTime": rollout.get("lastUpdatedTime"),
        "dryRun": bool(request.get("dryRun")),
        "request": _request_summary(request),
        "lanes": view.lanes,
        "timings": output.get("timings"),
        "error": output.get("error"),
        "reportReady": rollout.get("runtimeStatus") == "Completed",
        **counts(view.accounts),
    }


def _request_summary(request: dict[str, Any]) -> dict[str, Any]:
    summary: dict[str, Any] = {
        key: request[key]
        for key in ("keyUri", "keyPolicy", "identity", "scope", "maxConcurrency", "maxConcurrencyPerSubscription")
        if key in request
    }
    summary["namedAccounts"] = len(request.get("accounts") or [])
    return summary


# --- the fleet ---------------------------------------------------------------------------------------------------


@dataclass
class Fleet:
    """Every orchestration of the app at one moment: rollouts, their lanes, account orchestrations."""

    rollouts: list[dict[str, Any]]
    lanes: dict[str, dict[str, Any]]
    accounts: list[dict[str, Any]]
    now: datetime
    read_at: float = field(default_factory=time.monotonic)

    def rollout_of(self, instance_id: str) -> str | None:
        """The rollout whose lane started this account orchestration (its suffix is that rollout's digest)."""
        if "." not in instance_id:
            return None
        return _rollout_digests(self.rollouts).get(instance_id.rsplit(".", 1)[-1])


def _rollout_digests(rollouts: list[dict[str, Any]]) -> dict[str, str]:
    return {
        short_digest(f"{rollout['instanceId']}/{claim}"): str(rollout["instanceId"])
        for rollout in rollouts
        for claim in range(MAX_CLAIMS)
    }


_FLEET: list[Fleet] = []


async def fleet(client: df.DurableOrchestrationClient) -> Fleet:
    """Every orchestration of the app, without inputs (read at most once per VIEW_TTL_SECONDS)."""
    if _FLEET and time.monotonic() - _FLEET[0].read_at < VIEW_TTL_SECONDS:
        return _FLEET[0]
    everything = await list_instances(
        client, {"instanceIdPrefix": ACCOUNT_PREFIX, "showInput": "false", "top": LIST_PAGE}
    )
    accounts = [i for i in everything if i.get("name") == ACCOUNT_ORCHESTRATOR]
    snapshot = Fleet(
        rollouts=[i for i in everything if i.get("name") == ROLLOUT_ORCHESTRATOR],
        lanes={str(i["instanceId"]): i for i in everything if i.get("name") == LANE_ORCHESTRATOR},
        accounts=accounts,
        now=now(everything),
    )
    _FLEET[:] = [snapshot]
    return snapshot


def account_id_of(instance: dict[str, Any]) -> str | None:
    for source in (instance.get("output"), instance.get("customStatus")):
        if isinstance(source, dict) and source.get("accountId"):
            return str(source["accountId"])
    # A Python client's input comes back as the JSON text it posted.
    request = as_dict(input_of(instance).get("request"))
    return str(request["accountId"]) if request.get("accountId") else None


def newest_per_account(snapshot: Fleet) -> list[dict[str, Any]]:
    """The newest orchestration of each account (what is true of the account now)."""
    newest: dict[str, dict[str, Any]] = {}
    for instance in snapshot.accounts:
        base = instance_base(str(instance["instanceId"]))
        held = newest.get(base)
        if held is None or str(instance.get("createdTime") or "") > str(held.get("createdTime") or ""):
            newest[base] = instance
    return list(newest.values())


async def account_states(
    client: df.DurableOrchestrationClient, snapshot: Fleet, instances: list[dict[str, Any]]
) -> list[AccountState]:
    """Account orchestrations as the API lists them, with step times (a running one is read with its input and
    history)."""
    running = [str(i["instanceId"]) for i in instances if i.get("runtimeStatus") in ACTIVE_RUNTIME_STATUSES]
    details = await _running_details(client, running)
    states: list[AccountState] = []
    for instance in instances:
        instance_id = str(instance["instanceId"])
        full = details.get(instance_id) or instance
        state = account_state(
            account_id_of(full) or instance_id, full, now=snapshot.now, history=_history(details.get(instance_id))
        )
        state["rolloutId"] = snapshot.rollout_of(instance_id)
        states.append(state)
    return states


def live_rollout_counts(snapshot: Fleet, rollout: dict[str, Any]) -> dict[str, Any]:
    """A rollout's counts from the fleet listing: its lanes' finished counts and the phase of each account a lane
    waits on (the rollout's own customStatus is refreshed only every few minutes)."""
    custom = as_dict(rollout.get("customStatus"))
    rollout_id = str(rollout["instanceId"])
    if rollout.get("runtimeStatus") not in ACTIVE_RUNTIME_STATUSES:
        output = as_dict(rollout.get("output"))
        totals = output.get("totals") or custom.get("byOutcome") or {}
        total = int(output.get("total") or custom.get("total") or sum(totals.values()))
        return {"total": total, "done": total, "byOutcome": dict(totals), "byPhase": {"done": total}}
    by_outcome: Counter[str] = Counter()
    by_phase: Counter[str] = Counter()
    by_id = {str(i["instanceId"]): i for i in snapshot.accounts}
    lanes = [lane for lane_id, lane in snapshot.lanes.items() if lane_id.startswith(f"{rollout_id}-lane-")]
    for lane in lanes:
        status = as_dict(lane.get("customStatus"))
        if lane.get("runtimeStatus") not in ACTIVE_RUNTIME_STATUSES and isinstance(lane.get("output"), list):
            by_outcome.update(str(row.get("outcome")) for row in lane["output"] if isinstance(row, dict))
            continue
        by_outcome.update(status.get("done") or {})
        by_phase["queued"] += int(status.get("remaining") or 0)
        # The account holding the lane's slot, and those it prepares ahead of it.
        for current in [status.get("current"), *(status.get("upcoming") or [])]:
            if not isinstance(current, dict):
                continue
            instance = by_id.get(str(current.get("instanceId")))
            phase = phase_of(instance) if instance else "starting"
            if phase == "done":
                by_outcome[outcome_of(instance) or "Failed"] += 1
            else:
                by_phase[phase] += 1
    total = int(custom.get("total") or 0)
    planned = sum(by_outcome.values()) + sum(by_phase.values())
    if custom.get("phase") == "running" and total > planned and len(lanes) >= int(custom.get("lanes") or 0):
        by_outcome["Refused"] += total - planned  # named accounts no lane took: not found, or no key
    done = sum(by_outcome.values())
    by_phase["done"] = done
    if not lanes:
        by_phase["queued"] = max(0, total - done)
    return {
        "total": max(total, done + sum(v for k, v in by_phase.items() if k != "done")),
        "done": done,
        "byOutcome": dict(by_outcome),
        "byPhase": {k: v for k, v in by_phase.items() if v},
    }


def rollout_list_item(snapshot: Fleet, rollout: dict[str, Any]) -> dict[str, Any]:
    custom = as_dict(rollout.get("customStatus"))
    output = as_dict(rollout.get("output"))
    live = live_rollout_counts(snapshot, rollout)
    return {
        "instanceId": rollout["instanceId"],
        "runtimeStatus": rollout.get("runtimeStatus"),
        "phase": custom.get("phase"),
        "createdTime": rollout_started_at(rollout),
        "lastUpdatedTime": rollout.get("lastUpdatedTime"),
        "dryRun": bool(output.get("dryRun")) if output else None,
        "lanes": int(custom.get("lanes") or 0) or None,
        "finishedAt": (output.get("timings") or {}).get("finishedAt") if output else None,
        "error": output.get("error") if output else None,
        "awaitingApproval": live["byPhase"].get("awaitingApproval", 0),
        **live,
    }


def newest_first(instances: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return sorted(
        instances, key=lambda i: (str(i.get("createdTime") or ""), str(i.get("instanceId") or "")), reverse=True
    )


def rollouts_newest_first(rollouts: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """By when each started, not by createdTime, which a long rollout's continue-as-new moves (rollout_started_at)."""
    return sorted(rollouts, key=lambda r: (rollout_started_at(r) or "", str(r.get("instanceId") or "")), reverse=True)


def moment_seconds(moment: Any, origin: datetime) -> float | None:
    parsed = parse_time(moment)
    return None if parsed is None else round((parsed - origin).total_seconds(), 1)


def reset_caches() -> None:
    """Forget everything kept in memory (tests)."""
    _TERMINAL.clear()
    _CLAIMED.clear()
    _VIEWS.clear()
    _LOCKS.clear()
    _MEMOS.clear()
    _RUNNING.clear()
    _FLEET.clear()
    _NEWEST.clear()
