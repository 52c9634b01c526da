"""Normalize's shortcut for input identical to the committed run's: its files taken whole.

A nightly sync of a district that changed nothing reads the same bytes again. When every
file of the run's raw area is byte for byte the committed run's (the sizes first, then
one SHA-256 per file of both runs, only when every size is the same),
under the same source settings (``SourceSpec.read_settings``: not where the bundle was
dropped) and the same code, the read would write what that run's read
wrote: its records, id lines, reuse state and issues are copied (a link in the embedded
store, a copy within the bucket on S3) and its summary is taken, instead of reading
every line again. References cross files, so it is all the files or none.

What the read was of is kept beside its output, ``normalized/input.json``
(``{"input": fingerprint, "counts": the step's counts}``), written as the read ends. A
fingerprint is only made of a raw area of at most ``MAX_FILES`` objects (a bundle, not
an API source's thousands of pages, where hashing them would cost more than it saves).
"""

from __future__ import annotations

import hashlib
from functools import cache
from pathlib import Path
from typing import Any

from rostersync.errors import FatalError
from rostersync.models import ENTITY_ORDER
from rostersync.pipeline.contracts import NormalizedSummary, RunState
from rostersync.pipeline.deps import Deps
from rostersync.storage import keys

#: Bumped when what a fingerprint covers changes.
FORMAT = 2
#: The most objects a raw area may hold to be fingerprinted.
MAX_FILES = 200
_CHUNK = 1 << 20


@cache
def code_digest() -> str:
    """A digest of the package's code: output read by other code is not taken as this
    code's (a fix to a reader applies to the next sync, changed input or not)."""
    root = Path(__file__).resolve().parent.parent
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*.py")):
        digest.update(path.relative_to(root).as_posix().encode() + b"\0")
        digest.update(path.read_bytes() + b"\0")
    return digest.hexdigest()


def fingerprint(deps: Deps, state: RunState, raw_prefix: str) -> dict[str, Any] | None:
    """What the run's read is of: the source settings, the code, where its raw area is
    and each raw file's size by its name there; None for a raw area of more than
    ``MAX_FILES`` objects (or none). The files are hashed only when a next run finds
    all of this equal (``take``): a day that changed a file's size pays nothing."""
    listed = sorted(deps.store.list_keys(raw_prefix))
    if not listed or len(listed) > MAX_FILES:
        return None
    return {
        "format": FORMAT,
        "code": code_digest(),
        "source": state.source.read_settings(),
        "raw": raw_prefix,
        "sizes": {key[len(raw_prefix) :]: deps.store.size(key) for key in listed},
    }


def _digests(deps: Deps, raw_prefix: str, names: list[str]) -> list[str] | None:
    """Each file's SHA-256, in ``names``' order; None if one is gone."""
    found = []
    for name in names:
        digest = hashlib.sha256()
        try:
            with deps.store.open_stream(raw_prefix + name) as body:
                while chunk := body.read(_CHUNK):
                    digest.update(chunk)
        except FatalError:
            return None
        found.append(digest.hexdigest())
    return found


def _same_input(deps: Deps, earlier: Any, found: dict[str, Any]) -> bool:
    """Whether ``earlier`` (a run's kept fingerprint) and ``found`` are of the same
    input: all but where the raw areas are equal, then every file the same bytes."""
    if not isinstance(earlier, dict) or not isinstance(earlier.get("raw"), str):
        return False
    if {k: v for k, v in earlier.items() if k != "raw"} != {
        k: v for k, v in found.items() if k != "raw"
    }:
        return False
    names = sorted(found["sizes"])
    before = _digests(deps, earlier["raw"], names)
    return before is not None and before == _digests(deps, found["raw"], names)


def keep(
    deps: Deps, tenant: str, run_id: str, found: dict[str, Any], counts: dict[str, int]
) -> None:
    """Note what run ``run_id``'s read was of (``found``) and what it counted."""
    deps.store.put_json(
        keys.normalized_input_key(tenant, run_id), {"input": found, "counts": counts}
    )


def _outputs(tenant: str, run_id: str) -> tuple[list[str], list[str]]:
    """A run's read's objects: those every finished read writes, and those it may."""
    needed = [keys.issues_key(tenant, run_id)]
    optional = []
    for entity in ENTITY_ORDER:
        needed.append(keys.normalized_key(tenant, run_id, entity))
        needed.append(keys.normalized_ids_key(tenant, run_id, entity))
        optional.append(keys.normalized_reuse_key(tenant, run_id, entity))
    return needed, optional


def take(deps: Deps, state: RunState, previous: str, found: dict[str, Any]) -> RunState | None:
    """The run normalized by taking run ``previous``'s read whole, if its input was
    ``found`` too and its output is all there; else None (nothing written)."""
    tenant, run_id = state.tenant, state.run_id
    kept = deps.store.get_json(keys.normalized_input_key(tenant, previous))
    if not isinstance(kept, dict) or not _same_input(deps, kept.get("input"), found):
        return None
    counts = kept.get("counts")
    body = deps.store.get_json(keys.normalized_summary_key(tenant, previous))
    if not isinstance(counts, dict) or body is None:
        return None
    needed, optional = _outputs(tenant, previous)
    if not all(deps.store.exists(key) for key in needed):
        return None
    mine = [key for group in _outputs(tenant, run_id) for key in group]
    for source, target in zip([*needed, *optional], mine, strict=True):
        if source in needed or deps.store.exists(source):
            deps.store.copy(source, target)
    summary = NormalizedSummary.model_validate(body)
    summary.reused = {
        entity.value: int(counts.get(entity.value, 0))
        for entity in ENTITY_ORDER
        if int(counts.get(entity.value, 0))
    }
    summary.reused_from = previous
    summary.whole = True
    summary.parts = []
    keep(deps, tenant, run_id, found, counts)
    deps.store.put_json(
        keys.normalized_summary_key(tenant, run_id), summary.model_dump(mode="json")
    )
    state.counts["normalize"] = {name: int(n) for name, n in counts.items()}
    state.normalize = None
    return state
