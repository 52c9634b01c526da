"""Stored copies hold no password: secret values emptied, every other byte kept, and the
reader reading the copy exactly as it read the original."""

from __future__ import annotations

import csv
import io
import random
import re
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

import pytest

from rostersync.errors import BundleError
from rostersync.models import Entity
from rostersync.sources.base import FetchContext
from rostersync.sources.bundle import FolderBundle, ZipBundle
from rostersync.sources.oneroster_csv import (
    OneRosterCsvSource,
    OneRosterCsvSpec,
    strip_secret_columns,
    strip_secret_columns_zip,
)
from tests.unit.test_oneroster_csv import BUNDLES, ONE_ORG, Read, bundle, oneroster_data

__all__ = ["oneroster_data"]  # the fixture, shared

HEADER = (
    "sourcedId,status,dateLastModified,enabledUser,orgSourcedIds,role,username,userIds,"
    "givenName,familyName,middleName,identifier,email,sms,phone,agentSourcedIds,grades,"
    "password\n"
)
SECRET = re.compile(rb"PW\d+|W\d+x")


def row(i: int, given: str = "Ann", password: str | None = None) -> str:
    secret = password if password is not None else f"PW{i}x"
    return f"u{i},active,,true,o1,student,user{i},,{given},Lee,,,,,,,,{secret}\n"


def reads_alike(tmp_path: Path, original: bytes, stripped: bytes) -> tuple[Read, Read]:
    """The reader on the original and on the stripped copy: the same records, summaries
    and issues; for a damaged file the same records and trust (the ids the reader picks
    out of swallowed rows are gone with the rest of their cells)."""
    reads = []
    for name, body in (("original", original), ("stripped", stripped)):
        reads.append(Read(bundle(tmp_path / name, {"orgs.csv": ONE_ORG, "users.csv": body})))
    a, b = reads
    assert a.records == b.records
    if a.summaries[Entity.USERS].untrusted is None:
        assert a.summaries == b.summaries
        assert a.issues == b.issues
    else:
        sa, sb = a.summaries[Entity.USERS], b.summaries[Entity.USERS]
        assert (sa.untrusted, sa.unreadable_rows) == (sb.untrusted, sb.unreadable_rows)
        assert set(sb.skipped_ids) <= set(sa.skipped_ids)
    return a, b


def test_password_values_go_and_every_other_byte_stays(tmp_path: Path) -> None:
    """Given a password column whose values hold commas and quotes, when stripped, then
    only the values are gone: the header, the quoting of other cells, the line ends."""
    body = (
        HEADER
        + row(1, password='"pa,ss""word"')
        + row(2, given='"Smith, ""Jo"""', password='"x,y"')
        + row(3, password="")
        + row(4, password='"mul\r\nti"')
    ).replace("\n", "\r\n", 2)
    stripped = strip_secret_columns(body.encode())
    expected = (
        HEADER
        + row(1, password='""')
        + row(2, given='"Smith, ""Jo"""', password='""')
        + row(3, password="")
        + row(4, password='"\r\n"')
    ).replace("\n", "\r\n", 2)
    assert stripped.decode() == expected
    reads_alike(tmp_path, body.encode(), stripped)


def test_same_delimiter_bom_and_crlf(tmp_path: Path) -> None:
    plain = HEADER + row(1) + row(2, given='"Ann; Jr"')
    excel = b"\xef\xbb\xbf" + plain.replace(",", ";").replace("\n", "\r\n").encode()
    stripped = strip_secret_columns(excel)
    assert stripped.startswith(b"\xef\xbb\xbf") and stripped.count(b"\r\n") == 3
    assert stripped == excel.replace(b"PW1x", b"").replace(b"PW2x", b"")
    reads_alike(tmp_path, excel, stripped)


def test_a_file_without_secrets_is_returned_as_it_is() -> None:
    data = ONE_ORG.encode()
    assert strip_secret_columns(data) is data
    assert strip_secret_columns(b"") == b""
    binary = bytes(range(256)) * 4
    assert strip_secret_columns(binary) is binary


