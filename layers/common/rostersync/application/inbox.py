"""File arrival: a bundle dropped under ``inbox/{tenant}/`` starts a run once complete.

A bundle is either a zip (``inbox/{tenant}/any.zip``, in a sub-folder or not) or the
loose files of one folder (``inbox/{tenant}/{folder}/manifest.csv`` and the CSV files it
lists). Every object created in the inbox is handled on its own, in any order:

* a zip starts a run on arrival if it is a readable zip holding ``manifest.csv`` or a
  OneRoster CSV file; any other zip is rejected;
* a loose CSV file, the manifest included, starts its folder's run when the manifest is
  there and so is every file it lists as ``bulk`` or ``delta`` (whichever arrives last
  starts it); until then nothing happens. A folder used again for the next drop counts
  only files uploaded since its previous run started, so a half-replaced folder never
  starts a run mixing two days;
* ``inbox/{tenant}/guardians.csv`` is the tenant's guardian file (``sources.guardian_file``):
  no bundle, it starts nothing and every run of the tenant merges it;
* a key outside a known tenant's inbox, with odd characters or relative segments, or of
  a file that is neither ``.csv`` nor ``.zip``, is rejected: listed under the tenant (if
  known) with the reason, and announced as an ``inbox.rejected`` event (key and reason,
  never the content). It is never processed: it moves out of the inbox's listing to the
  tenant's ``rejected/`` folder, a ``.reason.txt`` file beside it saying why;
* a file whose name has other characters (``my bundle (1).zip``, as a browser or Excel
  names a copy) is renamed to the nearest acceptable name (``my_bundle_1.zip``) and
  handled under it; one that cannot be renamed is rejected, saying so.

One run per bundle version: the start is recorded with a conditional put keyed by the
bundle (zip key or folder prefix) and the version of the zip or the manifest, so a late
file, a re-delivered event or two files arriving together never start a second run.
When the tenant already has a run going the bundle is *deferred*: recorded, announced,
retried by the next file that arrives for it, and offered by ``latest_complete_bundle``
to the next *Sync now* or schedule. A manifest listing any delta file makes a quick run.
"""

from __future__ import annotations

import hashlib
import io
import re
import time
import unicodedata
import zipfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal
from urllib.parse import quote_plus, unquote_plus

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from rostersync.application.launch import RunStartDeps
from rostersync.application.no_secrets import strip_stored_object
from rostersync.application.runs import RunInProgress, begin_run
from rostersync.errors import FatalError, InvalidKey
from rostersync.models import SyncMode
from rostersync.observability import logger
from rostersync.pipeline.deps import Deps
from rostersync.sources.guardian_file import INBOX_NAME as GUARDIAN_FILE
from rostersync.sources.oneroster_csv import FILE_NAMES, listed_files, read_manifest_properties
from rostersync.storage import keys
from rostersync.storage.inbox import InboxObject
from rostersync.storage.ports import InboxObjectsPort, InboxRecordsPort

InboxStatus = Literal[
    "started",  # a run was started for the bundle
    "waiting",  # the bundle is not complete yet
    "already_started",  # the bundle's run was started before (a late file, a retry)
    "deferred",  # complete, but the tenant has a run going
    "rejected",  # the key or the file is not acceptable
    "ignored",  # not an object to act on (a folder marker, another bucket, gone)
]

MANIFEST = "manifest.csv"
#: File names that make a zip a roster bundle.
ROSTER_FILES = frozenset({MANIFEST, *(name.lower() for name in FILE_NAMES.values())})
BUNDLE_SUFFIXES = (".csv", ".zip")
#: A manifest is a few hundred bytes; more than this is not read.
MANIFEST_LIMIT = 64 * 1024
#: The longest key accepted: its bundle record's sort key must stay well under DynamoDB's
#: 1 KiB limit.
MAX_KEY_LENGTH = 700
#: How many candidate bundles ``latest_complete_bundle`` inspects, newest first.
MAX_CANDIDATES = 25
REJECTED_EVENT = "inbox.rejected"
#: The folder of each tenant's inbox where rejected files go, a reason file beside each.
REJECTED_FOLDER = "rejected"
#: Names SFTP clients upload under before renaming the finished file (WinSCP, FileZilla,
#: lftp, curl...): not a file to judge yet.
PARTIAL_SUFFIXES = (".filepart", ".part", ".partial", ".tmp", ".crdownload")
REASON_SUFFIX = ".reason.txt"
_ODD_CHARACTERS = re.compile(r"[^A-Za-z0-9._-]+")


