"""Request and response bodies of the admin API.

These are the API's contract, kept apart from the domain's models (runs, actions, settings
are mapped into them explicitly), so that a change inside the pipeline does not change
what clients see by accident. The settings document is the exception: the admin edits
exactly ``TenantSettings``, so the API carries it as it is rather than a copy that could
drift from the rules it is validated by.
"""

from __future__ import annotations

from typing import Annotated, Any, Final, Literal

from pydantic import BaseModel, ConfigDict, Field

from rostersync.changes import ACTION_KINDS, ActionKind
from rostersync.models import Entity
from rostersync.records import RunStatus
from rostersync.settings import TenantSettings

#: ``storage.keys.check_tenant``'s rule, stated for the OpenAPI document and validation.
TENANT_PATTERN: Final = r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$"
#: ``storage.keys.check_run_id``'s rule (``new_run_id``'s shape).
RUN_ID_PATTERN: Final = r"^[0-9]{8}T[0-9]{6}Z-[0-9a-f]{8}$"
#: A source or app id: printable, bounded (they go into DynamoDB keys).
RECORD_ID_PATTERN: Final = r"^[^\x00-\x1f\x7f]{1,256}$"
ACTION_KIND_PATTERN: Final = (
    r"^(" + "|".join(e.value for e in Entity) + r"):(" + "|".join(ACTION_KINDS) + r")$"
)

TenantId = Annotated[str, Field(pattern=TENANT_PATTERN, examples=["springfield"])]
RunId = Annotated[str, Field(pattern=RUN_ID_PATTERN, examples=["20261123T103200Z-1a2b3c4d"])]
RecordId = Annotated[str, Field(pattern=RECORD_ID_PATTERN)]
#: The entities identity matching decides about.
MatchEntity = Literal["users", "classes"]


class _Body(BaseModel):
    """A request body: unknown fields are an error, not silently dropped."""

    model_config = ConfigDict(extra="forbid")


# ------------------------------------------------------------------- errors


class ErrorBody(BaseModel):
    """Why a request was refused. ``run_id`` names the run in the way, when one is."""

    error: str
    run_id: str | None = None


class FieldError(BaseModel):
    field: str
    message: str


class ValidationErrors(BaseModel):
    """A request that did not validate: one entry per field at fault."""

    errors: list[FieldError]


# ------------------------------------------------------------------ tenants


class TenantCreate(_Body):
    tenant: TenantId


class TenantView(BaseModel):
    tenant: str
    status: str | None = None
    created_at: str | None = None


class SettingsView(BaseModel):
    tenant: str
    settings: TenantSettings


class SettingsSaved(SettingsView):
    #: Dotted names of the settings this change modified.
    changed: list[str]


# --------------------------------------------------------------------- runs


class SyncRequest(_Body):
    """Sync now. Without ``source_key``: the tenant's connected API source (Clever, ...),
    else its latest complete inbox bundle."""

    mode: Literal["full", "quick"] = "full"
    #: Stop at *prepared* for an admin to review, even if the tenant auto-commits.
    review: bool = False
    #: An object or folder under ``inbox/{tenant}/`` or ``uploads/{tenant}/``.
    source_key: Annotated[str, Field(min_length=1, max_length=1024)] | None = None


# --------------------------------------------------------------------- source

#: A secret's value: write-only, never returned.
SecretValue = Annotated[
    str, Field(min_length=1, max_length=8192, json_schema_extra={"writeOnly": True})
]


class SourceConnect(_Body):
    """Connect the tenant to a source: its kind, its settings, and its secrets
    (write-only: stored in the tenant's secret store, never returned)."""

    kind: Annotated[str, Field(min_length=1, max_length=64)]
    #: The kind's settings (Clever: ``base_url``, ``page_limit``, ...); defaults if left out.
    settings: dict[str, Any] = Field(default_factory=dict)
    #: The kind's secrets by field (Clever: ``token``); one left out must be stored already.
    secrets: dict[str, SecretValue] = Field(default_factory=dict)
    #: Try the secrets with one cheap call to the source and say how it went.
    check: bool = True


class ConnectionCheckView(BaseModel):
    ok: bool
    message: str


class SourceView(BaseModel):
    """The tenant's connected source: its settings, and whether each secret is set."""

    tenant: str
    kind: str
    settings: dict[str, Any]
    #: Secret field → ``set`` or ``missing``; a value is never returned.
    secrets: dict[str, Literal["set", "missing"]]
    connected_by: str | None = None
    connected_at: str | None = None
    check: ConnectionCheckView | None = None


class RunStarted(BaseModel):
    run_id: str
    status: Literal["running"] = "running"


