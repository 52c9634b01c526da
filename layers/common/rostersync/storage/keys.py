"""The S3 key layout, and the validation of every id that goes into a key.

```
inbox/{tenant}/...                       SFTP drop box
uploads/{tenant}/{run}/...               a bundle handed over by the CLI or the API
raw/{tenant}/{run}/...                   a bundle as fetched
runs/{tenant}/{run}/normalized/...       canonical records per entity, issues, summary
runs/{tenant}/{run}/matched/...          records with their link decisions
runs/{tenant}/{run}/changes/...          the change set
runs/{tenant}/{run}/report/...           the run report, issues.csv, actions.csv
state/{tenant}/current.json              which committed snapshot is the baseline
state/{tenant}/{run}/{entity}.jsonl      the snapshot committed by that run
state/{tenant}/{run}/{entity}.index.jsonl  its ids, targets, statuses and hashes
```
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from secrets import token_hex

from rostersync.errors import InvalidKey
from rostersync.models import Entity

_TENANT = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$")
_RUN = re.compile(r"^\d{8}T\d{6}Z-[0-9a-f]{8}$")
_FILE_PART = re.compile(r"^[A-Za-z0-9._-]{1,200}$")


def check_tenant(tenant: str) -> str:
    """Return ``tenant`` if it is a valid tenant id (lowercase, digits, dashes)."""
    if not isinstance(tenant, str) or not _TENANT.match(tenant):
        raise InvalidKey(f"invalid tenant id {tenant!r}: use 1-63 of a-z, 0-9 and '-'")
    return tenant


def check_run_id(run_id: str) -> str:
    """Return ``run_id`` if it has the shape ``new_run_id`` makes."""
    if not isinstance(run_id, str) or not _RUN.match(run_id):
        raise InvalidKey(f"invalid run id {run_id!r}")
    return run_id


def new_run_id(now: datetime | None = None) -> str:
    """A sortable, unique run id: ``20261123T103200Z-1a2b3c4d``. The first three hex
    digits are the milliseconds, so runs started within one second still sort in the
    order they started; the other five are random."""
    moment = (now or datetime.now(UTC)).astimezone(UTC)
    return f"{moment:%Y%m%dT%H%M%SZ}-{moment.microsecond // 1000:03x}{token_hex(3)[:5]}"


def check_file_name(name: str) -> str:
    """A single path segment with no traversal and no odd characters."""
    if not _FILE_PART.match(name) or name in {".", ".."}:
        raise InvalidKey(f"invalid file name {name!r}")
    return name


def inbox_prefix(tenant: str) -> str:
    return f"inbox/{check_tenant(tenant)}/"


def uploads_prefix(tenant: str, run_id: str) -> str:
    return f"uploads/{check_tenant(tenant)}/{check_run_id(run_id)}/"


def guardian_upload_key(tenant: str, run_id: str) -> str:
    """Where a guardian file given for one run is uploaded (beside, not in, its bundle)."""
    return f"uploads/{check_tenant(tenant)}/guardian-files/{check_run_id(run_id)}.csv"


def check_source_key(tenant: str, key: str) -> str:
    """A source key must sit under the tenant's own inbox or uploads prefix."""
    allowed = (f"inbox/{check_tenant(tenant)}/", f"uploads/{tenant}/")
    if not key.startswith(allowed) or any(seg in {".", ".."} for seg in key.split("/")):
        raise InvalidKey(f"source key {key!r} is outside tenant {tenant}'s prefixes")
    return key


def raw_prefix(tenant: str, run_id: str) -> str:
    return f"raw/{check_tenant(tenant)}/{check_run_id(run_id)}/"


def run_prefix(tenant: str, run_id: str) -> str:
    return f"runs/{check_tenant(tenant)}/{check_run_id(run_id)}/"


def fetch_summary_key(tenant: str, run_id: str) -> str:
    return run_prefix(tenant, run_id) + "fetch.json"


def normalized_key(tenant: str, run_id: str, entity: Entity) -> str:
    return f"{run_prefix(tenant, run_id)}normalized/{Entity(entity).value}.jsonl"


def normalized_ids_key(tenant: str, run_id: str, entity: Entity) -> str:
    """Per record ``[source_system, source_id, status, content hash]``, in record order:
    what matching and staging need of an unchanged record, without parsing it."""
    return f"{run_prefix(tenant, run_id)}normalized/{Entity(entity).value}.ids.jsonl"


def normalized_reuse_key(tenant: str, run_id: str, entity: Entity) -> str:
    """What the next run needs to take this run's unchanged records as they are: the
    source's state for recognising its input, and where each record's lines end."""
    return f"{run_prefix(tenant, run_id)}normalized/{Entity(entity).value}.reuse"