def _is_file_name(name: str) -> bool:
    try:
        keys.check_file_name(name)
    except InvalidKey:
        return False
    return True


def acceptable_name(name: str) -> str | None:
    """The nearest name the inbox accepts (A-Z a-z 0-9 . _ -): accents dropped, every run
    of other characters one ``_``, none before a dot or at either end
    (``my bundle (1).zip`` → ``my_bundle_1.zip``); None if no letter or digit is left
    before the extension."""
    if _is_file_name(name):
        return name
    ascii_name = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode()
    renamed = _ODD_CHARACTERS.sub("_", ascii_name)
    renamed = re.sub(r"_+\.", ".", renamed).strip("_")
    stem = renamed.rsplit(".", 1)[0] if "." in renamed else renamed
    return renamed if _is_file_name(renamed) and any(c.isalnum() for c in stem) else None


DEFERRED_EVENT = "inbox.deferred"


class InboxOutcome(BaseModel):
    """What handling one created object did."""

    model_config = ConfigDict(extra="forbid")

    key: str
    status: InboxStatus
    tenant: str | None = None
    #: The zip key or the folder prefix (ending in '/') of the bundle.
    bundle: str | None = None
    reason: str | None = None
    run_id: str | None = None
    mode: SyncMode | None = None
    #: Where a rejected file went (``inbox/{tenant}/rejected/…``), or a renamed one.
    moved_to: str | None = None


class InboxReport(BaseModel):
    """What the handler returns: one outcome per object in the event."""

    outcomes: list[InboxOutcome] = Field(default_factory=list)


# --------------------------------------------------------------------------- events


class _Named(BaseModel):
    model_config = ConfigDict(extra="ignore")

    name: str


class _S3Object(BaseModel):
    model_config = ConfigDict(extra="ignore")

    key: str


class _ObjectCreatedDetail(BaseModel):
    model_config = ConfigDict(extra="ignore")

    bucket: _Named
    object: _S3Object


class _EventBridgeObjectCreated(BaseModel):
    """S3's "Object Created" event on EventBridge (the bucket's EventBridge notifications)."""

    model_config = ConfigDict(extra="ignore", populate_by_name=True)

    source: Literal["aws.s3"]
    detail_type: Literal["Object Created"] = Field(alias="detail-type")
    detail: _ObjectCreatedDetail


class _S3Entity(BaseModel):
    model_config = ConfigDict(extra="ignore")

    bucket: _Named
    object: _S3Object


class _S3Record(BaseModel):
    """One record of an S3 event notification (moto's lacks fields AWS sends: lenient)."""

    model_config = ConfigDict(extra="ignore", populate_by_name=True)

    event_name: str = Field(alias="eventName")
    s3: _S3Entity


class _S3Notification(BaseModel):
    model_config = ConfigDict(extra="ignore", populate_by_name=True)

    records: list[_S3Record] = Field(alias="Records")


@dataclass(frozen=True)
class CreatedObject:
    """A created object named by an event, its key decoded."""

    bucket: str
    key: str


def created_objects(event: dict[str, Any]) -> list[CreatedObject]:
    """The objects an EventBridge "Object Created" event or an S3 notification names.

    Keys arrive URL-encoded (``inbox/t1/a+b.csv``) in both shapes, on AWS and under moto.
    """
    try:
        bridged = _EventBridgeObjectCreated.model_validate(event)
    except ValidationError:
        pass
    else:
        detail = bridged.detail
        return [CreatedObject(detail.bucket.name, unquote_plus(detail.object.key))]
    try:
        notification = _S3Notification.model_validate(event)
    except ValidationError as exc:
        raise FatalError("not an S3 object-created event") from exc
    return [
        CreatedObject(record.s3.bucket.name, unquote_plus(record.s3.object.key))
        for record in notification.records
        if record.event_name.startswith("ObjectCreated:")
    ]


def object_created_event(bucket: str, key: str) -> dict[str, Any]:
    """The EventBridge event S3 sends for a new object (what the local drop box raises)."""
    return {
        "version": "0",
        "source": "aws.s3",
        "detail-type": "Object Created",
        "time": datetime.now(UTC).isoformat(timespec="seconds"),
        "detail": {"bucket": {"name": bucket}, "object": {"key": quote_plus(key, safe="/")}},
    }


