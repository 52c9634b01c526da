"""What passes between the steps of the state machine.

States carry S3 keys and counts, never roster bodies (Step Functions' 256 KB limit).
Every step receives a ``RunState`` and returns it with its own part filled in; the ASL
passes the whole object from step to step (``ResultPath: "$"``).
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from rostersync.models import SyncMode
from rostersync.storage.keys import check_run_id, check_tenant

Trigger = Literal["cli", "api", "schedule", "inbox", "undo"]


class SourceSpec(BaseModel):
    """Where the run's data comes from."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal["oneroster_csv"] = "oneroster_csv"
    #: An S3 key of a zip, or an S3 prefix (ending in ``/``) holding the bundle's files.
    key: str


class StepCounts(BaseModel):
    """Counts one step reports; per entity where it matters."""

    model_config = ConfigDict(extra="allow")


class RunState(BaseModel):
    """The execution's state document."""

    model_config = ConfigDict(extra="forbid")

    tenant: str
    run_id: str
    trigger: Trigger = "cli"
    mode: SyncMode = "full"
    source: SourceSpec
    requested_by: str | None = None
    #: Stop at *prepared* instead of committing (review before commit).
    review: bool = False
    raw_prefix: str | None = None
    #: Per-step counts: ``{"normalize": {"users": 120, "issues": 3}, ...}``.
    counts: dict[str, dict[str, int]] = Field(default_factory=dict)
    #: The decision stage reached: ``commit`` or ``prepared`` (hold or review).
    next: Literal["commit", "prepared"] | None = None
    status: str | None = None

    @field_validator("tenant")
    @classmethod
    def _tenant(cls, value: str) -> str:
        return check_tenant(value)

    @field_validator("run_id")
    @classmethod
    def _run(cls, value: str) -> str:
        return check_run_id(value)
