"""A Japanese school's OneRoster export, names in kanji with the school's kana readings in
``metadata.phonetic*`` columns, synced onto an app that holds its pupils in romaji and
katakana: the match step links them by the readings, under the rules every link is
under (birth dates, twins, one-to-one)."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path
from typing import Any

import pytest

from rostersync.cli import main

MANIFEST = """propertyName,value
manifest.version,1.0
oneroster.version,1.1
file.academicSessions,absent
file.categories,absent
file.classes,absent
file.classResources,absent
file.courses,absent
file.courseResources,absent
file.demographics,bulk
file.enrollments,absent
file.lineItems,absent
file.orgs,bulk
file.resources,absent
file.results,absent
file.users,bulk
"""
ORGS = """sourcedId,status,dateLastModified,name,type,identifier,parentSourcedId
or1,active,,南小学校,school,,
"""
USERS_HEADER = (
    "sourcedId,status,dateLastModified,enabledUser,orgSourcedIds,role,username,userIds,"
    "givenName,familyName,middleName,identifier,email,sms,phone,agentSourcedIds,grades,"
    "metadata.phoneticGivenName,metadata.phoneticFamilyName"
)
#: (source id, given, family, given reading, family reading, birth date).
PUPILS = [
    # Twins, both in the app (one in romaji, one in katakana).
    ("us1", "大翔", "佐藤", "ひろと", "さとう", "2015-04-02"),
    ("us2", "陽斗", "佐藤", "はると", "さとう", "2015-04-02"),
    # Twins, only one of them in the app yet.
    ("us3", "翔太", "高橋", "しょうた", "たかはし", "2015-06-11"),
    ("us4", "颯太", "高橋", "そうた", "たかはし", "2015-06-11"),
    # The readings agree, the birth dates do not.
    ("us5", "美咲", "鈴木", "みさき", "すずき", "2015-09-20"),
    # No readings: kanji are never read by a guess.
    ("us6", "陸", "田中", "", "", "2015-11-05"),
]
APP = """app_id,kind,given_name,family_name,birth_date,grade,school
a1,student,Hiroto,Satō,2015-04-02,03,南小学校
a2,student,ハルト,サトウ,2015-04-02,03,南小学校
a3,student,Shota,Takahashi,2015-06-11,03,南小学校
a5,student,Misaki,Suzuki,2014-02-13,03,南小学校
a6,student,Riku,Tanaka,2015-11-05,03,南小学校
"""


def _bundle(folder: Path) -> Path:
    folder.mkdir()
    (folder / "manifest.csv").write_text(MANIFEST, encoding="utf-8")
    (folder / "orgs.csv").write_text(ORGS, encoding="utf-8")
    users = [USERS_HEADER]
    demographics = ["sourcedId,status,dateLastModified,birthDate,sex"]
    for sid, given, family, given_kana, family_kana, born in PUPILS:
        users.append(
            f"{sid},active,,true,or1,student,{sid},,{given},{family},,,,,,,03,"
            f"{given_kana},{family_kana}"
        )
        demographics.append(f"{sid},active,,{born},other")
    (folder / "users.csv").write_text("\n".join(users) + "\n", encoding="utf-8")
    (folder / "demographics.csv").write_text("\n".join(demographics) + "\n", encoding="utf-8")
    return folder


@pytest.fixture(scope="module")
def decisions(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Any]]:
    folder = tmp_path_factory.mktemp("japanese")
    bundle = _bundle(folder / "day1")
    app = folder / "app.csv"
    app.write_text(APP, encoding="utf-8")
    state = str(folder / "state")
    assert main(["directory", "import", str(app), "--tenant", "t1", "--state", state]) == 0
    assert main(["sync", str(bundle), "--review", "--tenant", "t1", "--state", state]) in {0, 3}
    return {row["source_id"]: row for row in _matches(state)}


def _matches(state: str) -> list[dict[str, Any]]:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(["matches", "--json", "--tenant", "t1", "--state", state]) == 0
    rows: list[dict[str, Any]] = json.loads(out.getvalue())
    return [row for row in rows if row["entity"] == "users"]


def test_pupils_in_kanji_link_to_romaji_and_katakana_by_the_schools_readings(decisions):
    linked = {sid: (row["tier"], row["target_id"]) for sid, row in decisions.items()}
    assert linked["us1"] == ("auto", "a1")
    assert linked["us2"] == ("auto", "a2")
    assert linked["us3"] == ("auto", "a3")
    assert set(decisions["us1"]["evidence"]["agreed"]) >= {"given_name", "family_name"}


def test_a_twin_the_app_does_not_hold_is_a_new_pupil(decisions):
    assert decisions["us4"]["tier"] == "unmatched"
    assert decisions["us4"]["target_id"] is None


def test_readings_that_agree_do_not_outweigh_another_birth_date(decisions):
    assert decisions["us5"]["tier"] != "auto"


def test_kanji_without_readings_are_never_linked_automatically(decisions):
    assert decisions["us6"]["tier"] != "auto"


def test_every_app_record_is_linked_at_most_once(decisions):
    targets = [row["target_id"] for row in decisions.values() if row["tier"] == "auto"]
    assert len(targets) == len(set(targets))