def handle_event(event: dict[str, Any], starting: RunStartDeps) -> InboxReport:
    """Handle every object an S3 event names; objects of another bucket are ignored."""
    report = InboxReport()
    bucket = starting.deps.store.bucket
    for created in created_objects(event):
        if created.bucket != bucket:
            report.outcomes.append(
                InboxOutcome(key=created.key, status="ignored", reason="another bucket")
            )
            continue
        report.outcomes.append(handle_object_created(starting, created.key))
    return report


# ------------------------------------------------------------------------ the inbox


def inbox_objects(deps: Deps) -> InboxObjectsPort:
    """The inbox's objects, through the pipeline's S3 client and bucket."""
    return deps.inbox_objects


def inbox_records(deps: Deps) -> InboxRecordsPort:
    """The inbox's records, in the tenants table."""
    return deps.inbox_records


@dataclass(frozen=True)
class BundleCheck:
    """Whether a bundle is complete, and what a run of it would be."""

    bundle: str
    complete: bool
    #: The zip's or the manifest's upload token (see ``InboxObject.token``).
    version: str = ""
    mode: SyncMode = "full"
    #: Why it is not complete (waiting) or not acceptable (``invalid``).
    reason: str | None = None
    invalid: bool = False
    #: The upload token of each file the run will read, by lower-case name.
    files: dict[str, str] = field(default_factory=dict)
    #: The start recorded for this version, if any.
    claim: dict[str, Any] | None = None


def parse_manifest(body: bytes) -> dict[str, str]:
    """``{file name (lower case, with .csv): mode (lower case)}`` of a manifest's
    ``file.*`` properties, read as the normalize step reads them (the reader's own
    manifest parser: encoding, delimiter, header, repeats)."""
    return listed_files(read_manifest_properties(io.BytesIO(body)))


def _mode_of(listed: dict[str, str]) -> SyncMode:
    return "quick" if "delta" in listed.values() else "full"


def check_zip(objects: InboxObjectsPort, item: InboxObject) -> BundleCheck:
    """A zip is a bundle if it opens and holds a manifest or a OneRoster CSV file; only
    its central directory (and the manifest, if any) is read."""
    try:
        with objects.open_seekable(item) as stream, zipfile.ZipFile(stream) as archive:
            members: dict[str, zipfile.ZipInfo] = {}
            for info in archive.infolist():
                base = info.filename.rsplit("/", 1)[-1].lower()
                if info.is_dir() or info.filename.startswith("__MACOSX/") or not base:
                    continue
                members.setdefault(base, info)
            if not ROSTER_FILES & set(members):
                return BundleCheck(
                    item.key,
                    False,
                    item.token,
                    reason="the zip holds neither manifest.csv nor a OneRoster CSV file",
                    invalid=True,
                )
            mode: SyncMode = "full"
            if MANIFEST in members:
                with archive.open(members[MANIFEST]) as manifest:
                    mode = _mode_of(parse_manifest(manifest.read(MANIFEST_LIMIT)))
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, ValueError, NotImplementedError):
        return BundleCheck(
            item.key, False, item.token, reason="not a readable zip file", invalid=True
        )
    return BundleCheck(item.key, True, item.token, mode, files={item.name.lower(): item.token})


def check_folder(
    objects: InboxObjectsPort, records: InboxRecordsPort, tenant: str, prefix: str
) -> BundleCheck:
    """A folder is complete when its manifest is there and so is every file it lists as
    bulk or delta, each uploaded since the folder's previous run (if any) started."""
    present = {o.name.lower(): o for o in objects.list_folder(prefix).files}
    manifest = present.get(MANIFEST)
    if manifest is None:
        return BundleCheck(prefix, False, reason="waiting for manifest.csv")
    listed = parse_manifest(objects.read_head(manifest.key, MANIFEST_LIMIT))
    needed = sorted(name for name, mode in listed.items() if mode in ("bulk", "delta"))
    mode = _mode_of(listed)
    claims = records.claims(tenant, prefix)
    current = next((c for c in claims if c.get("version") == manifest.token), None)
    if current is not None:
        return BundleCheck(
            prefix, True, manifest.token, mode, files=dict(current.get("files", {})), claim=current
        )
    if not needed:
        return BundleCheck(
            prefix, False, manifest.token, mode, reason="the manifest lists no bulk or delta file"
        )
    # Files the previous run of this folder read are not part of a new bundle.
    previous: dict[str, str] = dict(claims[-1].get("files", {})) if claims else {}
    missing = [
        name for name in needed if name not in present or previous.get(name) == present[name].token
    ]
    if missing:
        return BundleCheck(
            prefix, False, manifest.token, mode, reason=f"waiting for {', '.join(missing)}"
        )
    files = {name: present[name].token for name in [*needed, MANIFEST]}
    return BundleCheck(prefix, True, manifest.token, mode, files=files)


