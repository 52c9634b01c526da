"""The local runtime against a small project: the real template.yaml and ASL, with stand-in
handlers that follow a script in their input. This proves the real state machine's Retry
and Catch, the failure record (in moto's tables and in the embedded store's), the state
kept in the embedded store, event capture and the moto seams."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from rostersync.config import stack_settings
from rostersync.local import moto_seams
from rostersync.local.moto_seams import MOTO_VERSION, MotoSeamMissing, check_moto_seams
from rostersync.local.runtime import LocalCloud, find_project_root
from rostersync.local.table_tasks import UnsupportedTableTask, parse_update
from rostersync.local.template import load_template
from rostersync.pipeline.deps import build_deps
from rostersync.records import RunRecord, RunStatus

REPO = Path(__file__).resolve().parents[2]
STEPS = ("fetch", "normalize", "match", "stage", "commit")
TENANT = "t1"

STAND_IN_HANDLER = '''"""Stand-in {step} handler: does what the input's "script" says."""

import json
import os
import uuid

import boto3

from rostersync.errors import BundleError, TransientError

STEP = "{step}"


def _run(event, context, STEP):
    s3 = boto3.client("s3")
    bucket = os.environ["BUCKET_NAME"]
    attempts = f"attempts/{{event['run_id']}}/{{STEP}}/"
    s3.put_object(Bucket=bucket, Key=attempts + uuid.uuid4().hex, Body=b"")
    action = event.get("script", {{}}).get(STEP)
    if action == "fatal":
        raise BundleError("bundle is not a zip")
    if action == "transient_once":
        if s3.list_objects_v2(Bucket=bucket, Prefix=attempts)["KeyCount"] == 1:
            raise TransientError("source briefly unavailable")
    if STEP == "commit":
        event["commit"] = event.get("plan", {{"fan_out": False, "chunks": []}})
    if STEP == "commit_chunk":
        return {{"chunk": event["chunk"], "run_id": event["run_id"]}}
    if STEP == "stage":
        event["next"] = event.get("decision", "commit")
        if event["next"] == "absent":
            del event["next"]
    if STEP == "commit_finish":
        boto3.client("events").put_events(
            Entries=[
                {{
                    "Source": "rostersync",
                    "DetailType": "run.committed",
                    "Detail": json.dumps({{"tenant": event["tenant"], "run": event["run_id"]}}),
                    "EventBusName": os.environ["EVENT_BUS_NAME"],
                }},
                {{"Source": "elsewhere", "DetailType": "noise", "Detail": "{{}}"}},
            ]
        )
    event.setdefault("steps", []).append(STEP)
    event.setdefault("functions", []).append(context.function_name)
    return event


def handler(event, context):
    return _run(event, context, STEP)


def chunk(event, context):
    return _run(event, context, "commit_chunk")


def finish(event, context):
    return _run(event, context, "commit_finish")
