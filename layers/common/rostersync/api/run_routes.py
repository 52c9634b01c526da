"""Sync now, run history, and the review of a prepared run (tick, untick, commit, ...)."""

from __future__ import annotations

import base64
from typing import Annotated, Any, Final, cast, get_args

from aws_lambda_powertools.event_handler import APIGatewayRestResolver, Response
from aws_lambda_powertools.event_handler.openapi.params import Query

from rostersync.api.errors import COMMON_FAILURES, ApiError, documented
from rostersync.api.models import (
    ActionPageView,
    ActionSelection,
    ActionView,
    CommitStarted,
    DerivedRunView,
    FileLink,
    FilePreparing,
    RunDetail,
    RunList,
    RunStarted,
    RunStatusView,
    RunSummary,
    SelectionResult,
    SyncRequest,
    UploadResult,
)
from rostersync.api.scope import IdempotencyKey, Middleware, RequestScope, RunPath, TenantPath
from rostersync.application.connect import NothingToSync, sync_source
from rostersync.application.reports import (
    INLINE_BYTES,
    LINK_SECONDS,
    NoReport,
    Preparing,
    ReportFailed,
    ReportFile,
    actions_file_or_preparing,
    issues_file,
)
from rostersync.application.review import (
    ActionFilter,
    Selection,
    discard_run,
    list_actions,
    list_runs,
    request_approve,
    request_commit,
    request_select,
    request_undo,
    set_included,
    show_run,
)
from rostersync.application.runs import begin_run
from rostersync.application.uploads import BadUpload, receive_bundle
from rostersync.changes import ActionKind
from rostersync.models import Entity
from rostersync.pipeline.deps import Deps
from rostersync.records import RunStatus
from rostersync.storage import keys

NO_BUNDLE = "no bundle in the inbox"
UPLOADS_PATH: Final = "/tenants/{tenant}/uploads"
#: The upload's body, which Powertools cannot describe for a binary route.
UPLOAD_REQUEST_BODY: Final[dict[str, Any]] = {
    "required": True,
    "description": (
        "The bundle as one zip (manifest.csv and the OneRoster CSV files), as the raw "
        "request body; at most 6 MB through API Gateway and Lambda (larger bundles go "
        "through the SFTP drop box or the inbox bucket)"
    ),
    "content": {
        "application/zip": {"schema": {"type": "string", "format": "binary"}},
        "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
    },
}
#: Media types the upload takes.
UPLOAD_MEDIA_TYPES: Final = frozenset(
    {"application/zip", "application/x-zip-compressed", "application/octet-stream"}
)


def is_upload(method: str, path: str) -> bool:
    """Whether a request is a bundle upload (a binary body, not JSON)."""
    segments = path.rstrip("/").split("/")
    return method.upper() == "POST" and len(segments) == 4 and segments[3] == "uploads"


def _csv_response(body: str | bytes, filename: str) -> Response[Any]:
    text = body.decode("utf-8") if isinstance(body, bytes) else body
    return Response(
        status_code=200,
        content_type="text/csv; charset=utf-8",
        body=text,
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )


def _source_exists(deps: Deps, key: str) -> bool:
    """A zip (one object) or a folder of files (a prefix ending in ``/``)."""
    if key.endswith("/"):
        return bool(deps.store.list_keys(key))
    return deps.store.exists(key)


