"""Preflight findings: stable codes, a severity and a message a human can act on.

One blocking finding means nothing is changed on the account. Codes are part of the public contract (API output,
reports, dashboards); add new ones, never rename.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Literal, TypedDict

Severity = Literal["blocking", "warning"]


class Code(StrEnum):
    ACCOUNT_NOT_FOUND = "ACCOUNT_NOT_FOUND"
    ACCOUNT_BUSY = "ACCOUNT_BUSY"
    CASSANDRA_NOT_SUPPORTED = "CASSANDRA_NOT_SUPPORTED"
    MATERIALIZED_VIEWS_NOT_SUPPORTED = "MATERIALIZED_VIEWS_NOT_SUPPORTED"
    ALL_VERSIONS_AND_DELETES_CHANGE_FEED_NOT_SUPPORTED = "ALL_VERSIONS_AND_DELETES_CHANGE_FEED_NOT_SUPPORTED"
    VECTOR_SEARCH_NOT_SUPPORTED = "VECTOR_SEARCH_NOT_SUPPORTED"
    DOCUMENT_ID_TOO_LONG = "DOCUMENT_ID_TOO_LONG"
    DOCUMENT_ID_SCAN_UNAVAILABLE = "DOCUMENT_ID_SCAN_UNAVAILABLE"
    CONTINUOUS_BACKUP_NEEDS_USER_ASSIGNED_IDENTITY = "CONTINUOUS_BACKUP_NEEDS_USER_ASSIGNED_IDENTITY"
    ALREADY_ENABLED = "ALREADY_ENABLED"
    DIFFERENT_KEY_CONFIGURED = "DIFFERENT_KEY_CONFIGURED"
    VAULT_NOT_FOUND = "VAULT_NOT_FOUND"
    KEY_IN_ANOTHER_TENANT = "KEY_IN_ANOTHER_TENANT"
    VAULT_SOFT_DELETE_DISABLED = "VAULT_SOFT_DELETE_DISABLED"
    VAULT_PURGE_PROTECTION_DISABLED = "VAULT_PURGE_PROTECTION_DISABLED"
    VAULT_NETWORK_BLOCKS_COSMOS = "VAULT_NETWORK_BLOCKS_COSMOS"
    KEY_NOT_FOUND = "KEY_NOT_FOUND"
    KEY_DISABLED = "KEY_DISABLED"
    KEY_EXPIRED = "KEY_EXPIRED"
    KEY_NOT_YET_VALID = "KEY_NOT_YET_VALID"
    KEY_TYPE_UNSUPPORTED = "KEY_TYPE_UNSUPPORTED"
    KEY_OPERATIONS_MISSING = "KEY_OPERATIONS_MISSING"
    KEY_URI_VERSIONED = "KEY_URI_VERSIONED"
    IDENTITY_NOT_FOUND = "IDENTITY_NOT_FOUND"
    ENCRYPTION_IN_PROGRESS = "ENCRYPTION_IN_PROGRESS"
    ACCOUNT_FEATURES_UNKNOWN = "ACCOUNT_FEATURES_UNKNOWN"
    THROUGHPUT_RAISE_NOT_POSSIBLE = "THROUGHPUT_RAISE_NOT_POSSIBLE"


class Finding(TypedDict):
    code: str
    severity: Severity
    message: str


def blocking(code: Code, message: str) -> Finding:
    return {"code": code.value, "severity": "blocking", "message": message}


def warning(code: Code, message: str) -> Finding:
    return {"code": code.value, "severity": "warning", "message": message}


def has_blocking(findings: list[Finding]) -> bool:
    return any(finding["severity"] == "blocking" for finding in findings)


def blocking_codes(findings: list[Finding]) -> list[str]:
    return [finding["code"] for finding in findings if finding["severity"] == "blocking"]
