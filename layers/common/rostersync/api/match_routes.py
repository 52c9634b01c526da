"""Identity matching under review: suggestions to confirm or reject, manual links, app
records kept ad hoc, and the import of the app's existing records (CSV).

``rostersync.application.matching`` does the work; its refusals answer 4xx.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated, Any, Final

from aws_lambda_powertools.event_handler import APIGatewayRestResolver
from aws_lambda_powertools.event_handler.openapi.params import Query

from rostersync.api.errors import COMMON_FAILURES, ApiError, documented
from rostersync.api.models import (
    RUN_ID_PATTERN,
    ConfirmKeys,
    ConfirmMatch,
    DecisionList,
    DecisionView,
    ImportResult,
    KeyProposal,
    KeyProposalList,
    LinkManually,
    MarkAdhoc,
    MatchDecisionList,
    MatchOutcome,
    RejectMatch,
    UndoDecision,
)
from rostersync.api.scope import IdempotencyKey, Middleware, RequestScope, TenantPath
from rostersync.application import matching as identity
from rostersync.application.tenants import load_tenant_settings
from rostersync.models import Tier

IMPORT_PATH: Final = "/tenants/{tenant}/directory/import"
#: The import's body, which Powertools cannot describe for a non-JSON route.
IMPORT_REQUEST_BODY: Final[dict[str, Any]] = {
    "required": True,
    "description": (
        "The app's existing records as CSV (UTF-8, a header row naming the columns), so "
        "that the first sync links to them instead of creating duplicates"
    ),
    "content": {"text/csv": {"schema": {"type": "string", "minLength": 1}}},
}


@contextmanager
def refused_as(status: int) -> Iterator[None]:
    """Matching's refusals (no such suggestion, a file without its columns) as a 4xx;
    other errors keep their own mapping."""
    try:
        yield
    except identity.MatchDecisionError as exc:
        raise ApiError(status, str(exc)) from exc


def register_match_routes(
    app: APIGatewayRestResolver, scope: RequestScope, posts: list[Middleware]
) -> None:
    """Add the matching review routes to ``app``; ``posts`` are the middlewares of every
    POST (idempotency)."""
    deps = scope.services.deps
    failures = (*COMMON_FAILURES, 409)

    @app.get(
        "/tenants/<tenant>/matches",
        summary="Match decisions to review (of one run, of one tier)",
        tags=["matching"],
        responses=documented(200, "The decisions", *failures),
    )
    def get_matches(
        tenant: TenantPath,
        run: Annotated[str | None, Query(pattern=RUN_ID_PATTERN)] = None,
        tier: Annotated[Tier | None, Query()] = None,
    ) -> MatchDecisionList:
        tenant = scope.tenant(tenant)
        if run is not None:
            scope.run(run)
        with refused_as(409):
            decisions = identity.list_match_decisions(
                deps, tenant, run_id=run, tier=None if tier is None else tier.value
            )
        return MatchDecisionList(decisions=list(decisions))

    @app.post(
        "/tenants/<tenant>/matches/confirm",
        summary="Confirm a suggested match",
        tags=["matching"],
        middlewares=posts,
        responses=documented(200, "The confirmed link", *failures),
    )
    def confirm(
        tenant: TenantPath, body: ConfirmMatch, idempotency_key: IdempotencyKey = None
    ) -> MatchOutcome:
        tenant = scope.tenant(tenant)
        with refused_as(409):
            outcome = identity.confirm_match(
                deps,
                tenant,
                body.entity,
                body.source_id,
                scope.principal.who,
                body.target_id,
                launcher=scope.services.launcher,
                replace=body.replace,
            )
        return MatchOutcome.model_validate(outcome)

    @app.post(
        "/tenants/<tenant>/matches/reject",
        summary="Reject a suggested match",
        tags=["matching"],
        middlewares=posts,
        responses=documented(200, "The rejection", *failures),
    )
    def reject(
        tenant: TenantPath, body: RejectMatch, idempotency_key: IdempotencyKey = None
    ) -> MatchOutcome:
        tenant = scope.tenant(tenant)
        with refused_as(409):
            outcome = identity.reject_match(
                deps,
                tenant,
                body.entity,
                body.source_id,
                body.target_id,
                scope.principal.who,
                launcher=scope.services.launcher,
            )
        return MatchOutcome.model_validate(outcome)

    @app.post(
        "/tenants/<tenant>/matches/link",
        summary="Link a source record to an app record by hand",
        tags=["matching"],
        middlewares=posts,
        responses=documented(200, "The link", *failures),
    )
    def link(
        tenant: TenantPath, body: LinkManually, idempotency_key: IdempotencyKey = None
    ) -> MatchOutcome:
        tenant = scope.tenant(tenant)
        with refused_as(409):
            outcome = identity.link_manually(
                deps,
                tenant,
                body.entity,
                body.source_id,
                body.target_id,
                scope.principal.who,
                launcher=scope.services.launcher,
                replace=body.replace,
            )
        return MatchOutcome.model_validate(outcome)

    @app.get(
        "/tenants/<tenant>/matches/decisions",
        summary="Every admin matching decision, newest first, with who and when",
        tags=["matching"],
        responses=documented(200, "The decisions", *COMMON_FAILURES),
    )
    def get_decisions(tenant: TenantPath) -> DecisionList:
        tenant = scope.tenant(tenant)
        decisions = identity.list_decisions(deps, tenant)
        return DecisionList(decisions=[DecisionView.model_validate(d) for d in decisions])

    @app.post(
        "/tenants/<tenant>/matches/undo",
        summary="Reverse one matching decision that is in effect",
        description=(
            "A link is removed (the record is matched again), a rejected pair may be "
            "suggested again, an app record kept or archived goes back to the queue. The "
            "tenant's prepared run, if any, is re-staged (restaged_run)."
        ),
        tags=["matching"],
        middlewares=posts,
        responses=documented(200, "What was undone", *failures),
    )
    def undo(
        tenant: TenantPath, body: UndoDecision, idempotency_key: IdempotencyKey = None
    ) -> MatchOutcome:
        tenant = scope.tenant(tenant)
        with refused_as(409):
            outcome = identity.undo_decision(
                deps,
                tenant,
                body.decision_id,
                scope.principal.who,
                launcher=scope.services.launcher,
            )
        return MatchOutcome.model_validate(outcome)

    @app.get(
        "/tenants/<tenant>/keys",
        summary="Key proposals: which source identifier lines up with which app identifier",
        description=(
            "From the latest run's users (or run's) and the app's imported records, per kind "
            "of person, with the overlap that supports each; strong ones are proposed."
        ),
        tags=["matching"],
        responses=documented(200, "The proposals and the keys in use", *failures),
    )
    def get_keys(
        tenant: TenantPath,
        run: Annotated[str | None, Query(pattern=RUN_ID_PATTERN)] = None,
    ) -> KeyProposalList:
        tenant = scope.tenant(tenant)
        if run is not None:
            scope.run(run)
        proposals = (
            identity.propose_tenant_keys(deps, tenant, run)
            if run is not None or identity.latest_run_id(deps, tenant) is not None
            else []
        )
        keys = load_tenant_settings(deps, tenant).match_keys
        return KeyProposalList(
            proposals=[KeyProposal.model_validate(p) for p in proposals],
            confirmed={
                kind: list(getattr(keys, kind + "s")) for kind in ("teacher", "student", "guardian")
            },
        )

    @app.post(
        "/tenants/<tenant>/keys/confirm",
        summary="Confirm the exact keys for a kind of person (kept in the settings)",
        tags=["matching"],
        middlewares=posts,
        responses=documented(200, "The keys stored", *failures),
    )
    def confirm_keys(
        tenant: TenantPath, body: ConfirmKeys, idempotency_key: IdempotencyKey = None
    ) -> MatchOutcome:
        tenant = scope.tenant(tenant)
        with refused_as(400):
            stored = identity.confirm_keys(
                deps, tenant, body.kind, list(body.keys), scope.principal.who
            )
        return MatchOutcome.model_validate(stored)

    @app.post(
        "/tenants/<tenant>/matches/adhoc",
        summary="Keep (or not) an app record that no source record matches",
        tags=["matching"],
        middlewares=posts,
        responses=documented(200, "The decision", *failures),
    )
    def adhoc(
        tenant: TenantPath, body: MarkAdhoc, idempotency_key: IdempotencyKey = None
    ) -> MatchOutcome:
        tenant = scope.tenant(tenant)
        with refused_as(409):
            outcome = identity.mark_adhoc(
                deps, tenant, body.entity, body.target_id, body.keep, scope.principal.who
            )
        return MatchOutcome.model_validate(outcome)

    @app.post(
        "/tenants/<tenant>/directory/import",
        summary="Import the app's existing records (CSV) before the first sync",
        tags=["matching"],
        middlewares=posts,
        responses=documented(200, "How many records were imported, and the issues", *failures),
    )
    def import_records(tenant: TenantPath, idempotency_key: IdempotencyKey = None) -> ImportResult:
        tenant = scope.tenant(tenant)
        # Read raw: the body is CSV, not JSON (documented by IMPORT_REQUEST_BODY).
        event = app.current_event
        content_type = (event.headers.get("Content-Type") or "").split(";")[0].strip().lower()
        if content_type not in {"text/csv", "text/plain"}:
            raise ApiError(415, "send the records as text/csv")
        csv_text = event.decoded_body or ""
        if not csv_text.strip():
            raise ApiError(400, "the CSV body is empty")
        with refused_as(400):
            result = identity.import_app_records(deps, tenant, csv_text, scope.principal.who)
        return ImportResult.model_validate(result)
