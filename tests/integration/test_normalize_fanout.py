"""Normalize fanned out over the real Distributed Map (the ASL under moto, the handlers
in-process, the embedded store): large files cut into parts at row starts and read side
by side give, day after day, byte for byte the records, id lines and issues one pass
gives, on files damaged as real exports are (ids repeated in other parts, quoted line
breaks, a stray quote, bytes that are not UTF-8, blank and unknown statuses, extra
cells, a cut-off last row); and the same directory, links and reports. A part read again
after its marker changes nothing."""

from __future__ import annotations

import random
import shutil
import zipfile
from pathlib import Path
from typing import Any

import pytest

from rostersync.config import stack_settings
from rostersync.local.runtime import LocalCloud
from rostersync.models import ENTITY_ORDER
from rostersync.pipeline import normalize_parts
from rostersync.pipeline.contracts import NormalizePart, RunState
from rostersync.pipeline.deps import build_deps
from rostersync.pipeline.normalize import normalize_next, normalize_part_event
from rostersync.storage import keys

from .days import directory_and_links, inline_and_fanned, sync_days, three_days

TENANT = "district"


def _damage(folder: Path, name: str, seed: int) -> None:
    """Damage a file as exports are damaged, all over it (so in every part)."""
    rng = random.Random(seed)
    path = folder / name
    lines = [line.rstrip(b"\r") for line in path.read_bytes().split(b"\n")]
    header, body = lines[0], [line for line in lines[1:] if line]
    n = len(body)
    width = header.count(b",") + 1

    def cells(i: int) -> list[bytes]:
        return body[i].split(b",")

    for _ in range(6):  # an id repeated far from its first row
        i, j = rng.randrange(n // 3), rng.randrange(2 * n // 3, n)
        row = cells(j)
        row[0] = cells(i)[0]
        body[j] = b",".join(row)
    for _ in range(4):  # a blank status, and one OneRoster does not define
        for value in (b"", b"weird"):
            row = cells(rng.randrange(n))
            row[1] = value
            body[rng.randrange(n)] = b",".join(row)
    for _ in range(3):  # bytes that are not UTF-8
        j = rng.randrange(n)
        body[j] = body[j].replace(b"a", b"\xe9", 1)
    for _ in range(3):  # extra cells, blank and not
        j = rng.randrange(n)
        body[j] += rng.choice([b",,", b",x,y"])
    for _ in range(4):  # a quoted cell over two lines
        j = rng.randrange(n)
        row = cells(j)
        k = width - 1
        row[k] = b'"' + row[k] + b'\nmore"'
        body[j] = b",".join(row)
    for _ in range(5):  # CRLF line ends here and there
        j = rng.randrange(n)
        body[j] += b"\r"
    if name == "users.csv":
        row = cells(n - 8)  # a stray quote near the end swallows the rows after it
        row[8] = b'"' + row[8]
        body[n - 8] = b",".join(row)
    body[-1] = body[-1][: len(body[-1]) // 2]  # the last row cut off, no line end
    path.write_bytes(b"\n".join([header, *body]))


@pytest.fixture(scope="module")
def days(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    root = tmp_path_factory.mktemp("district")
    folders = three_days(root)
    shutil.copytree(root / "day1", root / "day4")
    for number, folder in enumerate([folders[0], folders[1], root / "day4"]):
        for name in ("users.csv", "enrollments.csv", "classes.csv"):
            _damage(folder, name, seed=number * 10 + len(name))
    return [*folders, root / "day4"]


def _day(deps: Any, run_id: str, report: dict[str, Any]) -> dict[str, Any]:
    store = deps.store
    files = {}
    for entity in ENTITY_ORDER:
        for key in (
            keys.normalized_key(TENANT, run_id, entity),
            keys.normalized_ids_key(TENANT, run_id, entity),
        ):
            files[key.rsplit("/", 1)[-1]] = store.get_bytes(key)
    summary = store.get_json(keys.normalized_summary_key(TENANT, run_id)) or {}
    # Taking unchanged records from the day before is a shortcut to the same files.
    for name in ("parts", "reused", "reused_from"):
        summary.pop(name, None)
    return {
        "files": files,
        "issues": store.get_bytes(keys.issues_key(TENANT, run_id)),
        "summary": summary,
        "report": {
            k: report.get(k)
            for k in ("status", "counts", "refused", "hold", "held", "issues_total", "adds")
        },
        **directory_and_links(deps, TENANT),
    }


def _sync_days(state: Path, days: list[Path]) -> dict[str, Any]:
    # The last day stops at prepared: a committed run's normalize parts are deleted.
    return sync_days(state, TENANT, days, _day, review=frozenset({len(days) - 1}))


@pytest.fixture(scope="module")
def synced(
    tmp_path_factory: pytest.TempPathFactory, days: list[Path]
) -> tuple[dict[str, Any], dict[str, Any], Path]:
    """The days read in one pass, then with files over 2 KB in parts of about 1 KB (at
    most 6 a file)."""
    return inline_and_fanned(
        tmp_path_factory,
        lambda state: _sync_days(state, days),
        {"NORMALIZE_PART_BYTES": "1024", "NORMALIZE_MAX_PARTS": "6", "NORMALIZE_CONCURRENCY": "3"},
    )


def test_files_read_in_parts_give_what_one_pass_gives(synced):
    inline, fanned, _ = synced

    for states in inline["states"]:
        assert "NormalizeParts" not in states and "NormalizeNext" not in states
    for states in fanned["states"]:
        assert "NormalizeParts" in states and "NormalizeNext" in states
    for number, (one, other) in enumerate(zip(inline["days"], fanned["days"], strict=True), 1):
        for name in one:
            assert other[name] == one[name], (number, name)
    # The damage is there to be read alike: repeats, quotes, stray bytes, a cut row.
    issues = inline["days"][0]["issues"].decode()
    for said in ("appears earlier in the file", "Windows-1252", "blank status", "quote"):
        assert said in issues, said


def test_repeated_ids_are_found_across_parts_and_every_part_is_reported(synced):
    _, fanned, state = synced

    for report in fanned["reports"]:
        parts = report["normalize_parts"]
        entities = {p["entity"] for p in parts}
        assert {"users", "enrollments", "classes"} <= entities
        assert len({p["part"] for p in parts}) == len(parts)
        assert all(p["rows"] >= 0 and p["ms"] >= 0 and p["peak_mb"] > 0 for p in parts)
        users = [p for p in parts if p["entity"] == "users"]
        assert 2 <= len(users) <= 6
    for day, report in zip(fanned["days"], fanned["reports"], strict=True):
        users = [p for p in report["normalize_parts"] if p["entity"] == "users"]
        # Every record of the file comes from one of its parts.
        assert sum(p["rows"] for p in users) == day["summary"]["entities"]["users"]["records"]
    with LocalCloud(state):
        deps = build_deps(stack_settings())
        # Committed: what normalize kept beside its files is gone with the commit.
        for run_id in fanned["runs"][:3]:
            for folder in ("normalize/", "stage/"):
                prefix = keys.run_prefix(TENANT, run_id) + folder
                assert not deps.store.list_keys(prefix), (run_id, folder)
        run_id = fanned["runs"][3]
        for entity in ("users", "enrollments", "classes"):
            prefix = keys.run_prefix(TENANT, run_id) + f"normalize/parts/{entity}/"
            markers = [k for k in deps.store.list_keys(prefix) if k.endswith("/done.json")]
            assert len(markers) >= 2, entity
        progress = normalize_parts.load_progress(deps, TENANT, run_id)
        assert progress is not None and progress.entity is None
        # The parts' records and id lines were dropped once joined; their markers,
        # issues and ids stay.
        for entity in ("users", "enrollments"):
            prefix = keys.run_prefix(TENANT, run_id) + f"normalize/parts/{entity}/"
            names = {k.rsplit("/", 1)[-1] for k in deps.store.list_keys(prefix)}
            assert "done.json" in names and "issues.jsonl" in names, entity
            assert not names & {"records.jsonl", "ids.jsonl"}, entity
        # Users name other users as agents: their parts check those against the ids the
        # plan read, not a pass over the whole file each.
        assert deps.store.exists(normalize_parts.own_ids_key(TENANT, run_id, ENTITY_ORDER[4]))
        # Ids repeated in a later part than their first row's: the plan names them.
        assert any(marker["repeated"] for marker in _planned(deps, run_id, "users")), (
            "the damage repeats ids across parts"
        )


def _planned(deps: Any, run_id: str, entity: str) -> list[dict[str, Any]]:
    """The markers of ``entity``'s parts."""
    found = []
    prefix = keys.run_prefix(TENANT, run_id) + f"normalize/parts/{entity}/"
    for key in deps.store.list_keys(prefix):
        if key.endswith("/done.json"):
            found.append(deps.store.get_json(key))
    return found


def test_a_part_read_again_after_its_marker_changes_nothing(synced):
    _, fanned, state = synced
    run_id = fanned["runs"][3]  # prepared: its parts are kept
    with LocalCloud(state):
        deps = build_deps(stack_settings())
        prefix = keys.run_prefix(TENANT, run_id) + "normalize/parts/users/1/"
        before = {k: deps.store.get_bytes(k) for k in deps.store.list_keys(prefix)}
        assert prefix + "done.json" in before and prefix + "issues.jsonl" in before
        marker = deps.store.get_json(prefix + "done.json")
        # The plan is finished with; a late duplicate of a Map item still answers.
        progress = normalize_parts.load_progress(deps, TENANT, run_id)
        assert progress is not None
        event = {
            "tenant": TENANT,
            "run_id": run_id,
            "part": NormalizePart(id="users-1", entity="users", index=1).model_dump(),
        }
        with pytest.raises(Exception, match="not reading users in parts"):
            normalize_part_event(event, deps)
        # While the users are read in parts, a part met again returns its marker.
        kept = progress.model_copy(deep=True)
        progress.entity = ENTITY_ORDER[4]
        progress.parts = [{"index": 1}]
        normalize_parts.save_progress(deps, TENANT, run_id, progress)
        try:
            again = normalize_part_event(event, deps)
        finally:
            normalize_parts.save_progress(deps, TENANT, run_id, kept)
        assert again == normalize_parts.reported(marker)
        assert {k: deps.store.get_bytes(k) for k in deps.store.list_keys(prefix)} == before


def test_the_last_task_run_again_gives_the_same_files(synced):
    """A retry of the task that joined the parts (it stopped after its work, before
    answering) writes the same issues, summary and files again, nothing twice."""
    _, fanned, state = synced
    run_id = fanned["runs"][3]
    with LocalCloud(state):
        deps = build_deps(stack_settings())
        progress = normalize_parts.load_progress(deps, TENANT, run_id)
        assert progress is not None and progress.state is not None
        watched = [keys.issues_key(TENANT, run_id), keys.normalized_summary_key(TENANT, run_id)]
        watched += [keys.normalized_ids_key(TENANT, run_id, e) for e in ENTITY_ORDER]
        before = {key: deps.store.get_bytes(key) for key in watched}
        assert before[watched[0]]

        again = normalize_next(RunState.model_validate(progress.state), deps)

        assert again.normalize is None
        assert {key: deps.store.get_bytes(key) for key in watched} == before


def _zipped(folder: Path, target: Path, *, odd_name: bool = False) -> Path:
    """The folder's files zipped as exports are: in a top folder, beside a ``__MACOSX``
    entry (and, with ``odd_name``, a file whose name cannot be a raw file's)."""
    with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as zipped:
        zipped.writestr("__MACOSX/._users.csv", b"\0\0")
        for path in sorted(folder.iterdir()):
            zipped.write(path, f"export/{path.name}")
        if odd_name:
            zipped.writestr("export/read me (1).txt", b"notes")
    return target


def test_a_zipped_bundle_with_large_files_is_unzipped_at_fetch_and_read_in_parts(
    synced, days, tmp_path, monkeypatch
):
    """A zip's members cannot be read by byte range: a zip with a file from twice the
    part size is unzipped into the raw area at fetch (the zip kept as dropped), and its
    large files are read in parts, giving what the folder read in one pass gives. A zip
    with a file whose name cannot be a raw file's is read whole, as before, to the same
    result."""
    inline, _, _ = synced
    zips = [_zipped(day, tmp_path / f"{day.name}.zip") for day in days[:2]]
    odd = _zipped(days[0], tmp_path / "odd.zip", odd_name=True)
    for name, value in {"NORMALIZE_PART_BYTES": "1024", "NORMALIZE_MAX_PARTS": "6"}.items():
        monkeypatch.setenv(name, value)
    stack_settings.cache_clear()
    raw_names: list[list[str]] = []

    def day(deps: Any, run_id: str, report: dict[str, Any]) -> dict[str, Any]:
        raw = keys.raw_prefix(TENANT, run_id)
        raw_names.append(sorted(k.removeprefix(raw) for k in deps.store.list_keys(raw)))
        return _day(deps, run_id, report)

    try:
        zipped = sync_days(tmp_path / "zipped", TENANT, zips, day)
        whole = sync_days(tmp_path / "odd", TENANT, [odd], day)
    finally:
        stack_settings.cache_clear()
    for number, states in enumerate(zipped["states"]):
        assert "NormalizeParts" in states, number
    for number in range(2):
        assert "bundle.zip" in raw_names[number] and "users.csv" in raw_names[number]
        for name in ("files", "issues", "summary", "directory", "links"):
            assert zipped["days"][number][name] == inline["days"][number][name], (number, name)
    assert raw_names[2] == ["bundle.zip"], raw_names[2]
    assert "NormalizeParts" not in whole["states"][0]
    for name in ("files", "summary", "directory", "links"):
        assert whole["days"][0][name] == inline["days"][0][name], name
