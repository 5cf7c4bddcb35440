"""The store-and-forward outbox: an append-only segmented log on disk (see :mod:`edge.store.log`)."""

from __future__ import annotations

from edge.store.log import (
    BUSY,
    CLOSED,
    DISK_FULL,
    FULL,
    Outbox,
    OutboxLockedError,
    OutboxOptions,
    OutboxStats,
    RecoveryReport,
    StoreError,
)
from edge.store.record import Record, RecordTooLargeError, encode_record, scan_records

__all__ = [
    "BUSY",
    "CLOSED",
    "DISK_FULL",
    "FULL",
    "Outbox",
    "OutboxLockedError",
    "OutboxOptions",
    "OutboxStats",
    "Record",
    "RecordTooLargeError",
    "RecoveryReport",
    "StoreError",
    "encode_record",
    "scan_records",
]
