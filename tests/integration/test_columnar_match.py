"""Match's decision lines written by DuckDB are byte for byte the lines written row by
row, day after day: a first sync into an app that already holds people (keys, automatic
links, suggestions, new records), a school mapped by an admin, the next day's changes
with an admin's link, and a re-issued student id; an id the engine cannot spell is
written row by row."""

from __future__ import annotations

import csv
import hashlib
import json
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws

from rostersync.application.matching import import_app_records
from rostersync.application.sync import ensure_tenant
from rostersync.application.tenants import load_tenant_settings, save_tenant_settings
from rostersync.config import stack_settings
from rostersync.existing_app import build_existing_app
from rostersync.generator import generate_district, mutate_next_day
from rostersync.local.runtime import LocalCloud
from rostersync.local.session import run_sync
from rostersync.models import ENTITY_ORDER, Entity
from rostersync.pipeline.deps import build_deps
from rostersync.pipeline.identity_match import decision_key
from rostersync.pipeline.match_columnar import IdTables
from rostersync.pipeline.match_decisions import new_target_id
from rostersync.settings import apply_assignments
from rostersync.storage import keys
from rostersync.storage.objects import ObjectStore, dumps_line

TENANT = "district"
#: A class id with a letter outside ASCII: its entity is written row by row.
ODD_CLASS_SUFFIX = "-é"


def _replace_everywhere(folder: Path, old: str, new: str) -> None:
    for path in folder.glob("*.csv"):
        text = path.read_text(encoding="utf-8")
        path.write_text(text.replace(old, new), encoding="utf-8")


def _first(folder: Path, name: str, column: str, where: dict[str, str]) -> str:
    with (folder / name).open(newline="", encoding="utf-8") as fh:
        return next(
            row[column]
            for row in csv.DictReader(fh)
            if all(row.get(k) == v for k, v in where.items())
        )


@dataclass
class District:
    days: list[Path]
    app_csv: Path
    school: str
    #: A student's source id and the app person an admin links it to before day 2.
    manual: tuple[str, str]


@pytest.fixture(scope="module")
def district(tmp_path_factory: pytest.TempPathFactory) -> District:
    root = tmp_path_factory.mktemp("district")
    generate_district(root / "day1", students=90, seed=21)
    app = build_existing_app(root / "day1", root / "app.csv", seed=4, typo_share=0.15)
    mutate_next_day(root / "day1", root / "day2", seed=22, rate=0.05)
    # Day 3: day 2 with a student re-issued under a new id (re-linked to the same child)
    # and a class whose id the engine cannot copy as it is.
    shutil.copytree(root / "day2", root / "day3")
    student = _first(root / "day3", "users.csv", "sourcedId", {"role": "student"})
    _replace_everywhere(root / "day3", student, student + "-v2")
    odd = _first(root / "day3", "classes.csv", "sourcedId", {})
    _replace_everywhere(root / "day3", odd, odd + ODD_CLASS_SUFFIX)
    school = _first(root / "day1", "orgs.csv", "sourcedId", {"type": "school"})
    # From day 2 on, an admin's link of a student the baseline links elsewhere.
    with (root / "day3" / "users.csv").open(newline="", encoding="utf-8") as fh:
        students = [r["sourcedId"] for r in csv.DictReader(fh) if r["role"] == "student"]
    return District(
        days=[root / "day1", root / "day2", root / "day3"],
        app_csv=app.path,
        school=school,
        manual=(students[1], app.app_only[0]),
    )


def _syncs(state: Path, district: District) -> list[dict[str, Any]]:
    days, app_csv, school = district.days, district.app_csv, district.school
    out: list[dict[str, Any]] = []
    with LocalCloud(state) as cloud:
        deps = build_deps(stack_settings())
        ensure_tenant(deps, TENANT, create=True)
        imported = import_app_records(deps, TENANT, app_csv.read_text(), "admin")
        assert imported["issues"] == []
        mapping = json.dumps({school: "app-school-1"})
        settings = apply_assignments(
            load_tenant_settings(deps, TENANT), [f"schools.mapping={mapping}"]
        )
        save_tenant_settings(deps, TENANT, settings, who="admin")
        for number, folder in enumerate(days, start=1):
            if number == 2:
                source_id, target = district.manual
                deps.decisions.put(
                    TENANT,
                    decision_key("users", "oneroster", source_id),
                    {
                        "entity": "users",
                        "source_id": source_id,
                        "target_id": target,
                        "decision": "manual",
                    },
                )
            outcome, _ = run_sync(cloud, deps, TENANT, folder, state / "reports")
            assert outcome.status in {"committed", "held"}, outcome.error
            run = outcome.run_id
            matched = {}
            for entity in ENTITY_ORDER:
                with deps.store.local_file(keys.matched_key(TENANT, run, entity)) as path:
                    assert path is not None
                    matched[entity.value] = path.read_bytes()
            out.append(
                {
                    "matched": matched,
                    "summary": deps.store.get_json(keys.match_summary_key(TENANT, run)),
                    "review": list(deps.store.iter_jsonl(keys.match_review_key(TENANT, run))),
                    "counts": outcome.counts,
                }
            )
    return out