def test_a_ragged_row_keeps_its_id_and_loses_every_place_the_password_may_be(
    tmp_path: Path,
) -> None:
    short = "u2,active,,true,o1,student,user2,,Ann,Lee,,,,,,,PW2x\n"  # one cell short
    long = "u3,active,,true,o1,student,user3,,Bo, Jr,Lee,,,,,,,,PW3x\n"  # one cell more
    body = (HEADER + row(1) + short + long + row(4)).encode()
    stripped = strip_secret_columns(body)
    assert not SECRET.search(stripped)
    rows = list(csv.reader(io.StringIO(stripped.decode())))
    assert [len(r) for r in rows] == [18, 18, 17, 19, 18]
    assert [r[0] for r in rows[1:]] == ["u1", "u2", "u3", "u4"]
    original, _ = reads_alike(tmp_path, body, stripped)
    assert original.summaries[Entity.USERS].skipped_ids == ["u2", "u3"]


def test_a_stray_quote_keeps_its_damage_and_loses_the_passwords_it_swallowed(
    tmp_path: Path,
) -> None:
    body = (
        HEADER
        + row(1)
        + row(2, given='"Jo')
        + row(3)
        + row(4)
        + row(5, given='Ki"')
        + row(6)
        + row(7, given='"Al')  # open to the end of the file
        + row(8)
    ).encode()
    stripped = strip_secret_columns(body)
    assert not SECRET.search(stripped)
    original, copy = reads_alike(tmp_path, body, stripped)
    assert original.summaries[Entity.USERS].untrusted is not None
    assert set(copy.by_id(Entity.USERS)) == {"u1", "u6"}


def damaged(rng: random.Random) -> bytes:
    """A users.csv with a few quotes, delimiters and cuts in random places past its
    header, and passwords everywhere."""
    givens = ["Ann", '"Bo, Jr"', '"Q""uote"', '"Line\nbreak"']
    text = HEADER + "".join(row(i, given=rng.choice(givens)) for i in range(30))
    text = text.replace("\n", rng.choice(["\n", "\r\n"]))
    head = text.index("\n") + 1
    for _ in range(rng.randint(1, 3)):
        if len(text) <= head + 1:
            break
        pos = rng.randrange(head, len(text))
        kind = rng.random()
        if kind < 0.5:
            text = text[:pos] + '"' + text[pos:]
        elif kind < 0.7:
            text = text[:pos] + "," + text[pos:]
        elif kind < 0.9:
            text = text[:pos] + text[pos + 1 :]
        else:
            text = text[:pos]
    return text.encode()


def test_damaged_files_lose_every_password_and_read_as_before(tmp_path: Path) -> None:
    for seed in range(300):
        body = damaged(random.Random(seed))
        stripped = strip_secret_columns(body)
        assert not SECRET.search(stripped), seed
        original = Read(bundle(tmp_path / str(seed) / "a", {"users.csv": body}))
        copy = Read(bundle(tmp_path / str(seed) / "b", {"users.csv": stripped}))
        a, b = original.summaries[Entity.USERS], copy.summaries[Entity.USERS]
        assert (a.untrusted is None, a.unreadable_rows == 0) == (
            b.untrusted is None,
            b.unreadable_rows == 0,
        ), seed
        if a.untrusted is None and a.unreadable_rows == 0:
            assert original.records == copy.records, seed
            assert a.skipped_ids == b.skipped_ids, seed


def test_the_shared_bundles_read_the_same_without_their_passwords(
    oneroster_data: Path, tmp_path: Path
) -> None:
    for name in BUNDLES:
        source = oneroster_data / name
        folder = tmp_path / name
        folder.mkdir()
        changed = []
        for path in source.glob("*.csv"):
            data = path.read_bytes()
            stripped = strip_secret_columns(data)
            if stripped is not data:
                changed.append(path.name)
            (folder / path.name).write_bytes(stripped)
        assert changed == (["users.csv"] if name.startswith("moodle") else [])
        assert b"Password1-" not in (folder / "users.csv").read_bytes()
        original, copy = Read(FolderBundle(source)), Read(FolderBundle(folder))
        assert original.records == copy.records
        assert original.summaries == copy.summaries
        assert original.issues == copy.issues