def normalized_summary_key(tenant: str, run_id: str) -> str:
    return f"{run_prefix(tenant, run_id)}normalized/summary.json"


def normalized_input_key(tenant: str, run_id: str) -> str:
    """What the run's read was of (the source spec, the code, each raw file's digest)
    and what it counted: a next run of the same input takes the read whole."""
    return f"{run_prefix(tenant, run_id)}normalized/input.json"


def issues_key(tenant: str, run_id: str) -> str:
    return f"{run_prefix(tenant, run_id)}normalized/issues.jsonl"


def matched_key(tenant: str, run_id: str, entity: Entity) -> str:
    return f"{run_prefix(tenant, run_id)}matched/{Entity(entity).value}.jsonl"


def match_summary_key(tenant: str, run_id: str) -> str:
    return f"{run_prefix(tenant, run_id)}matched/summary.json"


def changes_key(tenant: str, run_id: str, entity: Entity) -> str:
    return f"{run_prefix(tenant, run_id)}changes/{Entity(entity).value}.jsonl"


def change_lines_key(tenant: str, run_id: str, entity: Entity) -> str:
    """Where each line of the entity's change file starts (``pipeline.change_lines``)."""
    return f"{run_prefix(tenant, run_id)}changes/{Entity(entity).value}.lines"


def change_summary_key(tenant: str, run_id: str) -> str:
    return f"{run_prefix(tenant, run_id)}changes/summary.json"


def published_events_prefix(tenant: str, baseline_run_id: str | None) -> str:
    """The ledger of change events published on top of one committed state: every run
    staged on that baseline skips the events already there (a re-run after a failed
    commit publishes only what was not published)."""
    baseline = check_run_id(baseline_run_id) if baseline_run_id else "empty"
    return f"published/{check_tenant(tenant)}/{baseline}/"


def report_key(tenant: str, run_id: str, name: str = "report.json") -> str:
    return f"{run_prefix(tenant, run_id)}report/{check_file_name(name)}"


def state_pointer_key(tenant: str) -> str:
    return f"state/{check_tenant(tenant)}/current.json"


def _state_base(tenant: str, run_id: str, entity: Entity) -> str:
    """Where a run's snapshot of an entity is, less the name's ending."""
    return f"state/{check_tenant(tenant)}/{check_run_id(run_id)}/{Entity(entity).value}"


def state_key(tenant: str, run_id: str, entity: Entity) -> str:
    return f"{_state_base(tenant, run_id, entity)}.jsonl"


def state_index_key(tenant: str, run_id: str, entity: Entity) -> str:
    """Per snapshot line ``[source_system, source_id, target_id, status, hash]``."""
    return f"{_state_base(tenant, run_id, entity)}.index.jsonl"


def state_parts_key(tenant: str, run_id: str, entity: Entity) -> str:
    """The list of an entity's snapshot parts, for a snapshot kept in parts (then there
    is no ``state_key`` object): each part a body and its index, read in the list's order."""
    return f"{_state_base(tenant, run_id, entity)}.parts.json"


def state_parts_prefix(tenant: str, run_id: str, entity: Entity) -> str:
    """The folder of an entity's snapshot parts (``state_part_keys``)."""
    return f"{_state_base(tenant, run_id, entity)}.parts/"


def state_part_keys(tenant: str, run_id: str, entity: Entity, part: str) -> tuple[str, str]:
    """A snapshot part's body and index (``part`` names it: a commit chunk's id)."""
    base = state_parts_prefix(tenant, run_id, entity) + check_file_name(part)
    return f"{base}.jsonl", f"{base}.index.jsonl"


def app_records_key(tenant: str, kind: str) -> str:
    """The app's own records imported for matching (``people`` or ``classes``)."""
    if kind not in {"people", "classes"}:
        raise InvalidKey(f"unknown app record kind {kind!r}")
    return f"state/{check_tenant(tenant)}/app/{kind}.jsonl"


def match_review_key(tenant: str, run_id: str) -> str:
    return f"{run_prefix(tenant, run_id)}matched/review.jsonl"


def tenant_of_inbox_key(key: str) -> tuple[str, str]:
    """Split ``inbox/{tenant}/{rest}`` into ``(tenant, rest)``, refusing anything else."""
    parts = key.split("/", 2)
    if len(parts) != 3 or parts[0] != "inbox" or not parts[2]:
        raise InvalidKey(f"key {key!r} is not under inbox/{{tenant}}/")
    rest = parts[2]
    if any(seg in {"", ".", ".."} for seg in rest.split("/")):
        raise InvalidKey(f"key {key!r} has an empty or relative path segment")
    return check_tenant(parts[1]), rest