def test_columnar_decisions_equal_the_row_by_row_lines(tmp_path, district, monkeypatch):
    columnar = _syncs(tmp_path / "columnar", district)
    monkeypatch.setenv("COLUMNAR_MATCH", "false")
    stack_settings.cache_clear()
    rows = _syncs(tmp_path / "rows", district)

    for number, (fast, slow) in enumerate(zip(columnar, rows, strict=True), start=1):
        for entity, body in fast["matched"].items():
            assert body == slow["matched"][entity], (number, entity)
        fast_summary = {k: v for k, v in fast["summary"].items() if k != "written"}
        slow_summary = {k: v for k, v in slow["summary"].items() if k != "written"}
        # The same counts in the same order (the run's report lists them so).
        assert json.dumps(fast_summary) == json.dumps(slow_summary), number
        assert fast["review"] == slow["review"], number
        assert fast["counts"] == slow["counts"], number
        assert set(slow["summary"]["written"].values()) == {"rows"}, number
        expected = {e.value: "columnar" for e in ENTITY_ORDER}
        if number == 3:
            expected[Entity.CLASSES.value] = "rows"
        assert fast["summary"]["written"] == expected, number

    # The days hold every kind of decision the lines must carry.
    tiers = {
        line[3]
        for day in columnar
        for body in day["matched"].values()
        for line in map(json.loads, body.splitlines())
    }
    assert {"linked", "unmatched", "manual", "key", "auto"} <= tiers, tiers
    for day in columnar[1:]:
        assert day["summary"]["users"].get("manual") == 1
    first = columnar[0]["summary"]
    assert first["orgs"].get("manual") == 1
    assert columnar[2]["summary"]["classes"].get("unmatched", 0) >= 1  # the odd id
    assert any(
        r.get("source_id", "").endswith("-v2") and r["target_id"] for r in columnar[2]["review"]
    ), "the re-issued student is matched to the child it was"


def test_new_ids_from_the_engine_are_uuid5_in_record_order(tmp_path):
    """Enough records (a 40 MB file) that the engine reads them in parallel; ids of the
    characters the engine copies, some twice; and the records the matcher decided."""
    alphabet = " !#$%&'()*+,-./0123456789:;<=>?@AZ[]^_`az{|}~"
    filler = "0123456789abcdefghijklmnopqrstuvwxyz-ABCDEFGHIJ"
    ids = [
        f"{alphabet[n % len(alphabet)] * (n % 7)}{n:06d}{filler[: n % len(filler)]}"
        for n in range(500_000)
    ]
    ids += ids[:50]
    special = {ids[10], ids[99_999]}
    with LocalCloud(tmp_path / "state"):
        deps = build_deps(stack_settings())
        run = "20260101T000000Z-00000000"
        ids_key = keys.normalized_ids_key(TENANT, run, Entity.USERS)
        lines = [["sis", i, None, "h", n] for n, i in enumerate(ids)]
        deps.store.write_jsonl(ids_key, lines)
        tiers: dict[str, int] = {}

        def special_line(system: str, source_id: str) -> tuple[list[Any], str] | None:
            if source_id not in special:
                return None
            return [system, source_id, "app-1", "key", 1.0], "key"

        with IdTables(deps.store, TENANT, run, baseline=None) as tables:
            assert tables.usable(Entity.USERS)
            tables.write_decisions(
                Entity.USERS, "scratch/matched.jsonl", special, special_line, tiers
            )
        with deps.store.local_file("scratch/matched.jsonl") as path:
            assert path is not None
            written = path.read_bytes()
    namespace = uuid.UUID("5b0e7c1e-8f51-4bd4-9a0a-3f0b1c7d2e61")
    expected = []
    for i in ids:
        if i in special:
            expected.append(dumps_line(["sis", i, "app-1", "key", 1.0]))
        else:
            target = str(uuid.uuid5(namespace, f"{TENANT}/users/sis/{i}"))
            assert target == new_target_id(TENANT, Entity.USERS, "sis", i)
            expected.append(dumps_line(["sis", i, target, "unmatched", None]))
    assert hashlib.sha256(written).hexdigest() == hashlib.sha256(b"".join(expected)).hexdigest()
    decided = sum(i in special for i in ids)
    assert decided == 3  # one of them twice
    assert tiers == {"key": decided, "unmatched": len(ids) - decided}