class _Rejected(Exception):
    def __init__(
        self, reason: str, tenant: str | None = None, *, odd_characters: bool = False
    ) -> None:
        super().__init__(reason)
        self.reason = reason
        self.tenant = tenant
        self.odd_characters = odd_characters


def _validate_key(deps: Deps, key: str) -> tuple[str, str]:
    """``(tenant, rest)`` of an acceptable inbox key, else _Rejected with the reason."""
    parts = key.split("/")
    tenant_hint: str | None = None
    if len(parts) > 2 and parts[0] == "inbox":
        try:
            tenant_hint = keys.check_tenant(parts[1])
        except InvalidKey:
            tenant_hint = None
        if tenant_hint is not None and deps.tenants.get_meta(tenant_hint) is None:
            raise _Rejected("unknown tenant")
    try:
        tenant, rest = keys.tenant_of_inbox_key(key)
    except InvalidKey:
        raise _Rejected("the key is outside a tenant's inbox", tenant_hint) from None
    if len(key) > MAX_KEY_LENGTH:
        raise _Rejected("the key is too long", tenant)
    for segment in rest.split("/"):
        try:
            keys.check_file_name(segment)
        except InvalidKey:
            raise _Rejected(
                f"the name {segment!r} has characters other than A-Z a-z 0-9 . _ - "
                "(and no acceptable name could be made of it)",
                tenant,
                odd_characters=True,
            ) from None
    if not rest.lower().endswith(BUNDLE_SUFFIXES):
        raise _Rejected("not a bundle file (.csv or .zip)", tenant)
    return tenant, rest


def reject(deps: Deps, key: str, reason: str, tenant: str | None) -> InboxOutcome:
    """List the key under its tenant (when known), announce it, and move the file to the
    tenant's ``rejected/`` folder with a reason file beside it; nothing else."""
    at = datetime.now(UTC)
    moved = None
    if tenant is not None:
        inbox_records(deps).reject(tenant, key, reason, at)
        moved = _move_rejected(deps, tenant, key, reason, at)
    shown = key if len(key) <= 1024 else key[:1024] + "…"
    deps.events.publish([(REJECTED_EVENT, {"tenant": tenant, "key": shown, "reason": reason})])
    logger().warning(
        "inbox key rejected",
        extra={"tenant": tenant, "run": None, "step": "inbox", "key": shown, "reason": reason},
    )
    return InboxOutcome(key=key, status="rejected", tenant=tenant, reason=reason, moved_to=moved)


def rejected_key(tenant: str, key: str) -> str | None:
    """Where a rejected file of the tenant's inbox goes: ``rejected/`` and its path,
    every segment made acceptable; None for a key outside the inbox."""
    prefix = keys.inbox_prefix(tenant)
    if not key.startswith(prefix) or len(key) > MAX_KEY_LENGTH:
        return None
    segments = [acceptable_name(part) or _unnamed(part) for part in key[len(prefix) :].split("/")]
    return prefix + REJECTED_FOLDER + "/" + "/".join(segments)


def _unnamed(name: str) -> str:
    """A stand-in for a name with nothing acceptable in it (``日本.csv`` →
    ``unnamed-1a2b3c4d.csv``), the same for the same name."""
    digest = hashlib.blake2b(name.encode("utf-8", "replace"), digest_size=4).hexdigest()
    suffix = acceptable_name("x" + name[name.rfind(".") :]) if "." in name else None
    return f"unnamed-{digest}" + (suffix[1:] if suffix else "")


