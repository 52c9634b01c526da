"""An upload stored stripped is not stripped again by the fetch while it is the version
its marker names; any other object (replaced since, never marked, an inbox file) is
stripped as before, so no raw copy ever holds a password."""

from __future__ import annotations

import dataclasses
import io
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from rostersync.application.no_secrets import store_without_secrets
from rostersync.application.sync import upload_bundle
from rostersync.config import stack_settings
from rostersync.local.runtime import LocalCloud
from rostersync.pipeline.contracts import RunState
from rostersync.pipeline.deps import Deps, build_deps
from rostersync.pipeline.fetch import fetch
from rostersync.sources.oneroster_csv import OneRosterCsvSpec
from rostersync.storage import keys
from rostersync.storage.objects import mark_stored_stripped, stored_stripped, stripped_marker_key

TENANT = "t1"
RUN = "20260301T080000Z-0000000a"
ORGS = "sourcedId,status,dateLastModified,name,type,identifier,parentSourcedId\no1,,,A,school,,\n"
USERS = (
    "sourcedId,status,dateLastModified,enabledUser,orgSourcedIds,role,username,userIds,"
    "givenName,familyName,middleName,identifier,email,sms,phone,agentSourcedIds,grades,"
    "password\n"
    "u1,active,,true,o1,student,ann,,Ann,Lee,,,,,,,,Secret-Pw-1\n"
    "u2,active,,true,o1,student,bob,,Bob,Lee,,,,,,,,Secret-Pw-2\n"
)


@pytest.fixture(params=["embedded", "moto"])
def deps(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Deps]:
    state = None if request.param == "moto" else tmp_path / "state"
    with LocalCloud(state, storage=request.param):
        yield build_deps(stack_settings())


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    (bundle / "orgs.csv").write_text(ORGS)
    (bundle / "users.csv").write_text(USERS)
    return bundle


def _fetch(deps: Deps, key: str) -> tuple[dict[str, Any], dict[str, bytes]]:
    """The fetch step on ``key``: its counts, and the raw area's files."""
    state = RunState(tenant=TENANT, run_id=RUN, source=OneRosterCsvSpec(key=key))
    fetch(state, deps)
    raw = keys.raw_prefix(TENANT, RUN)
    files = {k.removeprefix(raw): deps.store.get_bytes(k) or b"" for k in deps.store.list_keys(raw)}
    return state.counts["fetch"], files


def test_an_upload_stored_stripped_is_copied_as_it_is(deps: Deps, folder: Path) -> None:
    prefix = upload_bundle(deps, TENANT, RUN, folder)
    users = prefix + "users.csv"
    assert b"Secret-Pw" not in (deps.store.get_bytes(users) or b"")
    assert stored_stripped(deps.store, users) and stored_stripped(deps.store, prefix + "orgs.csv")
    marker = stripped_marker_key(users)
    assert marker is not None and not marker.startswith(prefix)

    counts, files = _fetch(deps, prefix)

    assert counts == {"files": 2, "ignored_nested": 0, "secrets_removed": 0}
    assert files["users.csv"] == deps.store.get_bytes(users)
    assert b"Secret-Pw" not in files["users.csv"]


def test_the_fetch_trusts_the_marker_only_for_the_version_it_names(
    deps: Deps, folder: Path
) -> None:
    """The fetch skips the rewrite exactly when the marker names the object's current
    version: a marker put on an object holding passwords (which ``store_without_secrets``
    never does) is taken at its word, which shows the rewrite is skipped; the object
    written again after its marker (other bytes: another version) is stripped."""
    prefix = keys.uploads_prefix(TENANT, RUN)
    users = prefix + "users.csv"
    deps.store.put_bytes(prefix + "orgs.csv", ORGS.encode())
    deps.store.put_bytes(users, USERS.encode())
    mark_stored_stripped(deps.store, users)

    _, trusted = _fetch(deps, prefix)
    assert b"Secret-Pw-1" in trusted["users.csv"]

    deps.store.put_bytes(users, USERS.encode().replace(b"Secret-Pw-2", b"Secret-Pw-3"))
    assert not stored_stripped(deps.store, users)
    counts, files = _fetch(deps, prefix)
    assert counts["secrets_removed"] == 1
    assert b"Secret-Pw" not in files["users.csv"]
    assert files["users.csv"].count(b"\n") == USERS.count("\n")


def test_an_upload_replaced_after_its_marker_is_stripped(deps: Deps, folder: Path) -> None:
    prefix = upload_bundle(deps, TENANT, RUN, folder)
    users = prefix + "users.csv"
    # The object written again (a second upload under the same key, passwords and all).
    deps.store.put_bytes(users, USERS.encode())
    assert not stored_stripped(deps.store, users)

    counts, files = _fetch(deps, prefix)

    assert counts["secrets_removed"] == 1
    assert b"Secret-Pw" not in files["users.csv"]


