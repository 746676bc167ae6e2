"""The request log: every ARM, data-plane and identity request the simulator answered, in order, with who asked,
what it got and (ARM) the action authorization checked. Served at /_sandbox/requests and `AzureSimulator.requests()`.
"""

from __future__ import annotations

from sandbox.azure.ids import JsonDict
from sandbox.azure.persistence import StateStore


class RequestLog:
    def __init__(self, persistence: StateStore) -> None:
        self._persistence = persistence
        self.entries: list[JsonDict] = []
        self.last = 0  # the sequence number of the newest entry

    def load(self) -> None:
        self.entries = self._persistence.log_entries("requests")
        self.last = self.entries[-1]["sequence"] if self.entries else 0

    def append(self, entry: JsonDict) -> int:
        self.last += 1
        record = {"sequence": self.last, **entry}
        self.entries.append(record)
        self._persistence.append("requests", self.last, record)
        return self.last

    def since(self, sequence: int) -> list[JsonDict]:
        """Entries newer than `sequence`, oldest first."""
        index = len(self.entries)
        while index > 0 and self.entries[index - 1]["sequence"] > sequence:  # the newest are at the end
            index -= 1
        return self.entries[index:]

    def recent(self, count: int) -> list[JsonDict]:
        return self.entries[-count:]