class RunSummary(BaseModel):
    """A run's history record (further attributes of the run are passed through)."""

    model_config = ConfigDict(extra="allow")

    run_id: str
    status: RunStatus
    trigger: str | None = None
    mode: str | None = None
    requested_by: str | None = None
    started_at: str | None = None
    finished_at: str | None = None
    counts: dict[str, Any] | None = None
    issue_count: int | None = None
    reason: str | None = None
    #: While a run runs: its current step and the counts of the steps done so far.
    progress: dict[str, Any] | None = None
    #: Why the last decision about a prepared run (a commit, a re-stage) failed.
    last_error: str | None = None


class RunList(BaseModel):
    runs: list[RunSummary]


class RunDetail(BaseModel):
    run: RunSummary
    #: The run report (None until the run has staged).
    report: dict[str, Any] | None = None


class ActionView(BaseModel):
    """One staged action with its field-level diff (``changes``: field -> [before, after])."""

    model_config = ConfigDict(extra="allow")

    id: str
    entity: Entity
    action: ActionKind
    source_system: str | None = None
    source_id: str | None = None
    target_id: str | None = None
    included: bool
    held: bool = False
    applied: bool = False
    reason: str | None = None
    tier: str | None = None
    changes: dict[str, Any] = Field(default_factory=dict)
    record: dict[str, Any] | None = None


class ActionPageView(BaseModel):
    run_id: str
    total: int
    offset: int
    limit: int
    actions: list[ActionView]


class ActionSelection(_Body):
    """Actions to tick or untick: by id, and/or every action of ``entity:action`` kinds."""

    action_ids: list[Annotated[str, Field(min_length=1, max_length=512)]] = Field(
        default_factory=list, max_length=10_000
    )
    all_of: list[Annotated[str, Field(pattern=ACTION_KIND_PATTERN)]] = Field(
        default_factory=list,
        max_length=len(Entity) * len(ACTION_KINDS),
        examples=[["users:archive"]],
    )


class SelectionResult(BaseModel):
    run_id: str
    included: bool
    #: How many actions changed (already ticked or unticked ones do not count); None while
    #: a selection of whole kinds runs in the background (``status`` is ``restaging``).
    changed: int | None
    status: RunStatus = RunStatus.PREPARED


class FileLink(BaseModel):
    """A report file too large for an answer: a link that downloads it, for a while."""

    url: str
    filename: str
    size: int
    expires_in: int


class FilePreparing(BaseModel):
    """A report file being written in the background (a large run's actions.csv): ask
    again after ``retry_after`` seconds (the ``Retry-After`` header says the same)."""

    status: Literal["preparing"] = "preparing"
    #: The run's actions the file is being written from.
    actions: int
    #: When the write began (UTC).
    since: str
    retry_after: int


class CommitStarted(BaseModel):
    """A commit under way: follow the run until it is committed (or held)."""

    run_id: str
    status: RunStatus


class RunStatusView(BaseModel):
    run_id: str
    status: RunStatus


class DerivedRunView(BaseModel):
    """A new prepared run made from another run (undo, approval of held actions)."""

    run_id: str
    status: RunStatus
    derived_from: str
    report: dict[str, Any] | None = None


# ---------------------------------------------------------------- directory


class ContactEdit(_Body):
    """Contact details the app changed (a teacher fixed a parent's email): kept by later
    syncs unless the tenant's ``overwrite_app_contact_edits`` is on. A field left out
    is unchanged; ``null`` clears it."""

    email: Annotated[str, Field(max_length=320, pattern=r"^[^\x00-\x1f\x7f]*$")] | None = None
    phone: Annotated[str, Field(max_length=64, pattern=r"^[^\x00-\x1f\x7f]*$")] | None = None
    sms: Annotated[str, Field(max_length=64, pattern=r"^[^\x00-\x1f\x7f]*$")] | None = None


class DirectoryRecord(BaseModel):
    """One committed directory record."""

    model_config = ConfigDict(extra="allow")

    target_id: str


class DirectoryPage(BaseModel):
    """A page of the committed roster of one entity, in app id order."""

    entity: Entity
    offset: int
    limit: int
    #: The offset of the next page (None on the last page).
    next_offset: int | None
    items: list[dict[str, Any]]
    #: How many records match the search (given only when the page was searched).
    total: int | None = None


class RecordHistoryEntry(BaseModel):
    """What one run did (committed) or would do (prepared, held) to a record, and why."""

    model_config = ConfigDict(extra="allow")

    run_id: str
    run_status: str | None = None
    started_at: str | None = None
    action: str | None = None
    included: bool | None = None
    reason: str | None = None
    #: Why, in words: new in the source, changed (which fields), absent from a full export...
    why: str | None = None
    changes: dict[str, Any] = Field(default_factory=dict)


