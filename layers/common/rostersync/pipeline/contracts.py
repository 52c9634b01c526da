"""What passes between the steps of the state machine.

States carry S3 keys and counts, never roster bodies (Step Functions' 256 KB limit).
Every step receives a ``RunState`` and returns it with its own part filled in; the ASL
passes the whole object from step to step (``ResultPath: "$"``).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SerializeAsAny, field_validator

from rostersync.models import Entity, SyncMode
from rostersync.records import Trigger
from rostersync.sources.base import Completeness, ReadSummary, SourceSpec
from rostersync.sources.registry import parse_spec
from rostersync.storage.keys import check_run_id, check_tenant

#: What an execution of the state machine does: a sync (fetch → ... → commit), or the
#: long part of an admin's decision about a run (commit it, re-stage it after a match
#: decision, tick or untick a whole kind of action, prepare an undo or an approval).
Operation = Literal["sync", "commit", "resume", "restage", "restaged", "select", "undo", "approve"]


class StepCounts(BaseModel):
    """Counts one step reports; per entity where it matters."""

    model_config = ConfigDict(extra="allow")


class CommitChunk(BaseModel):
    """One idempotent piece of a commit: an entity's new snapshot, or the directory
    items and links of one part of its change file's added records."""

    model_config = ConfigDict(extra="forbid")

    id: str
    entity: Entity
    kind: Literal["snapshot", "adds"]
    #: The change file an *adds* chunk reads, and its byte range (all of it if unset).
    key: str | None = None
    start: int | None = None
    end: int | None = None


class CommitPlan(BaseModel):
    """A commit's chunks; ``fan_out`` when they run in a Distributed Map."""

    model_config = ConfigDict(extra="forbid")

    #: Lines of the change files, and of those the included actions.
    actions: int = 0
    included: int = 0
    fan_out: bool = False
    #: Chunks applied at once when fanned out (the Distributed Map's MaxConcurrency).
    concurrency: int = 16
    #: When the commit began (epoch milliseconds): the commit's time spans its tasks.
    began_ms: int = 0
    chunks: list[CommitChunk] = Field(default_factory=list)


class NormalizePart(BaseModel):
    """One part of an entity's input read on its own (a Distributed Map item)."""

    model_config = ConfigDict(extra="forbid")

    id: str
    entity: Entity
    index: int = Field(ge=0)


class NormalizePlan(BaseModel):
    """The parts of the entity normalize reads in parts now (``fan_out``)."""

    model_config = ConfigDict(extra="forbid")

    fan_out: bool = False
    entity: Entity
    parts: list[NormalizePart] = Field(default_factory=list)
    #: Parts read at once (the Distributed Map's MaxConcurrency).
    concurrency: int = 16


class StagePart(BaseModel):
    """One idempotent piece of a stage: an entity's records whose source id hashes to
    ``part`` of ``parts`` (all of them when ``parts`` is 1)."""

    model_config = ConfigDict(extra="forbid")

    id: str
    entity: Entity
    part: int = Field(default=0, ge=0)
    parts: int = Field(default=1, ge=1)
    #: 1, or 2 for the parts that need what wave 1 archived (enrollments after the
    #: users and classes, for the cascade of their archives).
    wave: Literal[1, 2] = 1


class StagePlan(BaseModel):
    """A stage's parts; ``fan_out`` when they run in a Distributed Map (two waves)."""

    model_config = ConfigDict(extra="forbid")

    #: This staging of the run (a re-stage plans anew): parts and markers are its own.
    attempt: str
    fan_out: bool = False
    #: Whether wave 2 has parts (the state machine's second Map runs only then).
    dependent: bool = False
    #: Parts staged at once (the Distributed Map's MaxConcurrency).
    concurrency: int = 16
    #: When the stage began (epoch milliseconds): the stage's time spans its tasks.
    began_ms: int = 0
    parts: list[StagePart] = Field(default_factory=list)
    dependent_parts: list[StagePart] = Field(default_factory=list)
    #: The plan is being made one split entity per task (the state machine loops back
    #: to the stage task); ``next_entity`` is the first of ``ENTITY_ORDER`` not planned.
    splitting: bool = False
    next_entity: int = 0