def test_objects_never_marked_are_stripped(deps: Deps, folder: Path, tmp_path: Path) -> None:
    """An inbox file has no marker (nor a place for one); an upload put by other means
    has none either; an unreadable zip is stored unmarked."""
    inbox = keys.inbox_prefix(TENANT) + "users.csv"
    deps.store.put_bytes(inbox, USERS.encode())
    assert stripped_marker_key(inbox) is None and not stored_stripped(deps.store, inbox)
    prefix = keys.uploads_prefix(TENANT, RUN)
    deps.store.put_bytes(prefix + "orgs.csv", ORGS.encode())
    deps.store.put_bytes(prefix + "users.csv", USERS.encode())
    counts, files = _fetch(deps, prefix)
    assert counts["secrets_removed"] == 1 and b"Secret-Pw" not in files["users.csv"]

    broken = tmp_path / "broken.zip"
    broken.write_bytes(b"not a zip")
    store_without_secrets(deps.store, broken, prefix + "broken.zip")
    assert not stored_stripped(deps.store, prefix + "broken.zip")


def test_large_files_are_stripped_in_another_process_while_the_caller_goes_on(
    deps: Deps, folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A bundle whose large files are stripped in other processes is stored exactly as
    one stripped in this process: the same bytes, the same markers; ``meanwhile`` runs
    once, before the stripped files are stored."""
    import os

    from rostersync.application import no_secrets
    from rostersync.sources.oneroster_csv.secret_columns import strip_secret_columns

    (folder / "demographics.csv").write_text("sourcedId,status,birthDate\nu1,,2015-01-02\n")
    (folder / "classes.csv").write_text("sourcedId,title,password\nc1,Maths,\n")  # no value
    monkeypatch.setattr(no_secrets, "BACKGROUND_BYTES", 1)  # every CSV with a secret column
    seen: list[tuple[int, bool]] = []
    prefix = keys.uploads_prefix(TENANT, RUN)

    def meanwhile() -> None:
        seen.append((os.getpid(), deps.store.get_bytes(prefix + "users.csv") is None))

    assert upload_bundle(deps, TENANT, RUN, folder, meanwhile) == prefix

    assert seen == [(os.getpid(), True)]
    for name in ("orgs.csv", "users.csv", "demographics.csv", "classes.csv"):
        stored = deps.store.get_bytes(prefix + name)
        assert stored == strip_secret_columns((folder / name).read_bytes()), name
        assert stored_stripped(deps.store, prefix + name), name
    assert b"Secret-Pw" not in (deps.store.get_bytes(prefix + "users.csv") or b"")
    counts, files = _fetch(deps, prefix)
    assert counts["secrets_removed"] == 0 and b"Secret-Pw" not in files["users.csv"]


def test_a_file_that_cannot_be_stored_beside_meanwhile_fails_the_upload(
    deps: Deps, folder: Path
) -> None:
    """The files ``meanwhile`` runs beside are stored by another thread: a file that
    cannot be read fails the upload after ``meanwhile`` has run, as it does without it;
    an error of ``meanwhile`` is raised once those files are stored."""
    from rostersync.application.no_secrets import store_all_without_secrets

    prefix = keys.uploads_prefix(TENANT, RUN)
    files = [(folder / "orgs.csv", prefix + "orgs.csv"), (folder / "gone.csv", prefix + "gone.csv")]
    ran: list[str] = []
    with pytest.raises(FileNotFoundError):
        store_all_without_secrets(deps.store, files, lambda: ran.append("ran"))
    assert ran == ["ran"]
    assert deps.store.get_bytes(prefix + "orgs.csv") == ORGS.encode()

    class Broken(Exception):
        pass

    def broken() -> None:
        raise Broken

    other = keys.uploads_prefix(TENANT, "20260301T080000Z-0000000b")
    with pytest.raises(Broken):
        upload_bundle(deps, TENANT, "20260301T080000Z-0000000b", folder, broken)
    for name in ("orgs.csv", "users.csv"):
        stored = deps.store.get_bytes(other + name)
        assert stored is not None and b"Secret-Pw" not in stored, name


def test_a_zip_never_marked_is_stripped_and_unzipped_from_the_stripped_copy(
    deps: Deps, folder: Path, tmp_path: Path
) -> None:
    """A zip dropped with passwords, one of its files from twice the part size: fetch
    empties the password column, then unzips the zip it stored (one download), so
    neither the zip nor the files beside it hold a password."""
    zipped = tmp_path / "drop.zip"
    with zipfile.ZipFile(zipped, "w", zipfile.ZIP_DEFLATED) as out:
        for path in sorted(folder.iterdir()):
            out.write(path, f"export/{path.name}")
    key = keys.inbox_prefix(TENANT) + "drop.zip"
    deps.store.put_bytes(key, zipped.read_bytes())
    small = deps.settings.model_copy(update={"normalize_part_bytes": 64})
    counts, files = _fetch(dataclasses.replace(deps, settings=small), key)

    assert counts == {"files": 1, "ignored_nested": 0, "secrets_removed": 1, "unzipped": 2}
    assert sorted(files) == ["bundle.zip", "bundle.zip.files.json", "orgs.csv", "users.csv"]
    with zipfile.ZipFile(io.BytesIO(files["bundle.zip"])) as stored:
        assert b"Secret-Pw" not in stored.read("export/users.csv")
    assert b"Secret-Pw" not in files["users.csv"]
    assert files["users.csv"].count(b"\n") == USERS.count("\n")
    assert files["orgs.csv"] == ORGS.encode()
