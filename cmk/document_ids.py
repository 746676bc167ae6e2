"""The data-plane check for document ids over 990 bytes, which make the CMK encryption fail.

Encryption adds overhead to the id, so with CMK the id limit drops from 1,024 to 990 bytes, and Azure's own
server-side scan fails the operation while such a document exists. We look first with one query per container:
ids are UTF-8 and a character takes at most 4 bytes, so only ids longer than 247 characters can exceed 990 bytes;
the query returns just those, and their byte length is measured here.
"""

from __future__ import annotations

from typing import Literal, TypedDict

from azure.core.exceptions import AzureError
from azure.cosmos import CosmosClient

from cmk import clients

MAX_DOCUMENT_ID_BYTES = 990
_MAX_UTF8_BYTES_PER_CHARACTER = 4
MIN_SUSPECT_ID_CHARACTERS = MAX_DOCUMENT_ID_BYTES // _MAX_UTF8_BYTES_PER_CHARACTER
LONG_ID_QUERY = "SELECT c.id FROM c WHERE LENGTH(c.id) > @minChars"


class DocumentIdScan(TypedDict):
    status: Literal["scanned", "unavailable"]
    longestIdBytes: int | None
    offendingIds: int
    offendingContainers: list[str]
    containersScanned: int
    detail: str


def scan_document_ids(document_endpoint: str | None) -> DocumentIdScan:
    """Longest id (in bytes) among the suspect ids of every container, through the account's SQL endpoint."""
    if not document_endpoint:
        return _unavailable("the account reports no document endpoint")
    longest: int | None = None
    offending = 0
    offending_containers: list[str] = []
    scanned = 0
    try:
        client = CosmosClient(document_endpoint, credential=clients.credential())
        for database in client.list_databases():
            database_client = client.get_database_client(database["id"])
            for container in database_client.list_containers():
                container_client = database_client.get_container_client(container["id"])
                rows = container_client.query_items(
                    LONG_ID_QUERY,
                    parameters=[{"name": "@minChars", "value": MIN_SUSPECT_ID_CHARACTERS}],
                    enable_cross_partition_query=True,
                )
                scanned += 1
                too_long_here = 0
                for row in rows:
                    size = len(str(row["id"]).encode("utf-8"))
                    longest = size if longest is None else max(longest, size)
                    if size > MAX_DOCUMENT_ID_BYTES:
                        too_long_here += 1
                if too_long_here:
                    offending += too_long_here
                    offending_containers.append(f"{database['id']}/{container['id']}")
    except AzureError as error:
        return _unavailable(f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}")
    return {
        "status": "scanned",
        "longestIdBytes": longest,
        "offendingIds": offending,
        "offendingContainers": offending_containers,
        "containersScanned": scanned,
        "detail": f"{scanned} container(s) scanned",
    }


def _unavailable(detail: str) -> DocumentIdScan:
    return {
        "status": "unavailable",
        "longestIdBytes": None,
        "offendingIds": 0,
        "offendingContainers": [],
        "containersScanned": 0,
        "detail": detail,
    }