def _move_rejected(deps: Deps, tenant: str, key: str, reason: str, at: datetime) -> str | None:
    """Move a rejected file out of the listing, into ``rejected/`` with its reason."""
    target = rejected_key(tenant, key)
    objects = inbox_objects(deps)
    if target is None or objects.find(key) is None:
        return None
    name = key.rsplit("/", 1)[-1]
    note = (
        f"{name} was not synced: {reason}.\n"
        f"Rejected at {at.isoformat(timespec='seconds')}; nothing of it was read.\n"
        "Fix the file and upload it again (to the inbox, not to this folder).\n"
    )
    try:
        objects.copy(key, target)
        objects.put_bytes(target + REASON_SUFFIX, note.encode())
        objects.delete(key)
    except FatalError as exc:  # a storage that refuses (not retried: the file stays)
        logger().warning(
            "rejected file not moved", extra={"tenant": tenant, "error_type": type(exc).__name__}
        )
        return None
    return target


def _renamed(deps: Deps, tenant: str, key: str) -> str | None:
    """A file whose name the inbox does not accept, moved to the nearest acceptable name
    (its own new key), or None if it cannot be."""
    prefix = keys.inbox_prefix(tenant)
    parts = [acceptable_name(part) for part in key[len(prefix) :].split("/")]
    if any(part is None for part in parts):
        return None
    target = prefix + "/".join(str(part) for part in parts)
    if target == key or len(target) > MAX_KEY_LENGTH:
        return None
    objects = inbox_objects(deps)
    if objects.find(key) is None:
        return None
    objects.copy(key, target)
    objects.delete(key)
    return target


def handle_object_created(
    starting: RunStartDeps, key: str, *, now: float | None = None
) -> InboxOutcome:
    """Handle one object created in the inbox (``key`` already URL-decoded)."""
    deps = starting.deps
    if key.endswith("/"):
        # A folder marker (an SFTP mkdir): nothing to read.
        return InboxOutcome(key=key, status="ignored", reason="a folder")
    if key.lower().endswith(PARTIAL_SUFFIXES):
        return InboxOutcome(
            key=key, status="ignored", reason="an upload in progress (handled once renamed)"
        )
    try:
        tenant, rest = _validate_key(deps, key)
    except _Rejected as rejected:
        if rejected.odd_characters and rejected.tenant is not None:
            renamed = _renamed(deps, rejected.tenant, key)
            if renamed is not None:
                # Handled under its new name (on AWS the copy's own event finds it started).
                outcome = handle_object_created(starting, renamed, now=now)
                return outcome.model_copy(update={"moved_to": renamed})
        return reject(deps, key, rejected.reason, rejected.tenant)
    if rest.split("/", 1)[0] == REJECTED_FOLDER:
        return InboxOutcome(
            key=key, status="ignored", tenant=tenant, reason="in the rejected folder"
        )
    if rest == GUARDIAN_FILE:
        # The tenant's standing guardian file: no bundle, merged into every run.
        return _logged(
            InboxOutcome(
                key=key, status="ignored", tenant=tenant, reason="the guardian file (every run)"
            )
        )
    # Before anything reads it: no copy keeps a password (the rewrite's own event finds
    # nothing more to strip).
    strip_stored_object(deps.store, key)
    objects = inbox_objects(deps)
    records = inbox_records(deps)
    if rest.lower().endswith(".zip"):
        item = objects.find(key)
        if item is None:
            return InboxOutcome(key=key, status="ignored", tenant=tenant, reason="gone")
        check = check_zip(objects, item)
        if check.invalid:
            return reject(deps, key, check.reason or "not a bundle", tenant)
    else:
        prefix = key.rsplit("/", 1)[0] + "/"
        check = check_folder(objects, records, tenant, prefix)
    outcome = InboxOutcome(key=key, status="waiting", tenant=tenant, bundle=check.bundle)
    if not check.complete:
        return _logged(outcome.model_copy(update={"reason": check.reason}))
    return _logged(_start(starting, records, tenant, key, check, now or time.time()))


