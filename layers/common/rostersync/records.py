"""Run records and directory items: what storage keeps about each run and each committed
record, as models.

The run statuses are declared here once (``RunStatus``). Storage maps these models to
and from its items at its boundary (``storage.tables``, ``storage.local.tables``): no
caller reads a stored attribute by its name. A run record is written whole when the run
starts (``RunRecord``) and changed by partial updates (``RunUpdate``: only the
attributes it sets are written, so two steps never overwrite each other's attributes).
Records written by earlier versions load: every attribute but the status is optional,
and attributes no longer kept are ignored.

A directory item is a committed record's fields with its identity (``target_id``, the
source it came from, its status, the run that wrote it), kept flat, as the app reads it
(``DirectoryItem.flat``).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Final, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from rostersync.changes import HoldTrip
from rostersync.models import SyncMode


def utc_now() -> datetime:
    """Now, in UTC, to the second (how run records keep their moments)."""
    return datetime.now(UTC).replace(microsecond=0)


#: What started a run.
Trigger = Literal["cli", "api", "schedule", "inbox", "undo"]


class RunStatus(StrEnum):
    """Where a run is in its life."""

    #: Fetching, reading, matching, staging.
    RUNNING = "running"
    #: Staged and waiting for an admin (review, a hold, auto-commit off).
    PREPARED = "prepared"
    #: Being matched and staged again after an admin's decision (back to prepared).
    RESTAGING = "restaging"
    #: Its commit is under way (or stopped part-way, to be resumed).
    COMMITTING = "committing"
    COMMITTED = "committed"
    #: Committed for its safe part; its held actions wait for approval.
    HELD = "held"
    #: A held run whose held actions went into a later run.
    APPROVED = "approved"
    DISCARDED = "discarded"
    FAILED = "failed"
    #: Did not start (a schedule with nothing to sync, a tenant busy).
    SKIPPED = "skipped"


#: A run with a live process behind it.
ACTIVE_STATUSES: Final[frozenset[RunStatus]] = frozenset({RunStatus.RUNNING, RunStatus.COMMITTING})
#: A run whose commit has been applied (for its safe part, when held).
COMMITTED_STATUSES: Final[frozenset[RunStatus]] = frozenset({RunStatus.COMMITTED, RunStatus.HELD})


class RunProgress(BaseModel):
    """The step a run is in, noted as each step starts."""

    model_config = ConfigDict(extra="ignore")

    step: str
    operation: str | None = None
    since: datetime | None = None
    #: The counts of the steps done so far: ``{"normalize": {"users": 120}}``.
    counts: dict[str, dict[str, int]] = Field(default_factory=dict)
    #: ``host:pid`` of the local process running the step (None on AWS).
    runner: str | None = None


class CommitProgress(BaseModel):
    """A commit's plan: its chunks, how many were done when it (re)began, its actions."""

    model_config = ConfigDict(extra="ignore")

    chunks: int = 0
    done: int = 0
    actions: int = 0


class LastSelection(BaseModel):
    """The last tick or untick of whole kinds of actions, done in the background."""

    model_config = ConfigDict(extra="ignore")

    included: bool | None = None
    changed: int = 0


class _RunAttributes(BaseModel):
    """Every attribute of a run record, each optional: the shape of a partial update."""

    model_config = ConfigDict(extra="ignore")

    status: RunStatus | None = None
    trigger: Trigger | None = None
    mode: SyncMode | None = None
    requested_by: str | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    #: The source as people read it (a bundle's key), and its spec (without secrets).
    source_key: str | None = None
    source: dict[str, Any] | None = None
    #: The local file or folder a command-line run read.
    source_name: str | None = None
    #: Why the run failed or was skipped (the state machine's ``error`` and cause).
    reason: str | None = None
    error: str | None = None
    #: Why the last decision about a prepared run, or its commit, failed.
    last_error: str | None = None
    last_error_reason: str | None = None
    progress: RunProgress | None = None
    # The commit.
    committed_by: str | None = None
    committing_at: datetime | None = None
    commit: CommitProgress | None = None
    #: When the state machine saw the commit stop part-way; how often it was resumed.
    interrupted_at: datetime | None = None
    resumed: int | None = None
    # What the run found and did.
    #: Included actions per entity and kind.
    counts: dict[str, dict[str, int]] | None = None
    #: Archives refused per entity: ``{"archive": n, "reason": ...}``.
    refused: dict[str, dict[str, Any]] | None = None
    hold: list[HoldTrip] | None = None
    issue_count: int | None = None
    issues_by_severity: dict[str, int] | None = None
    timings_ms: dict[str, int] | None = None
    report_key: str | None = None
    #: The change files ``run.committed`` names when the run had too many actions for
    #: one event each.
    change_files: list[str] | None = None
    #: The status its last notification announced.
    notified: RunStatus | None = None
    # Decisions about it, and the runs made from others.
    discarded_by: str | None = None
    approved_by: str | None = None
    #: The run carrying this held run's held actions.
    approved_in: str | None = None
    #: The run this one undoes, or whose held actions it carries.
    undo_of: str | None = None
    approves: str | None = None
    last_selection: LastSelection | None = None