class RunState(BaseModel):
    """The execution's state document."""

    model_config = ConfigDict(extra="forbid")

    tenant: str
    run_id: str
    trigger: Trigger = "cli"
    mode: SyncMode = "full"
    operation: Operation = "sync"
    #: The admin behind an operation (who commits, approves, undoes).
    who: str | None = None
    #: The run an undo or an approval is made from.
    derived_from: str | None = None
    #: A selection to tick (``included``) or untick: ``{"all_of": [["users", "archive"]]}``.
    selection: dict[str, Any] | None = None
    included: bool | None = None
    #: Where the data comes from: a spec of the registered source its ``kind`` names.
    source: SerializeAsAny[SourceSpec]
    requested_by: str | None = None
    #: Stop at *prepared* instead of committing (review before commit).
    review: bool = False
    raw_prefix: str | None = None
    #: Per-step counts: ``{"normalize": {"users": 120, "issues": 3}, ...}``.
    counts: dict[str, dict[str, int]] = Field(default_factory=dict)
    #: The decision stage reached: ``commit`` or ``prepared`` (hold or review).
    next: Literal["commit", "prepared"] | None = None
    status: str | None = None
    #: The commit's chunks still to apply (set by the commit's first task).
    commit: CommitPlan | None = None
    #: The stage's parts when it fans out (set by the stage's first task).
    stage: StagePlan | None = None
    #: The parts normalize reads side by side now (set by its tasks).
    normalize: NormalizePlan | None = None

    @field_validator("source", mode="before")
    @classmethod
    def _source(cls, value: Any) -> SourceSpec:
        return parse_spec(value)

    @field_validator("tenant")
    @classmethod
    def _tenant(cls, value: str) -> str:
        return check_tenant(value)

    @field_validator("run_id")
    @classmethod
    def _run(cls, value: str) -> str:
        return check_run_id(value)


_LEGACY_MODES = {"bulk": "complete", "delta": "delta", "absent": "absent"}


class NormalizedSummary(BaseModel):
    """What the normalize step read: per entity, the source's read summary."""

    model_config = ConfigDict(extra="ignore")

    #: The source kind (``oneroster_csv``, ``clever``).
    source: str = "oneroster_csv"
    #: The system the records' source ids belong to.
    source_system: str = "oneroster"
    version: str | None = None
    entities: dict[Entity, ReadSummary] = Field(default_factory=dict)
    issues: int = 0
    #: Records per entity taken as the read of run ``reused_from`` wrote them (their
    #: input unchanged since), not read again.
    reused: dict[str, int] = Field(default_factory=dict)
    reused_from: str | None = None
    #: Every file as run ``reused_from`` read it: its read taken whole (the same input).
    whole: bool = False
    #: The parts read side by side: per part its records, time and peak memory.
    parts: list[dict[str, Any]] = Field(default_factory=list)

    @field_validator("entities", mode="before")
    @classmethod
    def _legacy(cls, value: Any) -> Any:
        # Summaries written before the source seam carried the CSV reader's own shape.
        if not isinstance(value, dict):
            return value
        out = {}
        for name, item in value.items():
            if isinstance(item, dict) and "mode" in item and "completeness" not in item:
                item = {
                    "entity": name,
                    "completeness": _LEGACY_MODES.get(item["mode"], "partial"),
                    "label": item.get("file"),
                    "rows": item.get("rows", 0),
                    "records": item.get("records", 0),
                    "unknown_ids": item.get("skipped_ids", []),
                    "unreadable_rows": item.get("unreadable_rows", 0),
                    "missing": item.get("missing", False),
                    "deleted_ids": item.get("deleted_ids", []),
                }
            out[name] = item
        return out

    def of(self, entity: Entity) -> ReadSummary:
        """The entity's summary (absent when the source gave nothing for it)."""
        found = self.entities.get(entity)
        if found is None:
            return ReadSummary(entity=entity, completeness=Completeness.ABSENT)
        return found

    @property
    def rows(self) -> int:
        return sum(s.rows for s in self.entities.values())

    @property
    def any_delta(self) -> bool:
        return any(s.is_delta for s in self.entities.values())
