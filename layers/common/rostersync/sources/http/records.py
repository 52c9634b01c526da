"""What the API sources share between an object they listed and a canonical record: a
rejected object, a field note, and the canonical model's own check."""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import ValidationError

from rostersync.models import Entity, IssueAction, validate_record
from rostersync.sources.base import Record


class ItemRejected(Exception):
    """The object cannot become a record (``column`` names the field)."""

    def __init__(self, column: str, message: str) -> None:
        super().__init__(message)
        self.column = column
        self.message = message


@dataclass(frozen=True)
class FieldNote:
    """A field of an otherwise usable object that was dropped or defaulted."""

    column: str
    message: str
    action: IssueAction


Notes = list[FieldNote]


def canonical(entity: Entity, record: Record) -> Record:
    """``record`` exactly as its model dumps it; a value the model refuses rejects it."""
    try:
        return validate_record(entity, record).model_dump(mode="json")
    except ValidationError as exc:
        first = exc.errors()[0]
        column = ".".join(str(part) for part in first.get("loc", ())) or "record"
        raise ItemRejected(column, f"not a valid {entity.value} record") from None
