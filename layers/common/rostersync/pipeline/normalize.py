"""normalize: raw bundle → canonical records per entity, row-level issues, a summary."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import IO, Any

from rostersync.models import ENTITY_ORDER, Entity, RowIssue
from rostersync.pipeline.contracts import RunState
from rostersync.pipeline.deps import Deps
from rostersync.pipeline.snapshot import content_hash
from rostersync.sources.bundle import BundleFiles, ZipBundle
from rostersync.sources.oneroster_csv import OneRosterBundle
from rostersync.storage import keys
from rostersync.storage.objects import ObjectStore, dumps_line


class S3Bundle:
    """The loose files of a bundle under an S3 prefix, streamed from S3."""

    def __init__(self, store: ObjectStore, prefix: str) -> None:
        self.store = store
        self.prefix = prefix
        self._names = sorted(k[len(prefix) :] for k in store.list_keys(prefix))

    def names(self) -> list[str]:
        return [n for n in self._names if "/" not in n]

    @contextmanager
    def open(self, name: str) -> Iterator[IO[bytes]]:
        with self.store.open_stream(self.prefix + keys.check_file_name(name)) as body:
            yield body


def _write_entity(deps: Deps, state: RunState, bundle: OneRosterBundle, entity: Entity) -> int:
    """The entity's records, and beside them their ids, statuses and content hashes."""
    count = 0
    with (
        deps.store.writer(keys.normalized_key(state.tenant, state.run_id, entity)) as records,
        deps.store.writer(keys.normalized_ids_key(state.tenant, state.run_id, entity)) as ids,
    ):
        for record in bundle.iter_records(entity):
            records.write(dumps_line(record))
            ids.write(
                dumps_line(
                    [
                        record["source_system"],
                        record["source_id"],
                        record.get("status"),
                        content_hash(record),
                    ]
                )
            )
            count += 1
    return count


def normalize(state: RunState, deps: Deps) -> RunState:
    """Read the bundle in entity order; write one JSONL per entity plus issues and summary."""
    raw = state.raw_prefix or keys.raw_prefix(state.tenant, state.run_id)
    with ExitStack() as stack:
        files: BundleFiles
        zip_key = raw + "bundle.zip"
        if deps.store.exists(zip_key):
            tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="rostersync-")))
            deps.store.download_file(zip_key, tmp / "bundle.zip")
            zipped = ZipBundle(tmp / "bundle.zip")
            stack.callback(zipped.close)
            files = zipped
        else:
            files = S3Bundle(deps.store, raw)

        issue_writer = stack.enter_context(
            deps.store.writer(keys.issues_key(state.tenant, state.run_id))
        )
        issue_count = 0

        def sink(issue: RowIssue) -> None:
            nonlocal issue_count
            issue_count += 1
            issue_writer.write(dumps_line(issue.model_dump(mode="json", exclude_none=True)))

        bundle = OneRosterBundle(files, sink)
        counts: dict[str, int] = {}
        entities: dict[str, Any] = {}
        for entity in ENTITY_ORDER:
            written = _write_entity(deps, state, bundle, entity)
            summary = bundle.summary(entity)
            counts[entity.value] = written
            entities[entity.value] = summary.model_dump(mode="json")
    # The issues object is uploaded when its writer closes (above); the summary goes last,
    # so a summary's presence means the step finished.
    counts["issues"] = issue_count
    deps.store.put_json(
        keys.normalized_summary_key(state.tenant, state.run_id),
        {
            "version": bundle.version,
            "source_system": "oneroster",
            "entities": entities,
            "issues": issue_count,
        },
    )
    state.counts["normalize"] = counts
    return state
