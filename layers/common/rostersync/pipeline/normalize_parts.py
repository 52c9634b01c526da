"""Where normalize keeps an entity read in parts, and how the parts are joined.

Under ``runs/{tenant}/{run}/normalize/``:

* ``progress.json``: how far the read got (the next entity, the entity in parts and its
  parts, what the read carries over, counts so far, the issue files in order);
* ``parts/{entity}/{k}/``: a part's ``records.jsonl`` and ``ids.jsonl`` (numbered from
  0; deleted once joined into the entity's files and the progress says so),
  ``issues.jsonl``, ``seen.txt`` (ids it had first, where other files refer to the
  entity) and ``done.json``, its marker (rows, ms, peak MB and what the read gave);
* ``known/{entity}.txt``: the ids an entity read whole gave, for later invocations;
* ``own/{entity}.txt``: the ids of a file in parts whose rows refer to each other (an
  org's parent, a user's agents), as its plan read them: what its parts check those
  references against;
* ``issues/{n}.jsonl``: the issues of the n-th invocation that read entities whole; the
  run's issue file is made of them and the parts' at the end (a copy of the one file
  where nothing was read in parts).

A part met again after its marker does nothing; one cut short is read again from its
start (its files are written whole, replacing any earlier ones).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from typing import Any

from pydantic import BaseModel, Field

from rostersync.config import StackSettings
from rostersync.models import Entity
from rostersync.pipeline.contracts import NormalizePart, NormalizePlan
from rostersync.pipeline.deps import Deps
from rostersync.sources.base import PartedRead
from rostersync.storage import keys
from rostersync.storage.objects import copy_rest

#: Entities other files refer to (their ids are kept for the checks of later ones).
REFERENCED = frozenset(
    {Entity.ORGS, Entity.ACADEMIC_SESSIONS, Entity.COURSES, Entity.CLASSES, Entity.USERS}
)


class Progress(BaseModel):
    """How far a run's normalize got."""

    began_ms: int
    previous: str | None = None
    #: What the read is of (``normalize_whole.fingerprint``), kept with its output.
    input: dict[str, Any] | None = None
    #: The run's state as the parts were planned (what a part reads by).
    state: dict[str, Any] | None = None
    #: Index into ENTITY_ORDER of the next entity to read.
    next: int = 0
    #: The entity read in parts, and its parts, while they are read.
    entity: Entity | None = None
    parts: list[dict[str, Any]] = Field(default_factory=list)
    #: Whether the input was opened before (what opening it reports is reported once).
    opened: bool = False
    carried: dict[str, Any] = Field(default_factory=dict)
    #: Per referenced entity read, the files holding its ids (None: not checkable).
    known: dict[str, list[str] | None] = Field(default_factory=dict)
    counts: dict[str, int] = Field(default_factory=dict)
    reused: dict[str, int] = Field(default_factory=dict)
    entities: dict[str, Any] = Field(default_factory=dict)
    #: The run's issues, in order: files of invocations and of parts.
    issue_files: list[str] = Field(default_factory=list)
    segments: int = 0
    issues: int = 0
    #: What each part read reports (the summary's ``parts``).
    markers: list[dict[str, Any]] = Field(default_factory=list)
    #: Parts' files joined into the entity's own, to delete once this progress is kept.
    joined: list[str] = Field(default_factory=list)


def _prefix(tenant: str, run_id: str) -> str:
    return keys.run_prefix(tenant, run_id) + "normalize/"


def progress_key(tenant: str, run_id: str) -> str:
    return _prefix(tenant, run_id) + "progress.json"


def part_id(entity: Entity, part: dict[str, Any]) -> str:
    return f"{entity.value}-{int(part['index'])}"


def _part_prefix(tenant: str, run_id: str, entity: Entity, part: dict[str, Any]) -> str:
    return _prefix(tenant, run_id) + f"parts/{entity.value}/{int(part['index'])}/"


def records_keys(tenant: str, run_id: str, entity: Entity, part: dict[str, Any]) -> tuple[str, str]:
    base = _part_prefix(tenant, run_id, entity, part)
    return base + "records.jsonl", base + "ids.jsonl"


def issues_key(tenant: str, run_id: str, entity: Entity, part: dict[str, Any]) -> str:
    return _part_prefix(tenant, run_id, entity, part) + "issues.jsonl"


def seen_key(tenant: str, run_id: str, entity: Entity, part: dict[str, Any]) -> str:
    return _part_prefix(tenant, run_id, entity, part) + "seen.txt"


def own_ids_key(tenant: str, run_id: str, entity: Entity) -> str:
    """The ids of a file in parts whose rows refer to each other, as its plan read them."""
    return _prefix(tenant, run_id) + f"own/{entity.value}.txt"