@pytest.mark.parametrize(
    "odd",
    ['quote"d', "back\\slash", "caf\u00e9", "tab\tbed", "del\x7f", 12, None],
    ids=["quote", "backslash", "non-ascii", "control", "del", "number", "null"],
)
@pytest.mark.parametrize("where", ["ids", "index"])
def test_an_id_the_engine_would_not_spell_as_orjson_leaves_the_entity_to_python(
    tmp_path, odd, where
):
    run, baseline = "20260101T000000Z-00000001", "20260101T000000Z-00000000"
    with LocalCloud(tmp_path / "state"):
        deps = build_deps(stack_settings())
        ids = [["sis", "a", None, "h", 0], ["sis", "b", None, "h", 1]]
        index = [["sis", "a", "t-a", "active", "h"], ["sis", "c", "t-c", "active", "h"]]
        if where == "ids":
            ids.append(["sis", odd, None, "h", 2])
        else:
            index.append(["sis", "d", odd, "active", "h"] if odd is not None else ["sis", odd])
        deps.store.write_jsonl(keys.normalized_ids_key(TENANT, run, Entity.COURSES), ids)
        deps.store.write_jsonl(keys.state_index_key(TENANT, baseline, Entity.COURSES), index)
        with IdTables(deps.store, TENANT, run, baseline) as tables:
            assert not tables.usable(Entity.COURSES)
        plain = IdTables(deps.store, TENANT, run, baseline)
        deps.store.write_jsonl(keys.normalized_ids_key(TENANT, run, Entity.COURSES), ids[:2])
        deps.store.write_jsonl(keys.state_index_key(TENANT, baseline, Entity.COURSES), index[:2])
        with plain as tables:
            assert tables.usable(Entity.COURSES)
            assert tables.absent(Entity.COURSES) == {("sis", "c")}


def test_the_engine_reads_and_writes_through_the_bucket(monkeypatch):
    """On AWS the tables are read from downloads of the objects, and the lines uploaded."""
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    run, baseline = "20260101T000000Z-00000001", "20260101T000000Z-00000000"
    with mock_aws():
        client = boto3.client("s3", region_name="us-east-1")
        client.create_bucket(Bucket="roster")
        store = ObjectStore(client, "roster")
        ids = [["sis", "a", None, "h", 0], ["sis", "new", None, "h", 1]]
        index = [["sis", "a", "t-a", "active", "h"], ["sis", "gone", "t-g", "active", "h"]]
        store.write_jsonl(keys.normalized_ids_key(TENANT, run, Entity.USERS), ids)
        store.write_jsonl(keys.state_index_key(TENANT, baseline, Entity.USERS), index)
        snapshot = [
            {"source_system": "sis", "source_id": s, "target_id": t, "record": {"n": s}}
            for s, t in (("a", "t-a"), ("gone", "t-g"))
        ]
        store.write_jsonl(keys.state_key(TENANT, baseline, Entity.USERS), snapshot)
        tiers: dict[str, int] = {}
        with IdTables(store, TENANT, run, baseline) as tables:
            assert tables.usable(Entity.USERS)
            assert tables.absent(Entity.USERS) == {("sis", "gone")}
            assert tables.snapshot_lines(Entity.USERS, {"gone"}) == [snapshot[1]]
            tables.write_decisions(
                Entity.USERS, "scratch/matched.jsonl", set(), lambda s, i: None, tiers
            )
        written = store.get_bytes("scratch/matched.jsonl")
    new = new_target_id(TENANT, Entity.USERS, "sis", "new")
    assert written == b"".join(
        [
            dumps_line(["sis", "a", "t-a", "linked", None]),
            dumps_line(["sis", "new", new, "unmatched", None]),
        ]
    )
    assert tiers == {"linked": 1, "unmatched": 1}