def _start(
    starting: RunStartDeps,
    records: InboxRecordsPort,
    tenant: str,
    key: str,
    check: BundleCheck,
    now: float,
) -> InboxOutcome:
    """Claim the bundle's version, then begin its run (or defer it)."""
    outcome = InboxOutcome(
        key=key, status="started", tenant=tenant, bundle=check.bundle, mode=check.mode
    )
    claimed = records.claim(
        tenant,
        check.bundle,
        check.version,
        {"files": check.files, "mode": check.mode, "trigger_key": key},
        now,
    )
    if not claimed:
        existing = next(
            (c for c in records.claims(tenant, check.bundle) if c.get("version") == check.version),
            {},
        )
        return outcome.model_copy(
            update={"status": "already_started", "run_id": existing.get("run_id")}
        )
    try:
        started = begin_run(
            starting.deps,
            starting.locks,
            starting.launcher,
            tenant,
            check.bundle,
            trigger="inbox",
            mode=check.mode,
        )
    except RunInProgress as busy:
        records.update_claim(
            tenant, check.bundle, check.version, {"status": "deferred", "behind": busy.run_id}
        )
        starting.deps.events.publish(
            [(DEFERRED_EVENT, {"tenant": tenant, "bundle": check.bundle, "behind": busy.run_id})]
        )
        return outcome.model_copy(
            update={"status": "deferred", "reason": f"run {busy.run_id} is in progress"}
        )
    except Exception as exc:
        records.update_claim(
            tenant, check.bundle, check.version, {"status": "failed", "error": type(exc).__name__}
        )
        raise
    records.update_claim(
        tenant, check.bundle, check.version, {"status": "started", "run_id": started.run_id}
    )
    return outcome.model_copy(update={"run_id": started.run_id})


def _logged(outcome: InboxOutcome) -> InboxOutcome:
    logger().info(
        "inbox object handled",
        extra={
            "tenant": outcome.tenant,
            "step": "inbox",
            "key": outcome.key,
            "status": outcome.status,
            "bundle": outcome.bundle,
            "run": outcome.run_id,
        },
    )
    return outcome


# ------------------------------------------------------------------ newest bundle


def _valid_segments(rest: str) -> bool:
    try:
        for segment in rest.split("/"):
            keys.check_file_name(segment)
    except InvalidKey:
        return False
    return True


def _candidates(objects: Iterable[InboxObject], prefix: str) -> list[tuple[datetime, str]]:
    """Zip keys and folder prefixes (holding a manifest) under the tenant's inbox, each
    with the time of its newest file."""
    newest: dict[str, datetime] = {}
    manifests: set[str] = set()
    for item in objects:
        rest = item.key[len(prefix) :]
        if not rest or not _valid_segments(rest) or rest.startswith(REJECTED_FOLDER + "/"):
            continue  # invalid keys are never bundles (they were rejected on arrival)
        lower = rest.lower()
        if lower.endswith(".zip"):
            newest[item.key] = item.last_modified
        elif lower.endswith(".csv"):
            folder = item.key.rsplit("/", 1)[0] + "/"
            if folder not in newest or newest[folder] < item.last_modified:
                newest[folder] = item.last_modified
            if item.name.lower() == MANIFEST:
                manifests.add(folder)
    found = [
        (moment, bundle)
        for bundle, moment in newest.items()
        if not bundle.endswith("/") or bundle in manifests
    ]
    return sorted(found, reverse=True)


def latest_complete_bundle(deps: Deps, tenant: str) -> str | None:
    """The newest complete bundle in the tenant's inbox: a zip key or a folder prefix
    (ending in '/') to pass to ``begin_run`` as the source key; None if there is none."""
    prefix = keys.inbox_prefix(tenant)
    objects = inbox_objects(deps)
    records = inbox_records(deps)
    listing = list(objects.list_all(prefix))
    by_key = {item.key: item for item in listing}
    for _, bundle in _candidates(listing, prefix)[:MAX_CANDIDATES]:
        if bundle.endswith("/"):
            check = check_folder(objects, records, tenant, bundle)
        else:
            check = check_zip(objects, by_key[bundle])
        if check.complete:
            return bundle
    return None


def rejected_keys(deps: Deps, tenant: str, limit: int = 100) -> list[dict[str, Any]]:
    """The tenant's rejected inbox keys, newest first: ``[{key, reason, rejected_at}]``."""
    return inbox_records(deps).rejections(tenant, limit)


def bundle_mode(deps: Deps, tenant: str, bundle: str) -> SyncMode:
    """How a bundle should be synced: quick if its manifest lists a delta file."""
    objects = inbox_objects(deps)
    if bundle.endswith("/"):
        return check_folder(objects, inbox_records(deps), tenant, bundle).mode
    item = objects.find(bundle)
    return "full" if item is None else check_zip(objects, item).mode


__all__ = [
    "BundleCheck",
    "CreatedObject",
    "InboxOutcome",
    "InboxReport",
    "bundle_mode",
    "check_folder",
    "check_zip",
    "created_objects",
    "handle_event",
    "handle_object_created",
    "latest_complete_bundle",
    "object_created_event",
    "parse_manifest",
    "rejected_keys",
]