def marker_key(tenant: str, run_id: str, entity: Entity, part: dict[str, Any]) -> str:
    return _part_prefix(tenant, run_id, entity, part) + "done.json"


def segment_key(tenant: str, run_id: str, n: int) -> str:
    """The n-th invocation's issue file (the run's own is made of them at the end)."""
    return _prefix(tenant, run_id) + f"issues/{n}.jsonl"


def marker(deps: Deps, tenant: str, run_id: str, entity: Entity, part: dict[str, Any]) -> Any:
    return deps.store.get_json(marker_key(tenant, run_id, entity, part))


def reported(marker: dict[str, Any]) -> dict[str, Any]:
    """What a part reports (the summary's ``parts``, the report's ``normalize_parts``)."""
    return {name: marker[name] for name in ("part", "entity", "rows", "ms", "peak_mb")}


def save_progress(deps: Deps, tenant: str, run_id: str, progress: Progress) -> None:
    deps.store.put_json(progress_key(tenant, run_id), progress.model_dump(mode="json"))


def drop_joined(deps: Deps, progress: Progress) -> None:
    """Delete the parts' records and id lines joined (the progress saved says so)."""
    for key in progress.joined:
        deps.store.delete(key)
    progress.joined.clear()


def load_progress(deps: Deps, tenant: str, run_id: str) -> Progress | None:
    body = deps.store.get_json(progress_key(tenant, run_id))
    return None if body is None else Progress.model_validate(body)


def plan_of(progress: Progress, settings: StackSettings) -> NormalizePlan:
    """The state machine's view of the parts to read now."""
    entity = progress.entity
    assert entity is not None
    return NormalizePlan(
        fan_out=True,
        entity=entity,
        parts=[
            NormalizePart(id=part_id(entity, part), entity=entity, index=int(part["index"]))
            for part in progress.parts
        ],
        concurrency=settings.normalize_concurrency,
    )


def keep_known(deps: Deps, tenant: str, run_id: str, read: PartedRead, progress: Progress) -> None:
    """Keep the ids of the referenced entities read whole so far (once each)."""
    for entity in REFERENCED:
        if entity.value in progress.known or entity.value not in progress.entities:
            continue
        ids = read.known(entity)
        if ids is None:
            progress.known[entity.value] = None
            continue
        key = _prefix(tenant, run_id) + f"known/{entity.value}.txt"
        deps.store.put_bytes(key, "\n".join(ids).encode())
        progress.known[entity.value] = [key]


def load_seen(deps: Deps, files: list[str] | None) -> set[str] | None:
    if files is None:
        return None
    ids: set[str] = set()
    for key in files:
        body = deps.store.get_bytes(key)
        if body:
            ids.update(body.decode().split("\n"))
    ids.discard("")
    return ids


def load_known(deps: Deps, progress: Progress) -> dict[Entity, set[str] | None]:
    """The id sets of the referenced entities read so far."""
    return {Entity(name): load_seen(deps, files) for name, files in progress.known.items()}


def renumbered(lines: Iterable[bytes], first: int) -> list[bytes]:
    """Id lines (without their line ends) numbered on from ``first``: an id line's last
    cell is its record's number in the entity's file."""
    return [
        b"%b%d]\n" % (line[: line.rindex(b",") + 1], number)
        for line, number in zip(lines, itertools.count(first))
    ]


def join_records(
    deps: Deps, tenant: str, run_id: str, entity: Entity, parts: list[dict[str, Any]]
) -> int:
    """Join the parts' records and id lines into the entity's files, the id lines
    numbered on from part to part; the number of records."""
    count = 0
    store = deps.store
    with (
        store.writer(keys.normalized_key(tenant, run_id, entity)) as records,
        store.writer(keys.normalized_ids_key(tenant, run_id, entity)) as ids,
    ):
        for part in parts:
            records_key, ids_key = records_keys(tenant, run_id, entity, part)
            with store.open_stream(records_key) as source:
                copy_rest(source, records)
            lines = store.iter_lines(ids_key)
            while batch := renumbered(itertools.islice(lines, 4096), count):
                ids.write(b"".join(batch))
                count += len(batch)
    return count


def join_issues(deps: Deps, tenant: str, run_id: str, progress: Progress) -> None:
    """Write the run's issue file from the invocations' and the parts' issue files."""
    store = deps.store
    with store.writer(keys.issues_key(tenant, run_id)) as out:
        for key in progress.issue_files:
            if store.exists(key):
                with store.open_stream(key) as source:
                    copy_rest(source, out)