def zipped(folder: Path, dest: Path) -> Path:
    with zipfile.ZipFile(dest, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("bundle/", b"")
        for path in sorted(folder.glob("*.csv")):
            zf.write(path, f"bundle/{path.name}")
    return dest


def test_a_zip_bundle_is_rewritten_member_by_member(oneroster_data: Path, tmp_path: Path) -> None:
    src = zipped(oneroster_data / "moodle-full-1.1", tmp_path / "moodle.zip")
    dest = tmp_path / "stripped.zip"
    assert strip_secret_columns_zip(src, dest)
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dest) as zout:
        assert [i.filename for i in zin.infolist()] == [i.filename for i in zout.infolist()]
        for info in zin.infolist():
            before, after = zin.read(info), zout.read(info.filename)
            assert zout.getinfo(info.filename).compress_type == info.compress_type
            if info.filename.endswith("users.csv"):
                assert b"Password1-" in before and b"Password1-" not in after
            else:
                assert before == after
            assert zout.getinfo(info.filename).date_time == info.date_time
    readers = [ZipBundle(src), ZipBundle(dest)]
    try:
        original, copy = (Read(z) for z in readers)
    finally:
        for z in readers:
            z.close()
    assert original.records == copy.records and original.issues == copy.issues


def test_a_zip_without_secret_values_is_left_alone(oneroster_data: Path, tmp_path: Path) -> None:
    """lepo's users.csv has a password column, every value blank."""
    dest = tmp_path / "out.zip"
    assert not strip_secret_columns_zip(oneroster_data / "lepo-en-1.1" / "oneroster.zip", dest)
    assert not dest.exists()


# --- fetch ---------------------------------------------------------------------------


class MemoryRaw:
    """A raw area and the tenant's objects, in memory."""

    def __init__(self, objects: dict[str, bytes]) -> None:
        self.objects = objects
        self.files: dict[str, bytes] = {}

    def names(self) -> list[str]:
        return sorted(self.files)

    @contextmanager
    def open(self, name: str) -> Iterator[IO[bytes]]:
        yield io.BytesIO(self.files[name])

    def exists(self, name: str) -> bool:
        return name in self.files

    def put_bytes(self, name: str, body: bytes) -> None:
        self.files[name] = body

    @contextmanager
    def writer(self, name: str) -> Iterator[IO[bytes]]:
        out = io.BytesIO()
        yield out
        self.files[name] = out.getvalue()

    def copy_in(self, key: str, name: str) -> None:
        self.files[name] = self.objects[key]

    def list_objects(self, prefix: str) -> list[str]:
        return sorted(k for k in self.objects if k.startswith(prefix))

    def object_exists(self, key: str) -> bool:
        return key in self.objects

    def download(self, name: str, path: Path) -> None:
        path.write_bytes(self.files[name])


class NoSecrets:
    def get_secret(self, tenant: str, name: str) -> str | None:
        return None


def fetch(raw: MemoryRaw, key: str) -> dict[str, Any]:
    ctx = FetchContext(tenant="t1", run_id="r1", mode="full", raw=raw, secrets=NoSecrets())
    return OneRosterCsvSource().fetch(OneRosterCsvSpec(key=key), ctx).counts


def test_fetch_keeps_no_password_in_the_raw_copy(oneroster_data: Path, tmp_path: Path) -> None:
    folder = oneroster_data / "moodle-full-1.1"
    objects = {f"uploads/b/{p.name}": p.read_bytes() for p in folder.glob("*.csv")}
    objects["uploads/z.zip"] = zipped(folder, tmp_path / "z.zip").read_bytes()

    raw = MemoryRaw(objects)
    counts = fetch(raw, "uploads/b/")
    assert counts["secrets_removed"] == 1
    assert all(b"Password1-" not in body for body in raw.files.values())
    assert raw.files["orgs.csv"] == objects["uploads/b/orgs.csv"]

    from_zip = MemoryRaw(objects)
    assert fetch(from_zip, "uploads/z.zip")["secrets_removed"] == 1
    (tmp_path / "bundle.zip").write_bytes(from_zip.files["bundle.zip"])
    with zipfile.ZipFile(tmp_path / "bundle.zip") as zf:
        assert all(b"Password1-" not in zf.read(i) for i in zf.infolist())
    copy = tmp_path / "copy"
    copy.mkdir()
    for name, body in raw.files.items():
        (copy / name).write_bytes(body)
    assert Read(FolderBundle(copy)).records == Read(FolderBundle(folder)).records


def test_fetch_of_a_broken_zip_says_so() -> None:
    raw = MemoryRaw({"uploads/broken.zip": b"this is not a zip"})
    with pytest.raises(BundleError, match="not a readable zip"):
        fetch(raw, "uploads/broken.zip")
