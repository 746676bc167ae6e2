"""The documents of a Cosmos DB account, as the service-side CMK scan and the simulated data plane read them.

An account's documents are the world's accountData `databases`, or one synthesized container of `documentCount`
documents: ids are computed from their position, so a container of millions costs nothing until a page reads it.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Callable

from sandbox.azure.ids import JsonDict
from sandbox.azure.world import AccountData

SYNTHETIC_DATABASE = "appdb"
SYNTHETIC_CONTAINER = "items"
DEFAULT_DOCUMENT_COUNT = 10


def document_endpoint(base_url: str, account_name: str) -> str:
    """The account's `documentEndpoint`: the data plane is this simulator."""
    return f"{base_url}/cosmos/{account_name.lower()}/"


class Documents:
    """The documents of one container, by position (what a scan reads in order)."""

    def __len__(self) -> int:
        raise NotImplementedError

    def id_at(self, index: int) -> str:
        raise NotImplementedError

    def document_at(self, index: int) -> JsonDict:
        return {"id": self.id_at(index)}

    def longest_id(self) -> str | None:
        raise NotImplementedError

    def scan(self, start: int, keep: Callable[[str], bool], max_items: int, max_read: int) -> tuple[list[int], int]:
        """Positions from `start` whose id passes `keep`, at most `max_items` of them, reading at most `max_read`
        documents; and how many documents were read (the page stops at its last result when it is full)."""
        end = min(len(self), start + max_read)
        found: list[int] = []
        index = start
        while index < end and len(found) < max_items:
            if keep(self.id_at(index)):
                found.append(index)
            index += 1
        return found, index - start


class ListedDocuments(Documents):
    """Explicit documents from accountData `databases`."""

    def __init__(self, documents: list[JsonDict]) -> None:
        self._documents = documents

    def __len__(self) -> int:
        return len(self._documents)

    def id_at(self, index: int) -> str:
        return str(self._documents[index]["id"])

    def document_at(self, index: int) -> JsonDict:
        return self._documents[index]

    def longest_id(self) -> str | None:
        ids = [str(document["id"]) for document in self._documents]
        return max(ids, key=lambda value: len(value.encode("utf-8"))) if ids else None


class SyntheticDocuments(Documents):
    """`count` documents with ids of one length (36-character GUIDs, or shorter when the largest id is shorter),
    the last one replaced by the long id when there is one. Ids are computed from the position, so a container of
    millions costs nothing until a page reads it, and a page whose filter rejects the common length is O(1)."""

    def __init__(self, seed: str, count: int, short_length: int | None, long_id: str | None) -> None:
        self._seed = seed
        self._count = count
        self._short_length = short_length
        self._long_id = long_id

    def __len__(self) -> int:
        return self._count

    def _short_id(self, index: int) -> str:
        if self._short_length is None:
            return str(uuid.uuid5(uuid.NAMESPACE_URL, f"{self._seed}/{index}"))
        width = self._short_length
        return f"{index:0{width}d}"[-width:]

    def id_at(self, index: int) -> str:
        if not 0 <= index < self._count:
            raise IndexError(index)
        if self._long_id is not None and index == self._count - 1:
            return self._long_id
        return self._short_id(index)

    def longest_id(self) -> str | None:
        if self._long_id is not None:
            return self._long_id
        return self._short_id(0) if self._count else None

    def scan(self, start: int, keep: Callable[[str], bool], max_items: int, max_read: int) -> tuple[list[int], int]:
        if keep(self._short_id(0)):
            return super().scan(start, keep, max_items, max_read)  # dense: at most max_items ids are computed
        end = min(self._count, start + max_read)
        last = self._count - 1
        if self._long_id is not None and start <= last < end and max_items > 0 and keep(self._long_id):
            return [last], last + 1 - start
        return [], end - start


def _id_of_length(length: int, seed: str) -> str:
    alphabet = hashlib.sha256(seed.encode()).hexdigest()
    prefix = "long-id-"
    filler = (alphabet * (length // len(alphabet) + 2))[: max(0, length - len(prefix))]
    return (prefix + filler)[:length]


def account_documents(facts: AccountData, account: JsonDict) -> dict[str, dict[str, Documents]]:
    """The documents of an account: explicit `databases` from accountData, or one synthesized container of
    `documentCount` documents (default 10, plus the long one when `largestDocumentIdBytes` is over 36)."""
    if facts.databases is not None:
        return {
            database: {container: ListedDocuments(documents) for container, documents in containers.items()}
            for database, containers in facts.databases.items()
        }
    name = str(account.get("name", ""))
    largest = facts.largest_document_id_bytes
    short_length: int | None = None
    long_id: str | None = None
    if largest is not None and largest <= 36:
        short_length = largest
    elif largest is not None:
        long_id = _id_of_length(largest, name)
    count = facts.document_count
    if count is None:
        count = DEFAULT_DOCUMENT_COUNT + (1 if long_id is not None else 0)
    documents = SyntheticDocuments(name, count, short_length, long_id)
    return {SYNTHETIC_DATABASE: {SYNTHETIC_CONTAINER: documents}}


def largest_document_id(facts: AccountData, account: JsonDict) -> tuple[int, str] | None:
    """(bytes, "db/container") of the longest document id, as the service-side CMK scan finds it."""
    best: tuple[int, str] | None = None
    for database, containers in account_documents(facts, account).items():
        for container, documents in containers.items():
            longest = documents.longest_id()
            if longest is None:
                continue
            size = len(longest.encode("utf-8"))
            if best is None or size > best[0]:
                best = (size, f"{database}/{container}")
    return best
