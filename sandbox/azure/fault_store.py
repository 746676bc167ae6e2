"""The fault rules in force (sandbox/azure/faults.py says what a rule is), persisted, and which one a request meets."""

from __future__ import annotations

import random

from sandbox.azure.faults import pick_fault, validate_fault_rule
from sandbox.azure.ids import JsonDict
from sandbox.azure.persistence import StateStore


class FaultStore:
    def __init__(self, persistence: StateStore, rng: random.Random) -> None:
        self._persistence = persistence
        self._rng = rng
        self.rules: list[JsonDict] = []

    def load(self) -> None:
        rules = (rule for _key, rule in self._persistence.items("faults"))
        self.rules = sorted(rules, key=lambda rule: str(rule["id"]))

    def add(self, rule: JsonDict) -> JsonDict:
        normalized = validate_fault_rule(rule, self._rng)
        self.rules.append(normalized)
        self._persistence.put("faults", str(normalized["id"]), normalized)
        return normalized

    def remove(self, fault_id: str | None = None) -> int:
        """Remove one rule (or all with None); returns how many went."""
        kept = [rule for rule in self.rules if fault_id is not None and rule["id"] != fault_id]
        removed = len(self.rules) - len(kept)
        for rule in self.rules:
            if rule not in kept:
                self._persistence.delete("faults", str(rule["id"]))
        self.rules = kept
        return removed

    def take(self, method: str, path_and_query: str, body: bytes) -> JsonDict | None:
        """The rule that fires for this request, if any, with one of its `count` used up."""
        fault = pick_fault(self.rules, method, path_and_query, self._rng, body)
        if fault is not None and fault.get("remaining") is not None:
            fault["remaining"] = int(fault["remaining"]) - 1
            self._persistence.put("faults", str(fault["id"]), fault)
        return fault