'''


@pytest.fixture(scope="module")
def mini_project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The real template and ASL, with stand-in handlers."""
    root = tmp_path_factory.mktemp("project")
    shutil.copy(REPO / "template.yaml", root / "template.yaml")
    shutil.copytree(REPO / "statemachines", root / "statemachines")
    for step in STEPS:
        folder = root / "functions" / step
        folder.mkdir(parents=True)
        (folder / "app.py").write_text(STAND_IN_HANDLER.format(step=step), encoding="utf-8")
    return root


@pytest.fixture(scope="class")
def mini_cloud(
    mini_project: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LocalCloud]:
    """One runtime for the tests that only run executions (each with its own run id); the
    stand-in handlers use moto's S3 and EventBridge, so the state is moto's too."""
    with LocalCloud(None, mini_project, storage="moto") as cloud:
        yield cloud


def run_input(run_id: str, **extra: Any) -> dict[str, Any]:
    return {"tenant": TENANT, "run_id": run_id, **extra}


def attempts(cloud: LocalCloud, run_id: str, step: str) -> int:
    listed = cloud.client("s3").list_objects_v2(
        Bucket=cloud.names.bucket, Prefix=f"attempts/{run_id}/{step}/"
    )
    return int(listed["KeyCount"])


def put_run(cloud: LocalCloud, run_id: str) -> None:
    cloud.client("dynamodb").put_item(
        TableName=cloud.names.tables["RunsTable"],
        Item={
            "pk": {"S": TENANT},
            "sk": {"S": run_id},
            "status": {"S": "running"},
            "trigger": {"S": "cli"},
        },
    )


def get_run(cloud: LocalCloud, run_id: str) -> dict[str, Any]:
    item = cloud.client("dynamodb").get_item(
        TableName=cloud.names.tables["RunsTable"],
        Key={"pk": {"S": TENANT}, "sk": {"S": run_id}},
    )["Item"]
    return {name: next(iter(value.values())) for name, value in item.items()}


# ----------------------------------------------------------------- the state machine


class TestStateMachine:
    """Executions of the real ASL; they share one runtime (each uses its own run id)."""

    def test_a_run_goes_through_every_step_and_commits(self, mini_cloud: LocalCloud) -> None:
        result = mini_cloud.start_run(run_input("r-commit"), name="r-commit")

        assert result.status == "SUCCEEDED", result.cause
        assert result.states == [
            "Route",
            "Fetch",
            "Normalize",
            "NormalizeFanOutOrMatch",
            "Match",
            "Stage",
            "StageFanOutOrDecide",
            "CommitOrStop",
            "Commit",
            "FanOutOrFinish",
            "FinishCommit",
            "Committed",
        ]
        assert result.output is not None
        assert result.output["steps"] == [*STEPS, "commit_finish"]
        assert result.output["functions"] == [
            mini_cloud.names.functions[f"{step.capitalize()}Function"] for step in STEPS
        ] + [mini_cloud.names.functions["CommitFinishFunction"]]

    def test_a_large_commit_fans_out_one_chunk_per_item_then_finishes(
        self, mini_cloud: LocalCloud
    ) -> None:
        chunks = [{"id": f"users-adds-{n}", "entity": "users", "kind": "adds"} for n in range(5)]
        result = mini_cloud.start_run(
            run_input("r-fan", plan={"fan_out": True, "concurrency": 2, "chunks": chunks}),
            name="r-fan",
        )

        assert result.status == "SUCCEEDED", result.cause
        assert result.states[-4:] == ["FanOutOrFinish", "ApplyChunks", "FinishCommit", "Committed"]
        assert attempts(mini_cloud, "r-fan", "commit_chunk") == len(chunks)
        assert attempts(mini_cloud, "r-fan", "commit_finish") == 1

    def test_a_prepared_run_stops_before_commit(self, mini_cloud: LocalCloud) -> None:
        result = mini_cloud.start_run(run_input("r-prep", decision="prepared"), name="r-prep")

        assert result.status == "SUCCEEDED"
        assert result.states[-2:] == ["CommitOrStop", "Prepared"]
        assert attempts(mini_cloud, "r-prep", "commit") == 0

    def test_a_transient_error_is_retried_at_once(self, mini_cloud: LocalCloud) -> None:
        result = mini_cloud.start_run(
            run_input("r-retry", script={"match": "transient_once"}), name="r-retry"
        )

        assert result.status == "SUCCEEDED", result.cause
        assert attempts(mini_cloud, "r-retry", "match") == 2
        assert result.failed_state is None

    def test_a_fatal_error_records_the_failure_and_fails_the_execution(
        self, mini_cloud: LocalCloud
    ) -> None:
        put_run(mini_cloud, "r-fatal")

        result = mini_cloud.start_run(
            run_input("r-fatal", script={"match": "fatal"}), name="r-fatal"
        )

        assert result.status == "FAILED"
        assert result.error == "BundleError"
        assert result.states[-6:] == [
            "NormalizeFanOutOrMatch",
            "Match",
            # A sync's failure (a re-stage's would leave its run prepared).
            "StageFailed",
            "RecordFailure",
            "NotifyFailure",
            "Failed",
        ]
        assert result.failed_state == "Match"
        assert attempts(mini_cloud, "r-fatal", "match") == 1  # fatal errors are not retried
        assert attempts(mini_cloud, "r-fatal", "stage") == 0
        run = get_run(mini_cloud, "r-fatal")
        assert run["status"] == "failed"
        assert run["error"] == "BundleError"
        cause = json.loads(run["reason"])
        assert cause["errorType"] == "BundleError"
        assert cause["errorMessage"] == "bundle is not a zip"
        assert run["finished_at"]
        assert run["trigger"] == "cli"  # an update, not a put: the record keeps its fields

    @pytest.mark.parametrize("decision", ["maybe", None, "absent"])
    def test_an_unknown_decision_fails_the_run(
        self, mini_cloud: LocalCloud, decision: str | None
    ) -> None:
        run_id = f"r-odd-{decision}"
        put_run(mini_cloud, run_id)

        result = mini_cloud.start_run(run_input(run_id, decision=decision), name=run_id)

        assert result.status == "FAILED"
        assert result.error == "InvalidDecision"
        assert result.states[-4:] == ["NoDecision", "RecordFailure", "NotifyFailure", "Failed"]
        assert get_run(mini_cloud, run_id)["status"] == "failed"

    def test_events_put_on_the_stack_bus_are_captured(self, mini_cloud: LocalCloud) -> None:
        mini_cloud.start_run(run_input("r-events"), name="r-events")

        events = [e for e in mini_cloud.published_events() if e["detail"].get("run") == "r-events"]

        assert [(e["source"], e["detail-type"]) for e in events] == [
            ("rostersync", "run.committed")
        ]
        assert events[0]["detail"] == {"tenant": TENANT, "run": "r-events"}
        assert events[0]["account"] == mini_cloud.names.account_id
        assert all(e["source"] == "rostersync" for e in mini_cloud.published_events())

    def test_functions_can_be_invoked_directly(self, mini_cloud: LocalCloud) -> None:
        client = mini_cloud.client("lambda")
        name = mini_cloud.names.functions["FetchFunction"]

        ok = client.invoke(FunctionName=name, Payload=json.dumps(run_input("r-direct")))
        failed = client.invoke(
            FunctionName=name, Payload=json.dumps(run_input("r-direct", script={"fetch": "fatal"}))
        )

        assert json.loads(ok["Payload"].read())["steps"] == ["fetch"]
        assert "FunctionError" in failed
        assert json.loads(failed["Payload"].read())["errorType"] == "BundleError"

    def test_every_table_of_the_template_exists_with_its_keys(self, mini_cloud: LocalCloud) -> None:
        template = load_template(REPO / "template.yaml")
        declared = {
            logical: resource["Properties"]
            for logical, resource in template["Resources"].items()
            if resource["Type"] == "AWS::DynamoDB::Table"
        }
        client = mini_cloud.client("dynamodb")

        assert set(mini_cloud.names.tables) == set(declared)
        for logical, props in declared.items():
            name = mini_cloud.names.tables[logical]
            table = client.describe_table(TableName=name)["Table"]
            assert table["KeySchema"] == props["KeySchema"], logical
            assert sorted(table["AttributeDefinitions"], key=str) == sorted(
                props["AttributeDefinitions"], key=str
            )
            indexes = {i["IndexName"]: i for i in table.get("GlobalSecondaryIndexes", [])}
            for index in props.get("GlobalSecondaryIndexes", []):
                assert indexes[index["IndexName"]]["KeySchema"] == index["KeySchema"]
                assert indexes[index["IndexName"]]["Projection"] == index["Projection"]
            ttl = client.describe_time_to_live(TableName=name)["TimeToLiveDescription"]
            if "TimeToLiveSpecification" in props:
                assert ttl["AttributeName"] == props["TimeToLiveSpecification"]["AttributeName"]
                assert ttl["TimeToLiveStatus"] == "ENABLED"


# ------------------------------------------------------------- resources and settings


def test_the_environment_is_set_inside_and_restored_after(
    mini_project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("BUCKET_NAME", raising=False)
    monkeypatch.setenv("LOG_LEVEL", "outer")

    with LocalCloud(None, mini_project) as cloud:
        settings = stack_settings()
        assert settings.bucket == cloud.names.bucket == os.environ["BUCKET_NAME"]
        assert settings.runs_table == cloud.names.tables["RunsTable"]
        assert settings.event_bus == cloud.names.event_bus
        assert settings.max_archive_share == 0.1
        assert os.environ["LOCKS_TABLE"] == cloud.names.tables["LocksTable"]
        assert os.environ["STATE_MACHINE_ARN"] == cloud.names.state_machine_arn
        assert os.environ["LOG_LEVEL"] == "INFO"

    assert "BUCKET_NAME" not in os.environ
    assert os.environ["LOG_LEVEL"] == "outer"


def test_the_project_root_is_found_from_the_package_or_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, mini_project: Path
) -> None:
    monkeypatch.delenv("ROSTERSYNC_PROJECT_ROOT", raising=False)
    assert find_project_root() == REPO

    monkeypatch.setenv("ROSTERSYNC_PROJECT_ROOT", str(mini_project))
    assert find_project_root() == mini_project.resolve()
    assert find_project_root(REPO) == REPO  # an explicit root wins


def test_the_moto_seams_exist_in_the_pinned_moto() -> None:
    import moto

    assert moto.__version__ == MOTO_VERSION, "re-check moto_seams.SEAMS before moving moto"
    check_moto_seams()


def test_a_missing_seam_is_reported_with_the_moto_version(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    gone = moto_seams.Seam("moto.awslambda.models", "LambdaFunction._no_such_thing", "test")
    monkeypatch.setattr(moto_seams, "SEAMS", (*moto_seams.SEAMS, gone))

    with pytest.raises(MotoSeamMissing, match=r"moto 5\.2\.5 lacks .*_no_such_thing"):
        check_moto_seams()


# ------------------------------------------------------------ the embedded store

ODD_KEYS = [
    "inbox/t1/roster a+b.csv",
    "inbox/t1/",
    "x/y",
    "x/y/z",
    "weird/../dots",
    "ünï/cødé.txt",
    "pct/100%.txt",
    "a//b",
    "colon:star*?.txt",
]


def test_objects_items_and_events_survive_a_restart(mini_project: Path, tmp_path: Path) -> None:
    state = tmp_path / "state"
    with LocalCloud(state, mini_project) as cloud:
        assert cloud.storage == "embedded"
        deps = build_deps(stack_settings())
        for number, key in enumerate(ODD_KEYS):
            deps.store.put_bytes(key, f"body {number}".encode())
        deps.links.put_many(
            "t1", "users", [{"source_system": "sis", "source_id": "s1", "target_id": "u1"}]
        )
        deps.events.publish([("run.committed", {"tenant": "t1", "run": "r-persist"})])

    with LocalCloud(state, mini_project) as cloud:
        deps = build_deps(stack_settings())
        for number, key in enumerate(ODD_KEYS):
            assert deps.store.get_bytes(key) == f"body {number}".encode(), key
        assert deps.links.get("t1", "users", "sis", "s1") == {
            "source_system": "sis",
            "source_id": "s1",
            "target_id": "u1",
        }
        assert [e["detail"]["run"] for e in cloud.published_events()] == ["r-persist"]

    assert (state / "rostersync.sqlite3").is_file()
    assert not (state / "s3").exists()
    assert not (state / "dynamodb").exists()


def test_the_state_machine_records_a_failure_in_the_embedded_store(
    mini_project: Path, tmp_path: Path
) -> None:
    # The stand-in handlers call moto's S3, which holds no bucket in this mode: the first
    # step fails, and RecordFailure's dynamodb:updateItem must reach the store's table.
    with LocalCloud(tmp_path / "state", mini_project) as cloud:
        deps = build_deps(stack_settings())
        run_id = "20261201T100000Z-0e0e0e0e"
        deps.runs.put(TENANT, RunRecord(run_id=run_id, status=RunStatus.RUNNING, trigger="cli"))

        result = cloud.start_run(run_input(run_id), name=run_id)

        assert result.status == "FAILED"
        assert result.states[-3:] == ["RecordFailure", "NotifyFailure", "Failed"]
        run = deps.runs.get(TENANT, run_id)
        assert run.status == "failed"
        assert run.error == result.error
        assert run.finished_at
        assert run.trigger == "cli"  # an update: the record keeps its fields
        failed = [e for e in cloud.published_events() if e["detail-type"] == "run.failed"]
        assert [e["detail"]["run_id"] for e in failed] == [run_id]


def test_update_expressions_of_the_state_machine_are_read() -> None:
    to_set, to_remove = parse_update(
        "SET #s = :s, #e = :e REMOVE #p",
        {"#s": "status", "#e": "error", "#p": "progress"},
        {":s": {"S": "prepared"}, ":e": {"N": "2"}},
    )

    assert to_set == {"status": "prepared", "error": 2}
    assert to_remove == ["progress"]
    with pytest.raises(UnsupportedTableTask):
        parse_update("ADD #n :one", {"#n": "n"}, {":one": {"N": "1"}})


_SECOND_PROCESS = """
import sys
from pathlib import Path
from rostersync.config import stack_settings
from rostersync.local.runtime import LocalCloud
from rostersync.pipeline.deps import build_deps

with LocalCloud(Path(sys.argv[1]), Path(sys.argv[2])):
    deps = build_deps(stack_settings())
    deps.tenants.put_meta("from-second", {"name": "second process"})
    deps.store.put_bytes("second.txt", b"written by the second process")
    print(deps.tenants.get_meta("from-first")["name"])
"""


def test_two_processes_use_one_state_directory_at_once(mini_project: Path, tmp_path: Path) -> None:
    state = tmp_path / "state"
    with LocalCloud(state, mini_project):
        deps = build_deps(stack_settings())
        deps.tenants.put_meta("from-first", {"name": "first process"})

        second = subprocess.run(
            [sys.executable, "-c", _SECOND_PROCESS, str(state), str(mini_project)],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

        assert second.returncode == 0, second.stderr[-2000:]
        assert second.stdout.strip() == "first process"
        assert deps.tenants.get_meta("from-second") == {"name": "second process"}
        assert deps.store.get_bytes("second.txt") == b"written by the second process"


def test_temporary_files_go_to_the_state_and_a_gone_process_s_are_given_back(
    mini_project: Path, tmp_path: Path
) -> None:
    """Temporary files (the engines' spill files, downloads) go to a folder of the
    process's own in the state directory, not /tmp; a start removes the folders of
    processes of this machine that are gone, and leaves a live process's alone."""
    import socket
    import tempfile

    state = tmp_path / "state"
    scratch = state / "scratch"
    scratch.mkdir(parents=True)
    host = socket.gethostname()
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    alive = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    try:
        for pid in (gone.pid, alive.pid):
            (scratch / f"{host}+{pid}-0000cafe" / "spill").mkdir(parents=True)
        before, before_tmpdir = tempfile.gettempdir(), os.environ.get("TMPDIR")
        with LocalCloud(state, mini_project):
            inside = Path(tempfile.gettempdir())
            with tempfile.TemporaryDirectory(prefix="rostersync-diff-") as spill:
                assert Path(spill).parent == inside
            assert inside.parent == scratch and inside.name.startswith(f"{host}+{os.getpid()}-")
            assert os.environ["LOCAL_SCRATCH_DIR"] == str(inside)
            assert os.environ.get("TMPDIR") == before_tmpdir
            left = sorted(p.name for p in scratch.iterdir())
            assert left == sorted([f"{host}+{alive.pid}-0000cafe", inside.name]), left
        assert tempfile.gettempdir() == before
        assert [p.name for p in scratch.iterdir()] == [f"{host}+{alive.pid}-0000cafe"]
    finally:
        alive.kill()
        alive.wait()


def test_moto_storage_keeps_nothing_on_disk(mini_project: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="keeps nothing"):
        LocalCloud(tmp_path / "state", mini_project, storage="moto")


def test_a_runtime_that_cannot_start_leaves_nothing_behind(
    mini_project: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("BUCKET_NAME", raising=False)
    monkeypatch.delenv("LOCAL_STORE_DIR", raising=False)

    def broken(self: LocalCloud, spec: Any) -> None:
        raise RuntimeError("cannot create")

    with monkeypatch.context() as patched:
        patched.setattr(LocalCloud, "_create_resources", broken)
        with (
            pytest.raises(RuntimeError, match="cannot create"),
            LocalCloud(tmp_path / "state", mini_project),
        ):
            pass

    assert "BUCKET_NAME" not in os.environ
    assert "LOCAL_STORE_DIR" not in os.environ
    with LocalCloud(tmp_path / "state", mini_project) as cloud:
        assert build_deps(stack_settings()).store.list_keys("") == []
        assert cloud.published_events() == []