class RunUpdate(_RunAttributes):
    """A partial update of a run record: only the attributes given are written (a
    ``None`` given clears one)."""

    model_config = ConfigDict(extra="forbid")

    def attributes(self) -> dict[str, Any]:
        """The attributes set, JSON-shaped."""
        return self.model_dump(mode="json", exclude_unset=True)


class RunRecord(_RunAttributes):
    """One run in the tenant's history."""

    run_id: str
    status: RunStatus

    @property
    def active(self) -> bool:
        return self.status in ACTIVE_STATUSES

    def attributes(self) -> dict[str, Any]:
        """The record's attributes as stored (without its id; unset ones left out)."""
        return self.model_dump(mode="json", exclude={"run_id"}, exclude_none=True)

    def shown(self) -> dict[str, Any]:
        """The record as the API and the command line show it: the attributes it has."""
        return self.model_dump(mode="json", exclude_unset=True)


# ---------------------------------------------------------------------- directory


class ItemStatus(StrEnum):
    """A committed record is active or archived (never deleted)."""

    ACTIVE = "active"
    ARCHIVED = "archived"


#: The identity attributes of a directory item; every other attribute is a field.
IDENTITY: Final[tuple[str, ...]] = (
    "target_id",
    "source_system",
    "source_id",
    "status",
    "run_id",
    "adhoc",
)


def _check_fields(fields: Mapping[str, Any]) -> None:
    """Fields never hold an identity attribute (those are the item's own)."""
    clash = sorted(set(fields) & set(IDENTITY))
    if clash:
        raise ValueError(f"identity attributes among the fields: {', '.join(clash)}")


class DirectoryItem(BaseModel):
    """One committed record: its fields (the canonical record's, and contact details the
    app edited) with its identity."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    #: The app's id of the record.
    target_id: str
    #: The source system and its id of the record (``app`` for the app's own records).
    source_system: str | None = None
    source_id: str | None = None
    status: ItemStatus = ItemStatus.ACTIVE
    #: The run that wrote the item (None for records imported from the app).
    run_id: str | None = None
    #: An app record with no source record, kept (True) or archived on purpose.
    adhoc: bool | None = None
    fields: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _fields_are_not_identity(self) -> DirectoryItem:
        _check_fields(self.fields)
        return self

    @classmethod
    def from_flat(cls, item: Mapping[str, Any]) -> DirectoryItem:
        """The item from its flat shape (fields and identity side by side)."""
        fields = {k: v for k, v in item.items() if k not in IDENTITY}
        identity = {k: item[k] for k in IDENTITY if item.get(k) is not None}
        return cls(**identity, fields=fields)

    def flat(self) -> dict[str, Any]:
        """Fields and identity side by side: how storage keeps the item and the app and
        the API read it (identity attributes without a value left out)."""
        out = dict(self.fields)
        for name in IDENTITY:
            value = getattr(self, name)
            if value is not None:
                out[name] = value.value if isinstance(value, ItemStatus) else value
        return out


_STATUS_VALUES: Final = frozenset(status.value for status in ItemStatus)
_TEXT_IDENTITY: Final = ("source_system", "source_id", "run_id")


def stored_flat(item: Mapping[str, Any]) -> dict[str, Any]:
    """``DirectoryItem.from_flat(item).flat()`` without the model in between (a
    directory page is a hundred items: the model was half of its time): an item whose
    identity attributes are of their types, as the commit stores them, is taken as it
    is, less the identity attributes without a value; any other goes through the model
    (and is refused as the model refuses it)."""
    status = item.get("status")
    if (
        type(item.get("target_id")) is str
        and (status is None or status in _STATUS_VALUES)
        and all(item.get(k) is None or type(item.get(k)) is str for k in _TEXT_IDENTITY)
        and (item.get("adhoc") is None or type(item.get("adhoc")) is bool)
    ):
        out = {k: v for k, v in item.items() if k not in IDENTITY}
        for name in IDENTITY:
            value = item.get(name)
            if name == "status" and value is None:
                value = ItemStatus.ACTIVE.value
            if value is not None:
                out[name] = value
        return out
    return DirectoryItem.from_flat(item).flat()


class DirectoryChange(BaseModel):
    """A change to a committed record's status or fields (an edit made in the app, an
    app record kept or archived)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    status: ItemStatus | None = None
    adhoc: bool | None = None
    fields: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _fields_are_not_identity(self) -> DirectoryChange:
        _check_fields(self.fields)
        return self

    def attributes(self) -> dict[str, Any]:
        """The attributes to set, flat."""
        out = dict(self.fields)
        if self.status is not None:
            out["status"] = self.status.value
        if self.adhoc is not None:
            out["adhoc"] = self.adhoc
        return out
