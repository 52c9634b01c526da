"""The local runtime against a small project: the real template.yaml and ASL, with stand-in
handlers that follow a script in their input. This proves the real state machine's Retry
and Catch, the failure record, persistence, event capture and the moto seams."""

from __future__ import annotations

import base64
import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from rostersync.config import stack_settings
from rostersync.local import moto_seams, state_dir
from rostersync.local.moto_seams import MOTO_VERSION, MotoSeamMissing, check_moto_seams
from rostersync.local.runtime import LocalCloud, find_project_root
from rostersync.local.state_dir import ObjectToSave, StateDir, StateDirError, key_of, object_paths
from rostersync.local.template import load_template

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


def handler(event, context):
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
    if STEP == "stage":
        event["next"] = event.get("decision", "commit")
        if event["next"] == "absent":
            del event["next"]
    if STEP == "commit":
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
    """One runtime for the tests that only run executions (each with its own run id)."""
    with LocalCloud(tmp_path_factory.mktemp("state"), mini_project) as cloud:
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
            "Match",
            "Stage",
            "CommitOrStop",
            "Commit",
            "Committed",
        ]
        assert result.output is not None
        assert result.output["steps"] == list(STEPS)
        assert result.output["functions"] == [
            mini_cloud.names.functions[f"{step.capitalize()}Function"] for step in STEPS
        ]

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
        assert result.states[-5:] == [
            "Normalize",
            "Match",
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


# -------------------------------------------------------------------- persistence

ODD_KEYS = [
    "inbox/t1/roster a+b.csv",
    "inbox/t1/",
    "x/y",
    "x/y/z",
    "weird/../dots",
    "weird/./dot",
    "ünï/cødé.txt",
    "pct/100%.txt",
    "a//b",
    "colon:star*?.txt",
]

ITEM = {
    "pk": {"S": "t1"},
    "sk": {"S": "item"},
    "n": {"N": "1.50"},
    "b": {"B": b"\x00\x01binary"},
    "bs": {"BS": [b"one", b"two"]},
    "ss": {"SS": ["a", "b"]},
    "ns": {"NS": ["1", "2.5"]},
    "m": {"M": {"inner": {"B": b"\xff"}, "l": {"L": [{"S": "s"}, {"NULL": True}]}}},
    "flag": {"BOOL": False},
    "nothing": {"NULL": True},
}


def test_objects_items_and_events_survive_a_restart(mini_project: Path, tmp_path: Path) -> None:
    state = tmp_path / "state"
    with LocalCloud(state, mini_project) as cloud:
        s3 = cloud.client("s3")
        bucket = cloud.names.bucket
        for number, key in enumerate(ODD_KEYS):
            s3.put_object(Bucket=bucket, Key=key, Body=f"body {number}".encode())
        s3.put_object(
            Bucket=bucket,
            Key="typed.csv",
            Body=b"a,b\n",
            ContentType="text/csv",
            Metadata={"source": "sftp"},
        )
        cloud.client("dynamodb").put_item(TableName=cloud.names.tables["LinksTable"], Item=ITEM)
        cloud.start_run(run_input("r-persist"), name="r-persist")
        before = s3.head_object(Bucket=bucket, Key="typed.csv")

    with LocalCloud(state, mini_project) as cloud:
        s3 = cloud.client("s3")
        bucket = cloud.names.bucket
        for number, key in enumerate(ODD_KEYS):
            body = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
            assert body == f"body {number}".encode(), key
        after = s3.head_object(Bucket=bucket, Key="typed.csv")
        assert after["ContentType"] == "text/csv"
        assert after["Metadata"] == {"source": "sftp"}
        assert after["LastModified"] == before["LastModified"]
        item = cloud.client("dynamodb").get_item(
            TableName=cloud.names.tables["LinksTable"], Key={"pk": ITEM["pk"], "sk": ITEM["sk"]}
        )["Item"]
        assert item == ITEM
        assert [e["detail"]["run"] for e in cloud.published_events()] == ["r-persist"]
        cloud.start_run(run_input("r-again"), name="r-again")

    lines = (state / "events.jsonl").read_text(encoding="utf-8").splitlines()
    assert [json.loads(line)["detail"]["run"] for line in lines] == ["r-persist", "r-again"]
    assert (state / "dynamodb" / "LinksTable.jsonl").is_file()
    assert (state / "s3" / "typed.csv").read_bytes() == b"a,b\n"


def test_a_save_rewrites_only_what_changed(mini_project: Path, tmp_path: Path) -> None:
    state = tmp_path / "state"
    with LocalCloud(state, mini_project) as cloud:
        for key in ("keep.txt", "change.txt", "drop.txt"):
            cloud.client("s3").put_object(Bucket=cloud.names.bucket, Key=key, Body=b"v1")
    kept_inode = (state / "s3" / "keep.txt").stat().st_ino

    with LocalCloud(state, mini_project) as cloud:
        s3 = cloud.client("s3")
        s3.put_object(Bucket=cloud.names.bucket, Key="change.txt", Body=b"v2")
        s3.delete_object(Bucket=cloud.names.bucket, Key="drop.txt")

    assert (state / "s3" / "keep.txt").stat().st_ino == kept_inode  # linked, not rewritten
    assert (state / "s3" / "change.txt").read_bytes() == b"v2"
    assert not (state / "s3" / "drop.txt").exists()
    assert not (state / ".pending").exists()


def test_keys_map_to_paths_and_back() -> None:
    paths = object_paths(ODD_KEYS)

    assert len(set(paths.values())) == len(ODD_KEYS)
    for key, path in paths.items():
        assert key_of(path) == key
        assert ".." not in path.split("/")
        assert "." not in path.split("/")
        assert "" not in path.split("/")


def _snapshot(store: StateDir, body: bytes, events: list[dict[str, Any]]) -> None:
    obj = ObjectToSave("k.txt", {}, 1_700_000_000.0, None, lambda: body)
    store.save({"s3": [obj]}, {"RunsTable": [{"pk": {"S": "t"}, "sk": {"S": "r"}}]}, events)


def test_an_interrupted_save_before_its_commit_leaves_the_old_state(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = StateDir(tmp_path)
    store.acquire()
    _snapshot(store, b"old", [{"n": 1}])

    def interrupted(_path: Path, _text: str) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(state_dir, "_write_atomically", interrupted)
    with pytest.raises(KeyboardInterrupt):
        _snapshot(store, b"new", [{"n": 2}])
    store.release()
    monkeypatch.undo()

    StateDir(tmp_path).recover()

    assert (tmp_path / "s3" / "k.txt").read_bytes() == b"old"
    assert [json.loads(x) for x in (tmp_path / "events.jsonl").read_text().splitlines()] == [
        {"n": 1}
    ]
    assert not (tmp_path / ".pending").exists()


def test_an_interrupted_save_after_its_commit_is_finished_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = StateDir(tmp_path)
    store.acquire()
    _snapshot(store, b"old", [{"n": 1}])
    real_rmtree = shutil.rmtree

    def interrupted(path: Path, *args: Any, **kwargs: Any) -> None:
        if Path(path).name == ".pending" and (Path(path) / "COMMIT").exists():
            raise KeyboardInterrupt  # after the parts moved and the events were appended
        real_rmtree(path, *args, **kwargs)

    monkeypatch.setattr(state_dir.shutil, "rmtree", interrupted)
    with pytest.raises(KeyboardInterrupt):
        _snapshot(store, b"new", [{"n": 2}])
    store.release()
    monkeypatch.undo()

    StateDir(tmp_path).recover()

    assert (tmp_path / "s3" / "k.txt").read_bytes() == b"new"
    assert [json.loads(x) for x in (tmp_path / "events.jsonl").read_text().splitlines()] == [
        {"n": 1},
        {"n": 2},
    ]
    assert not (tmp_path / ".pending").exists()


def test_a_state_dir_serves_one_runtime_at_a_time(tmp_path: Path) -> None:
    first = StateDir(tmp_path)
    first.acquire()
    try:
        with pytest.raises(StateDirError, match="in use"):
            StateDir(tmp_path).acquire()
    finally:
        first.release()
    StateDir(tmp_path).acquire()


def test_a_runtime_that_cannot_start_leaves_nothing_behind(
    mini_project: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("BUCKET_NAME", raising=False)
    holder = StateDir(tmp_path / "state")
    holder.acquire()
    try:
        with pytest.raises(StateDirError), LocalCloud(tmp_path / "state", mini_project):
            pass
    finally:
        holder.release()

    assert "BUCKET_NAME" not in os.environ
    with LocalCloud(tmp_path / "state", mini_project) as cloud:
        assert cloud.client("s3").list_objects_v2(Bucket=cloud.names.bucket)["KeyCount"] == 0


def test_binary_attributes_are_saved_as_base64(mini_project: Path, tmp_path: Path) -> None:
    state = tmp_path / "state"
    with LocalCloud(state, mini_project) as cloud:
        cloud.client("dynamodb").put_item(TableName=cloud.names.tables["RunsTable"], Item=ITEM)

    saved = json.loads((state / "dynamodb" / "RunsTable.jsonl").read_text(encoding="utf-8"))
    assert base64.b64decode(saved["b"]["B"]) == b"\x00\x01binary"
    assert base64.b64decode(saved["m"]["M"]["inner"]["B"]) == b"\xff"
