"""The registry of sources: ``kind`` → the source that reads it.

Adding a source is one folder under ``rostersync/sources`` and one entry here (or a
``register_source`` call, which is how tests add a source of their own). Run states,
run records and the API name a source by its spec, whose ``kind`` picks the source.
"""

from __future__ import annotations

from typing import Any

from rostersync.errors import FatalError
from rostersync.sources.assembly import AssemblySource
from rostersync.sources.base import Source, SourceSpec
from rostersync.sources.clever import CleverSource
from rostersync.sources.guardian_file import GuardianFileSource
from rostersync.sources.oneroster_csv import OneRosterCsvSource
from rostersync.sources.oneroster_rest import OneRosterRestSource
from rostersync.sources.wonde import WondeSource

_SOURCES: dict[str, Source] = {}
#: Each source as the pipeline runs it: with a guardian file merged in when there is one.
_RUN_AS: dict[str, Source] = {}


class UnknownSource(FatalError):
    """A spec names a kind of source that is not registered."""


def register_source(source: Source) -> None:
    """Make ``source`` available under its ``kind`` (a later registration replaces it)."""
    _SOURCES[source.kind] = source
    _RUN_AS[source.kind] = GuardianFileSource.around(source)


def unregister_source(kind: str) -> None:
    _SOURCES.pop(kind, None)
    _RUN_AS.pop(kind, None)


def source_for(kind: str) -> Source:
    """The source of ``kind`` as runs fetch and read it (a guardian file merged in)."""
    try:
        return _RUN_AS[kind]
    except KeyError:
        raise UnknownSource(f"no source of kind {kind!r}") from None


def registered_source(kind: str) -> Source:
    """The source of ``kind`` itself, as registered."""
    try:
        return _SOURCES[kind]
    except KeyError:
        raise UnknownSource(f"no source of kind {kind!r}") from None


def source_kinds() -> list[str]:
    return sorted(_SOURCES)


def parse_spec(value: Any) -> SourceSpec:
    """A spec of the registered kind ``value`` names (a dict, or a spec already)."""
    if isinstance(value, SourceSpec) and type(value) is not SourceSpec:
        return value
    data = value.model_dump() if isinstance(value, SourceSpec) else value
    if not isinstance(data, dict):
        raise ValueError("a source spec must be an object with a kind")
    kind = data.get("kind", OneRosterCsvSource.kind)
    return registered_source(str(kind)).spec_model.model_validate({**data, "kind": kind})


register_source(OneRosterCsvSource())
register_source(CleverSource())
register_source(OneRosterRestSource())
register_source(WondeSource())
register_source(AssemblySource())
