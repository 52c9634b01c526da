"""fetch: bring the run's source data into ``raw/{tenant}/{run}/`` unchanged."""

from __future__ import annotations

from rostersync.errors import BundleError
from rostersync.pipeline.contracts import RunState
from rostersync.pipeline.deps import Deps
from rostersync.storage import keys


def fetch(state: RunState, deps: Deps) -> RunState:
    """Copy the bundle (a zip key or a prefix of loose files) to the run's raw prefix."""
    source_key = keys.check_source_key(state.tenant, state.source.key)
    raw = keys.raw_prefix(state.tenant, state.run_id)
    if source_key.endswith("/"):
        names = [k for k in deps.store.list_keys(source_key) if not k.endswith("/")]
        if not names:
            raise BundleError(f"no files under {source_key}")
        copied = ignored = 0
        for key in names:
            relative = key[len(source_key) :]
            if "/" in relative:
                ignored += 1  # nested folders are not part of a OneRoster bundle
                continue
            deps.store.copy(key, raw + keys.check_file_name(relative))
            copied += 1
    else:
        if not deps.store.exists(source_key):
            raise BundleError(f"no object {source_key}")
        deps.store.copy(source_key, raw + "bundle.zip")
        copied, ignored = 1, 0
    state.raw_prefix = raw
    state.counts["fetch"] = {"files": copied, "ignored_nested": ignored}
    return state
