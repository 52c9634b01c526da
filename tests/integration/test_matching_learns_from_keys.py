"""The pairs a run links by key teach the match model the district's habits."""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Any

from rostersync.application.matching import import_app_records, list_match_decisions
from rostersync.application.sync import ensure_tenant
from rostersync.application.tenants import load_tenant_settings, save_tenant_settings
from rostersync.generator import generate_district
from rostersync.settings import apply_assignments
from tests.bundles import read_rows
from tests.integration.test_pipeline import sync


def test_key_linked_students_teach_the_model_that_the_app_writes_other_family_names(
    cloud: Any, tmp_path: Path
) -> None:
    """Given an app whose students carry their SIS student number and, for most of them,
    another family name (a step-parent's), and one student without a number whose own
    record has that other family name while another record shares both names but only
    the month and year of the birth date, when the students link by their number, then
    the student without one is matched to their own record, not the look-alike."""
    folder = tmp_path / "d"
    generate_district(folder, students=40, seed=4)
    deps = cloud[1]
    ensure_tenant(deps, "t1", create=True)
    _, users = read_rows(folder / "users.csv")
    _, demographics = read_rows(folder / "demographics.csv")
    born = {d["sourcedId"]: d["birthDate"] for d in demographics}
    students = [u for u in users if u["role"] == "student" and born.get(u["sourcedId"])]
    *known, alone = students
    lines = ["app_id,kind,given_name,family_name,birth_date,id:student_number"]
    for n, u in enumerate(known):
        family = f"Other{n}" if n % 4 else u["familyName"]
        lines.append(
            f"a{n},student,{u['givenName']},{family},{born[u['sourcedId']]},{u['identifier']}"
        )
    birth = date.fromisoformat(born[alone["sourcedId"]])
    look_alike = birth.replace(day=1 if birth.day > 15 else 28)
    lines.append(f"a-own,student,{alone['givenName']},Otherfamily,{birth.isoformat()},")
    lines.append(
        f"a-look-alike,student,{alone['givenName']},{alone['familyName']},{look_alike.isoformat()},"
    )
    result = import_app_records(deps, "t1", "\n".join(lines) + "\n", "admin")
    assert result["issues"] == []
    settings = apply_assignments(
        load_tenant_settings(deps, "t1"), ['match_keys.students=["identifier:student_number"]']
    )
    save_tenant_settings(deps, "t1", settings, who="admin")

    run = sync(cloud, folder, tmp_path, review=True)

    decisions = {d["source_id"]: d for d in list_match_decisions(deps, "t1", run_id=run.run_id)}
    assert all(decisions[u["sourcedId"]]["tier"] == "key" for u in known)
    mine = decisions[alone["sourcedId"]]
    assert mine["tier"] in ("auto", "suggested"), mine
    assert mine["target_id"] == "a-own", mine
