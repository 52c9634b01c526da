"""What the API needs beyond the pipeline's dependencies, and how it is wired."""

from __future__ import annotations

from dataclasses import dataclass

from aws_lambda_powertools.utilities.idempotency import BasePersistenceLayer

from rostersync.application.runs import RunLauncher
from rostersync.application.sftp_users import SftpUsers
from rostersync.config import ApiSettings, api_settings
from rostersync.pipeline.deps import Deps, idempotency_store, locks_repository
from rostersync.storage.ports import LocksPort

__all__ = ["ApiServices", "ApiSettings", "api_settings", "build_services"]


@dataclass(frozen=True)
class ApiServices:
    """Everything the routes touch outside themselves."""

    deps: Deps
    locks: LocksPort
    launcher: RunLauncher
    #: None: ``Idempotency-Key`` is ignored (for tests of other things only).
    idempotency: BasePersistenceLayer | None
    #: The runtime's SFTP users; None on AWS (Transfer Family users live in infra/).
    sftp_users: SftpUsers | None = None


def build_services(
    settings: ApiSettings,
    deps: Deps,
    launcher: RunLauncher,
    *,
    sftp_users: SftpUsers | None = None,
) -> ApiServices:
    """Clients for the API's own tables around the given pipeline dependencies
    (and ``sftp_users``: the local runtime's SFTP users)."""
    return ApiServices(
        deps=deps,
        locks=locks_repository(settings),
        launcher=launcher,
        idempotency=idempotency_store(settings, settings.idempotency_table),
        sftp_users=sftp_users,
    )
