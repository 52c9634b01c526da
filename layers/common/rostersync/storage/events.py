"""EventBridge: change events and run notifications."""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from rostersync.errors import StorageUnavailable
from rostersync.storage.objects import AWS_ERRORS, translate_aws_error

if TYPE_CHECKING:
    from mypy_boto3_events import EventBridgeClient

EVENT_SOURCE = "rostersync"
EVENTS_PER_CALL = 10  # PutEvents' limit per call
_ATTEMPTS = 4


class EventPublisher:
    """Publishes events on the rostersync bus, re-sending entries PutEvents rejected."""

    def __init__(self, client: EventBridgeClient, bus_name: str) -> None:
        self.client = client
        self.bus_name = bus_name

    def publish(self, events: Iterable[tuple[str, dict[str, Any]]]) -> int:
        """Publish ``(detail_type, detail)`` pairs; return how many were accepted."""
        batch: list[tuple[str, dict[str, Any]]] = []
        sent = 0
        for event in events:
            batch.append(event)
            if len(batch) == EVENTS_PER_CALL:
                sent += self._send(batch)
                batch = []
        if batch:
            sent += self._send(batch)
        return sent

    def _send(self, batch: list[tuple[str, dict[str, Any]]]) -> int:
        entries: list[Any] = [
            {
                "Source": EVENT_SOURCE,
                "DetailType": detail_type,
                "Detail": json.dumps(detail, separators=(",", ":"), default=str),
                "EventBusName": self.bus_name,
            }
            for detail_type, detail in batch
        ]
        for _ in range(_ATTEMPTS):
            try:
                response = self.client.put_events(Entries=entries)
            except AWS_ERRORS as exc:
                raise translate_aws_error(exc, "put events") from exc
            results = response.get("Entries", [])
            retry = [
                entry
                for entry, result in zip(entries, results, strict=False)
                if result.get("ErrorCode")
            ]
            if not retry:
                return len(batch)
            entries = retry
        raise StorageUnavailable(f"EventBridge rejected {len(entries)} events after retries")