class RecordView(BaseModel):
    """One committed record with its identifiers, its link to the source, its schools,
    its enrollments (a user's classes, a class's people), related people (guardians,
    children) and its history across runs, newest first."""

    entity: Entity
    name: str | None = None
    record: dict[str, Any]
    identifiers: list[dict[str, str]]
    link: dict[str, Any] | None = None
    schools: list[dict[str, Any]] = Field(default_factory=list)
    enrollments: list[dict[str, Any]] = Field(default_factory=list)
    related: list[dict[str, Any]] = Field(default_factory=list)
    history: list[RecordHistoryEntry] = Field(default_factory=list)


class SettingsChange(BaseModel):
    changed_at: str | None = None
    changed_by: str | None = None
    #: ``[{field, old, new}]``
    changes: list[dict[str, Any]]


class SettingsHistory(BaseModel):
    """Every change of the tenant's settings, newest first."""

    tenant: str
    history: list[SettingsChange]


class InboxRejection(BaseModel):
    model_config = ConfigDict(extra="allow")

    key: str
    #: The file as the sender named it (its path in the drop box).
    file: str
    reason: str
    rejected_at: str | None = None


class InboxRejections(BaseModel):
    """Files the inbox refused (SFTP or bucket drops), newest first, with the reason."""

    rejections: list[InboxRejection]


class UploadResult(BaseModel):
    """A bundle stored for a run: sync it with ``POST .../runs {"source_key": ...}``."""

    source_key: str
    #: The OneRoster files the zip holds.
    files: list[str]
    bytes: int
    filename: str | None = None


# ----------------------------------------------------------------- matching


class MatchDecisionList(BaseModel):
    decisions: list[dict[str, Any]]


class ConfirmMatch(_Body):
    entity: MatchEntity
    source_id: RecordId
    #: The app record to confirm, if not the suggested one.
    target_id: RecordId | None = None
    #: Unlink another source record holding the app record (the answer names it).
    replace: bool = False


class RejectMatch(_Body):
    entity: MatchEntity
    source_id: RecordId
    target_id: RecordId


class LinkManually(_Body):
    entity: MatchEntity
    source_id: RecordId
    target_id: RecordId
    #: Unlink another source record holding the app record (the answer names it).
    replace: bool = False


class UndoDecision(_Body):
    #: A decision's id, from GET /tenants/{tenant}/matches/decisions.
    decision_id: Annotated[str, Field(pattern=r"^d-[0-9a-f]{10}$")]


class DecisionView(BaseModel):
    """An admin's matching decision: what, about which records, who and when, and
    whether it is in effect, undone or superseded by a later one."""

    model_config = ConfigDict(extra="allow")

    id: str
    entity: str
    decision: str
    what: str
    source_id: str | None = None
    source_name: str | None = None
    target_id: str | None = None
    target_name: str | None = None
    by: str | None = None
    at: str | None = None
    state: Literal["in effect", "undone", "superseded"]


class DecisionList(BaseModel):
    decisions: list[DecisionView]


class KeyProposal(BaseModel):
    """A source identifier that lines up with an app identifier, with its overlap."""

    model_config = ConfigDict(extra="allow")

    kind: str
    source_field: str
    app_field: str
    strip_leading_zeros: bool
    support: int
    source_overlap: float
    app_overlap: float
    agreement: float | None = None
    strong: bool


class KeyProposalList(BaseModel):
    proposals: list[KeyProposal]
    #: The keys the tenant uses now, by kind of person (``source:app[:strip]``).
    confirmed: dict[str, list[str]]


class ConfirmKeys(_Body):
    kind: Literal["student", "teacher", "guardian"]
    #: In order: ``source_field:app_field`` or ``source_field:app_field:strip``.
    keys: list[Annotated[str, Field(pattern=r"^[^:\x00-\x1f]+:[^:\x00-\x1f]+(:strip)?$")]] = Field(
        min_length=1, max_length=10
    )


class MarkAdhoc(_Body):
    entity: MatchEntity
    target_id: RecordId
    #: Keep the app record although no source record matches it (else it is archived).
    keep: bool


class MatchOutcome(BaseModel):
    """What the identity service did (its own fields, passed through)."""

    model_config = ConfigDict(extra="allow")


class ImportResult(BaseModel):
    model_config = ConfigDict(extra="allow")

    imported: int
    issues: list[Any] = Field(default_factory=list)