def register_run_routes(
    app: APIGatewayRestResolver, scope: RequestScope, posts: list[Middleware]
) -> None:
    """Add the run and review routes to ``app``; ``posts`` are the middlewares of every
    POST (idempotency)."""
    services = scope.services
    deps = services.deps
    run_path = "/tenants/<tenant>/runs/<run>"

    @app.post(
        "/tenants/<tenant>/runs",
        status_code=202,
        summary="Sync now",
        description=(
            "Starts a run and answers at once; follow it with GET /tenants/{tenant}/runs/{run}. "
            "Without source_key: the tenant's connected API source (PUT .../source), else "
            "its latest complete inbox bundle. "
            "One run at a time per tenant: while one runs, 409 names it."
        ),
        tags=["runs"],
        middlewares=posts,
        responses=documented(202, "The run started", *COMMON_FAILURES, 409),
    )
    def sync_now(
        tenant: TenantPath, body: SyncRequest, idempotency_key: IdempotencyKey = None
    ) -> RunStarted:
        tenant = scope.tenant(tenant)
        if body.source_key is not None:
            keys.check_source_key(tenant, body.source_key)
            if not _source_exists(deps, body.source_key):
                raise ApiError(400, "nothing at source_key: upload the bundle first")
        try:
            source = sync_source(deps, tenant, body.source_key)
        except NothingToSync as exc:
            raise ApiError(
                409, f"{NO_BUNDLE}: drop one there, pass source_key, or connect a source"
            ) from exc
        started = begin_run(
            deps,
            services.locks,
            services.launcher,
            tenant,
            source,
            trigger="api",
            mode=body.mode,
            review=body.review,
            requested_by=scope.principal.who,
        )
        return RunStarted(run_id=started.run_id)

    @app.post(
        "/tenants/<tenant>/uploads",
        status_code=201,
        summary="Upload a OneRoster bundle (a zip) to sync",
        description=(
            "The zip is the raw body (Content-Type application/zip). It is checked to hold "
            "OneRoster files and stored with its password columns emptied; sync it with "
            "POST /tenants/{tenant}/runs and the source_key answered."
        ),
        tags=["runs"],
        middlewares=posts,
        responses=documented(201, "The bundle, stored", *COMMON_FAILURES, 413, 415),
    )
    def upload(tenant: TenantPath, idempotency_key: IdempotencyKey = None) -> UploadResult:
        tenant = scope.tenant(tenant)
        event = app.current_event
        media_type = (event.headers.get("Content-Type") or "").split(";")[0].strip().lower()
        if media_type not in UPLOAD_MEDIA_TYPES:
            raise ApiError(415, "send the bundle as application/zip")
        raw = event.body or ""
        body = base64.b64decode(raw) if event.is_base64_encoded else raw.encode("utf-8")
        filename = (event.headers.get("X-Filename") or "").strip()[:200] or None
        try:
            stored = receive_bundle(deps, tenant, body, filename)
        except BadUpload as exc:
            raise ApiError(400, str(exc)) from exc
        return UploadResult.model_validate(stored)

    @app.get(
        "/tenants/<tenant>/runs",
        summary="Sync history, newest first",
        tags=["runs"],
        responses=documented(200, "The tenant's runs", *COMMON_FAILURES),
    )
    def get_runs(tenant: TenantPath, limit: Annotated[int, Query(ge=1, le=500)] = 50) -> RunList:
        tenant = scope.tenant(tenant)
        runs = list_runs(deps, tenant, limit)
        return RunList(runs=[RunSummary.model_validate(r.shown()) for r in runs])

    @app.get(
        run_path,
        summary="A run's status and report",
        tags=["runs"],
        responses=documented(200, "The run and its report", *COMMON_FAILURES),
    )
    def get_run(tenant: TenantPath, run: RunPath) -> RunDetail:
        shown = show_run(deps, scope.tenant(tenant), scope.run(run))
        return RunDetail(run=RunSummary.model_validate(shown.run.shown()), report=shown.report)

    @app.get(
        run_path + "/actions",
        summary="A page of the run's staged actions, with field-level diffs",
        tags=["review"],
        responses=documented(200, "A page of actions", *COMMON_FAILURES),
    )
    def get_actions(
        tenant: TenantPath,
        run: RunPath,
        offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0,
        limit: Annotated[int, Query(ge=1, le=1000)] = 50,
        entity: Annotated[Entity | None, Query()] = None,
        action: Annotated[ActionKind | None, Query()] = None,
        included: Annotated[bool | None, Query()] = None,
    ) -> ActionPageView:
        tenant, run = scope.tenant(tenant), scope.run(run)
        filters = ActionFilter(
            entity=entity, action=action, included=included, offset=offset, limit=limit
        )
        page = list_actions(deps, tenant, run, filters)
        return ActionPageView(
            run_id=run,
            total=page.total,
            offset=page.offset,
            limit=page.limit,
            actions=[ActionView.model_validate(a) for a in page.actions],
        )

    def report_file(found: ReportFile, filename: str, link: bool) -> Response[Any]:
        """A report file in the answer, up to ``INLINE_BYTES`` (or where the store gives
        no links); a larger one as a link: a redirect to it, or with ``link`` the link
        itself (a browser follows it without the API's token)."""
        url = None
        if found.key is not None and found.size > INLINE_BYTES:
            url = deps.store.download_url(found.key, filename, LINK_SECONDS)
        if url is None:
            return _csv_response(found.read(deps), filename)
        shown = FileLink(url=url, filename=filename, size=found.size, expires_in=LINK_SECONDS)
        return Response(
            status_code=200 if link else 303,
            content_type="application/json",
            body=shown.model_dump_json(),
            headers=None if link else {"Location": url},
        )

    file_responses = documented(
        200, "the CSV (with link=true and a file over 4 MB: a link to it)", *COMMON_FAILURES, 409
    )
    file_responses[303] = {
        "description": "a file over 4 MB: a link to it (Location), for 5 minutes"
    }

    @app.get(
        run_path + "/issues.csv",
        summary="Every row issue of the run (CSV)",
        tags=["runs"],
        responses=file_responses,
    )
    def get_issues_csv(
        tenant: TenantPath, run: RunPath, link: Annotated[bool, Query()] = False
    ) -> Response[Any]:
        tenant, run = scope.tenant(tenant), scope.run(run)
        try:
            found = issues_file(deps, tenant, run)
        except NoReport as exc:
            raise ApiError(409, str(exc)) from exc
        return report_file(found, f"issues-{run}.csv", link)

    actions_responses = dict(file_responses)
    actions_responses[202] = {
        "description": "a large run's file is being written: ask again after Retry-After seconds",
        "content": {"application/json": {"model": FilePreparing}},
    }

    @app.get(
        run_path + "/actions.csv",
        summary="Every action of the run, ticked or not, with names and before → after (CSV)",
        description=(
            "A run of many actions (more than REPORT_INLINE_ACTIONS) has the file written "
            "in the background: the answer is 202 with Retry-After until it is written."
        ),
        tags=["runs"],
        responses=actions_responses,
    )
    def get_actions_csv(
        tenant: TenantPath, run: RunPath, link: Annotated[bool, Query()] = False
    ) -> Response[Any]:
        tenant, run = scope.tenant(tenant), scope.run(run)
        try:
            found = actions_file_or_preparing(deps, services.launcher, tenant, run)
        except NoReport as exc:
            raise ApiError(409, str(exc)) from exc
        except ReportFailed as exc:
            raise ApiError(503, str(exc)) from exc
        if isinstance(found, Preparing):
            shown = FilePreparing(
                actions=found.actions, since=found.since, retry_after=found.retry_after
            )
            return Response(
                status_code=202,
                content_type="application/json",
                body=shown.model_dump_json(),
                headers={"Retry-After": str(found.retry_after)},
            )
        return report_file(found, f"actions-{run}.csv", link)

    def select(tenant: str, run: str, body: ActionSelection, included: bool) -> SelectionResult:
        tenant, run = scope.tenant(tenant), scope.run(run)
        selection = Selection(
            action_ids=body.action_ids,
            all_of=[_entity_action(kind) for kind in body.all_of],
        )
        who = scope.principal.who
        if selection.all_of:
            # Whole kinds of actions can be a district's worth: the state machine does it.
            request_select(deps, services.launcher, tenant, run, selection, included, who)
            return SelectionResult(
                run_id=run, included=included, changed=None, status=RunStatus.RESTAGING
            )
        changed = set_included(deps, tenant, run, selection, included, who)
        return SelectionResult(run_id=run, included=included, changed=changed)

    @app.post(
        run_path + "/actions/include",
        summary="Tick actions of a prepared run",
        tags=["review"],
        middlewares=posts,
        responses=documented(200, "How many actions changed", *COMMON_FAILURES, 409),
    )
    def include_actions(
        tenant: TenantPath,
        run: RunPath,
        body: ActionSelection,
        idempotency_key: IdempotencyKey = None,
    ) -> SelectionResult:
        return select(tenant, run, body, True)

    @app.post(
        run_path + "/actions/exclude",
        summary="Untick actions of a prepared run",
        tags=["review"],
        middlewares=posts,
        responses=documented(200, "How many actions changed", *COMMON_FAILURES, 409),
    )
    def exclude_actions(
        tenant: TenantPath,
        run: RunPath,
        body: ActionSelection,
        idempotency_key: IdempotencyKey = None,
    ) -> SelectionResult:
        return select(tenant, run, body, False)

    @app.post(
        run_path + "/commit",
        status_code=202,
        summary="Commit a prepared run's ticked actions",
        description=(
            "Starts the commit and answers at once: the run is committing, then committed "
            "(or held); follow it with GET /tenants/{tenant}/runs/{run}. If the commit fails "
            "the run is prepared again with last_error set."
        ),
        tags=["review"],
        middlewares=posts,
        responses=documented(202, "The commit started", *COMMON_FAILURES, 409),
    )
    def commit(
        tenant: TenantPath, run: RunPath, idempotency_key: IdempotencyKey = None
    ) -> CommitStarted:
        tenant, run = scope.tenant(tenant), scope.run(run)
        request_commit(deps, services.locks, services.launcher, tenant, run, scope.principal.who)
        return CommitStarted(run_id=run, status=RunStatus.COMMITTING)

    @app.post(
        run_path + "/discard",
        summary="Discard a prepared run (nothing of it is applied)",
        tags=["review"],
        middlewares=posts,
        responses=documented(200, "The run, discarded", *COMMON_FAILURES, 409),
    )
    def discard(
        tenant: TenantPath, run: RunPath, idempotency_key: IdempotencyKey = None
    ) -> RunStatusView:
        tenant, run = scope.tenant(tenant), scope.run(run)
        discard_run(deps, tenant, run, scope.principal.who)
        return RunStatusView(run_id=run, status=RunStatus.DISCARDED)

    @app.post(
        run_path + "/undo",
        status_code=202,
        summary="Prepare a run putting back what a committed run changed",
        description=(
            "Starts preparing a new run and answers at once with its id; it is prepared for "
            "review when GET /tenants/{tenant}/runs/{run} says so."
        ),
        tags=["review"],
        middlewares=posts,
        responses=documented(202, "The undo run, being prepared", *COMMON_FAILURES, 409),
    )
    def undo(
        tenant: TenantPath, run: RunPath, idempotency_key: IdempotencyKey = None
    ) -> DerivedRunView:
        tenant, run = scope.tenant(tenant), scope.run(run)
        new_run = request_undo(deps, services.launcher, tenant, run, scope.principal.who)
        return DerivedRunView(run_id=new_run, status=RunStatus.RUNNING, derived_from=run)

    @app.post(
        run_path + "/approve",
        status_code=202,
        summary="Prepare a run carrying a held run's held actions, approved",
        description=(
            "Starts preparing a new run and answers at once with its id; it is prepared for "
            "review when GET /tenants/{tenant}/runs/{run} says so."
        ),
        tags=["review"],
        middlewares=posts,
        responses=documented(202, "The approving run, being prepared", *COMMON_FAILURES, 409),
    )
    def approve(
        tenant: TenantPath, run: RunPath, idempotency_key: IdempotencyKey = None
    ) -> DerivedRunView:
        tenant, run = scope.tenant(tenant), scope.run(run)
        new_run = request_approve(deps, services.launcher, tenant, run, scope.principal.who)
        return DerivedRunView(run_id=new_run, status=RunStatus.RUNNING, derived_from=run)


def _entity_action(kind: str) -> tuple[Entity, ActionKind]:
    """``users:archive`` -> ``(Entity.USERS, "archive")`` (the body model checked the form)."""
    entity, _, action = kind.partition(":")
    if entity not in {e.value for e in Entity} or action not in get_args(ActionKind):
        raise ApiError(400, f"not an entity:action pair: {kind!r}")
    return Entity(entity), cast(ActionKind, action)
