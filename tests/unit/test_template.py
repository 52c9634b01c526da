"""template.yaml, the state machine definitions and infra/: lint, the contract others code
against, least privilege, and Retry/Catch on every task."""

from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess
import sys
from collections.abc import Iterator
from itertools import pairwise
from pathlib import Path
from typing import Any

import pytest

from rostersync.local.template import definition_placeholders, load_template

REPO = Path(__file__).resolve().parents[2]
TEMPLATE = load_template(REPO / "template.yaml")
RESOURCES: dict[str, dict[str, Any]] = TEMPLATE["Resources"]
STEPS = ("fetch", "normalize", "match", "stage", "commit")
FUNCTIONS = {f"{step.capitalize()}Function": step for step in STEPS}
#: The commit's other tasks: same code folder, their own handler.
COMMIT_TASKS = {"CommitChunkFunction": "app.chunk", "CommitFinishFunction": "app.finish"}
#: The stage's other tasks: same code folder, their own handler.
STAGE_TASKS = {"StagePartFunction": "app.part", "StageFinishFunction": "app.finish"}
#: The normalize's other tasks: same code folder, their own handler.
NORMALIZE_TASKS = {"NormalizePartFunction": "app.part", "NormalizeNextFunction": "app.next"}
TASKS = {**COMMIT_TASKS, **STAGE_TASKS, **NORMALIZE_TASKS}
TRANSIENT = [
    "TransientError",
    "StorageUnavailable",
    "Lambda.ServiceException",
    "Lambda.AWSLambdaException",
    "Lambda.SdkClientException",
    "Lambda.TooManyRequestsException",
]
S3_OBJECT_WRITES = {"s3:PutObject", "s3:DeleteObject", "s3:AbortMultipartUpload"}
DYNAMODB_WRITES = {
    "dynamodb:PutItem",
    "dynamodb:UpdateItem",
    "dynamodb:DeleteItem",
    "dynamodb:BatchWriteItem",
}


def of_type(kind: str) -> dict[str, dict[str, Any]]:
    return {name: r for name, r in RESOURCES.items() if r["Type"] == kind}


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def resource_text(value: Any) -> str:
    """An ARN expression as text: ``${RosterBucket.Arn}/raw/*``, ``${RunsTable.Arn}``."""
    if isinstance(value, str):
        return value
    if "Fn::Sub" in value:
        return str(value["Fn::Sub"])
    if "Fn::GetAtt" in value:
        return "${" + ".".join(value["Fn::GetAtt"]) + "}"
    if "Ref" in value:
        return "${" + str(value["Ref"]) + "}"
    raise AssertionError(f"unexpected resource expression {value!r}")


def statements(function: str) -> Iterator[dict[str, Any]]:
    for policy in as_list(RESOURCES[function]["Properties"].get("Policies", [])):
        assert isinstance(policy, dict) and "Statement" in policy, (
            f"{function}: use inline statements scoped to ARNs, not {policy!r}"
        )
        yield from policy["Statement"]


def grants(function: str, actions: set[str]) -> set[str]:
    """The resources on which ``function`` is allowed any of ``actions``."""
    found: set[str] = set()
    for statement in statements(function):
        if statement["Effect"] == "Allow" and actions & set(as_list(statement["Action"])):
            found.update(resource_text(r) for r in as_list(statement["Resource"]))
    return found


def asl_files() -> list[Path]:
    return sorted((REPO / "statemachines").glob("*.asl.json"))


def walk_states(states: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    for name, state in states.items():
        yield name, state
        for branch in state.get("Branches", []):
            yield from walk_states(branch["States"])
        for key in ("Iterator", "ItemProcessor"):
            if key in state:
                yield from walk_states(state[key]["States"])


# -------------------------------------------------------------------------- linting


def test_cfn_lint_passes_on_the_templates() -> None:
    cfn_lint = Path(sys.executable).with_name("cfn-lint")
    command = str(cfn_lint) if cfn_lint.exists() else shutil.which("cfn-lint")
    if command is None:
        pytest.skip("cfn-lint is not installed")
    files = ["template.yaml", *sorted(str(p.relative_to(REPO)) for p in REPO.glob("infra/*.yaml"))]

    done = subprocess.run(
        [command, *files], cwd=REPO, capture_output=True, text=True, timeout=120, check=False
    )

    assert done.returncode == 0, done.stdout + done.stderr


def test_the_state_machines_pass_moto_and_statelint() -> None:
    spec = importlib.util.spec_from_file_location("check_asl", REPO / "scripts/check_asl.py")
    assert spec is not None and spec.loader is not None
    check_asl = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(check_asl)

    for path in asl_files():
        assert check_asl.check_file(path) == [], path


# ------------------------------------------------------------------------- contract


def test_the_five_functions_share_the_layer_and_the_environment() -> None:
    globals_ = TEMPLATE["Globals"]["Function"]
    variables = globals_["Environment"]["Variables"]

    assert set(of_type("AWS::Serverless::Function")) >= set(FUNCTIONS)
    for logical, step in FUNCTIONS.items():
        props = {**globals_, **RESOURCES[logical]["Properties"]}
        assert props["CodeUri"] == f"functions/{step}/"
        assert props["Handler"] == "app.handler"
        assert props["Runtime"] == "python3.12"
        assert props["Layers"] == [{"Ref": "CommonLayer"}]
        assert 128 <= props["MemorySize"] <= 3008
        assert props["Timeout"] <= 900
    for logical, handler in TASKS.items():
        props = {**globals_, **RESOURCES[logical]["Properties"]}
        folder = (
            "functions/commit/"
            if logical in COMMIT_TASKS
            else "functions/normalize/"
            if logical in NORMALIZE_TASKS
            else "functions/stage/"
        )
        assert (props["CodeUri"], props["Handler"]) == (folder, handler)
        assert props["Layers"] == [{"Ref": "CommonLayer"}]
        assert 128 <= props["MemorySize"] <= 3008
        assert props["Timeout"] <= 900
    assert variables["BUCKET_NAME"] == {"Ref": "RosterBucket"}
    for name, table in {
        "RUNS_TABLE": "RunsTable",
        "LINKS_TABLE": "LinksTable",
        "DIRECTORY_TABLE": "DirectoryTable",
        "TENANTS_TABLE": "TenantsTable",
    }.items():
        assert variables[name] == {"Ref": table}
    assert variables["EVENT_BUS_NAME"] == {"Ref": "EventBus"}
    assert variables["POWERTOOLS_SERVICE_NAME"] == "rostersync"
    assert variables["MAX_ARCHIVE_SHARE"] == {"Ref": "MaxArchiveShare"}
    assert TEMPLATE["Parameters"]["MaxArchiveShare"]["Default"] == 0.1
    assert "LOG_LEVEL" in variables
    layer = RESOURCES["CommonLayer"]
    assert layer["Type"] == "AWS::Serverless::LayerVersion"
    assert layer["Properties"]["ContentUri"] == "layers/common/"
    assert layer["Metadata"]["BuildMethod"] == "makefile"
    assert "build-CommonLayer:" in (REPO / "layers/common/Makefile").read_text()


def test_the_tables_have_the_agreed_keys() -> None:
    tables = of_type("AWS::DynamoDB::Table")
    pk_sk = [
        {"AttributeName": "pk", "KeyType": "HASH"},
        {"AttributeName": "sk", "KeyType": "RANGE"},
    ]

    assert set(tables) == {
        "TenantsTable",
        "RunsTable",
        "DirectoryTable",
        "LocksTable",
        "LinksTable",
        "IdempotencyTable",
    }
    for name, table in tables.items():
        props = table["Properties"]
        assert props["BillingMode"] == "PAY_PER_REQUEST", name
        assert props["PointInTimeRecoverySpecification"]["PointInTimeRecoveryEnabled"] is True
        assert props["SSESpecification"]["SSEEnabled"] is True
        if name != "IdempotencyTable":
            assert props["KeySchema"] == pk_sk, name
    (by_target,) = tables["LinksTable"]["Properties"]["GlobalSecondaryIndexes"]
    assert by_target["IndexName"] == "by_target"
    assert by_target["KeySchema"] == [
        {"AttributeName": "gpk", "KeyType": "HASH"},
        {"AttributeName": "gsk", "KeyType": "RANGE"},
    ]
    assert by_target["Projection"] == {"ProjectionType": "ALL"}
    locks = tables["LocksTable"]["Properties"]["TimeToLiveSpecification"]
    assert locks == {"AttributeName": "expires_at", "Enabled": True}
    idempotency = tables["IdempotencyTable"]["Properties"]
    assert idempotency["KeySchema"] == [{"AttributeName": "id", "KeyType": "HASH"}]
    assert idempotency["TimeToLiveSpecification"]["AttributeName"] == "expiration"


def test_the_bucket_is_private_encrypted_versioned_and_expires_raw() -> None:
    props = RESOURCES["RosterBucket"]["Properties"]
    (encryption,) = props["BucketEncryption"]["ServerSideEncryptionConfiguration"]
    rules = {
        rule["Prefix"]: rule
        for rule in props["LifecycleConfiguration"]["Rules"]
        if "Prefix" in rule
    }

    assert encryption["ServerSideEncryptionByDefault"]["SSEAlgorithm"] == "aws:kms"
    assert encryption["ServerSideEncryptionByDefault"]["KMSMasterKeyID"] == {
        "Fn::GetAtt": ["BucketKey", "Arn"]
    }
    assert RESOURCES["BucketKey"]["Type"] == "AWS::KMS::Key"
    assert all(props["PublicAccessBlockConfiguration"].values())
    assert len(props["PublicAccessBlockConfiguration"]) == 4
    assert props["VersioningConfiguration"]["Status"] == "Enabled"
    assert rules["raw/"]["ExpirationInDays"] == 30
    assert rules["runs/"]["ExpirationInDays"] >= 30
    assert props["NotificationConfiguration"]["EventBridgeConfiguration"] == {
        "EventBridgeEnabled": True
    }


def test_the_bus_is_named_after_the_stack() -> None:
    assert RESOURCES["EventBus"]["Properties"]["Name"] == {
        "Fn::Sub": "rostersync-${AWS::StackName}"
    }
    assert RESOURCES["NotificationsTopic"]["Type"] == "AWS::SNS::Topic"


# ------------------------------------------------------------------ least privilege


@pytest.mark.parametrize("function", sorted({*FUNCTIONS, *TASKS}))
def test_no_function_gets_a_wildcard_on_data(function: str) -> None:
    for statement in statements(function):
        actions = as_list(statement["Action"])
        resources = [resource_text(r) for r in as_list(statement["Resource"])]
        assert not any(a == "*" or a.endswith(":*") for a in actions), statement
        if any(a.startswith(("s3:", "dynamodb:", "events:", "kms:")) for a in actions):
            assert "*" not in resources, statement
        for action in actions:
            if action.startswith("s3:") and action != "s3:ListBucket":
                for resource in resources:
                    prefix = resource.removeprefix("${RosterBucket.Arn}/")
                    # A prefix, or one named object under it (the committed pointer).
                    assert prefix != resource, resource
                    assert prefix.endswith(("/*", "/fetch.json", "/current.json")), resource
                    assert prefix.split("/")[0] in {"inbox", "uploads", "raw", "runs", "state"}
        if "s3:ListBucket" in actions:
            assert "s3:prefix" in statement["Condition"]["StringLike"], statement


def test_each_function_writes_only_its_own_prefixes_and_tables() -> None:
    expected_prefixes = {
        "FetchFunction": {"raw", "runs"},
        "NormalizeFunction": {"runs"},
        "MatchFunction": {"runs"},
        "StageFunction": {"runs"},
        "CommitFunction": {"runs"},
        "CommitChunkFunction": {"runs", "state"},
        "CommitFinishFunction": {"runs", "state"},
        "StagePartFunction": {"runs"},
        "StageFinishFunction": {"runs"},
        "NormalizePartFunction": {"runs"},
        "NormalizeNextFunction": {"runs"},
    }
    expected_tables = {
        "FetchFunction": {"IdempotencyTable"},
        "NormalizeFunction": {"IdempotencyTable"},
        "MatchFunction": {"IdempotencyTable"},
        "StageFunction": {"RunsTable", "IdempotencyTable"},
        "CommitFunction": {"RunsTable", "IdempotencyTable"},
        "CommitChunkFunction": {"DirectoryTable", "LinksTable", "IdempotencyTable"},
        "CommitFinishFunction": {"DirectoryTable", "LinksTable", "RunsTable", "IdempotencyTable"},
        # A part writes only objects of its run: no run record, no directory.
        "StagePartFunction": {"IdempotencyTable"},
        "StageFinishFunction": {"RunsTable", "IdempotencyTable"},
        # Normalize's tasks write only objects of its run.
        "NormalizePartFunction": {"IdempotencyTable"},
        "NormalizeNextFunction": {"IdempotencyTable"},
    }
    for function in {*FUNCTIONS, *TASKS}:
        prefixes = {
            r.removeprefix("${RosterBucket.Arn}/").split("/")[0]
            for r in grants(function, S3_OBJECT_WRITES)
        }
        tables = {r.removeprefix("${").split(".")[0] for r in grants(function, DYNAMODB_WRITES)}
        assert prefixes == expected_prefixes[function], function
        assert tables == expected_tables[function], function
        publishes = grants(function, {"events:PutEvents"})
        assert publishes == ({"${EventBus.Arn}"} if function == "CommitFinishFunction" else set())


def test_the_report_function_reads_runs_and_writes_only_their_reports() -> None:
    assert grants("ReportFunction", S3_OBJECT_WRITES) == {"${RosterBucket.Arn}/runs/*/report/*"}
    assert grants("ReportFunction", DYNAMODB_WRITES) == set()
    assert grants("ReportFunction", {"events:PutEvents"}) == set()
    assert grants("ReportFunction", {"dynamodb:GetItem"}) == {"${RunsTable.Arn}"}


def test_a_report_write_leaves_the_run_alone() -> None:
    """The background write of actions.csv neither marks the run nor records a failure
    on it: its failure ends the execution, and the API starts it again when asked."""
    states = json.loads((REPO / "statemachines/sync.asl.json").read_text())["States"]
    report = states["Report"]
    assert report["Parameters"]["FunctionName"] == "${ReportFunctionArn}"
    assert [c["Next"] for c in report["Catch"]] == ["ReportFailed"]
    assert states["ReportFailed"]["Type"] == "Fail"
    assert states[report["Next"]]["Type"] == "Succeed"


def test_the_state_machine_may_only_invoke_the_steps_and_record_failures() -> None:
    machine = RESOURCES["SyncStateMachine"]["Properties"]
    invoked = {
        p["LambdaInvokePolicy"]["FunctionName"]["Ref"]
        for p in machine["Policies"]
        if "LambdaInvokePolicy" in p
    }
    inline = [s for p in machine["Policies"] if "Statement" in p for s in p["Statement"]]
    data = [s for s in inline if any(a.startswith("dynamodb:") for a in as_list(s["Action"]))]

    assert invoked == set(FUNCTIONS) | set(TASKS) | {"ReviewFunction", "ReportFunction"}
    assert [(s["Action"], resource_text(s["Resource"])) for s in data] == [
        ("dynamodb:UpdateItem", "${RunsTable.Arn}")
    ]


# ----------------------------------------------------------------- state machines


def test_every_substitution_is_defined_and_used() -> None:
    for logical, machine in of_type("AWS::Serverless::StateMachine").items():
        props = machine["Properties"]
        text = (REPO / props["DefinitionUri"]).read_text(encoding="utf-8")

        assert definition_placeholders(text) == set(props["DefinitionSubstitutions"]), logical


@pytest.mark.parametrize("path", asl_files(), ids=lambda p: p.name)
def test_every_task_retries_transient_errors_and_catches_the_rest(path: Path) -> None:
    definition = json.loads(path.read_text(encoding="utf-8"))
    tasks = [(n, s) for n, s in walk_states(definition["States"]) if s["Type"] == "Task"]

    assert tasks
    for name, task in tasks:
        assert task.get("Retry"), name
        if name in MAP_ITEM_TASKS:
            # A chunk that fails for good fails its Map, whose Catch keeps the run
            # committing.
            assert not task.get("Catch"), name
            continue
        assert task.get("Catch"), name
        assert task["Catch"][-1]["ErrorEquals"] == ["States.ALL"], name
        if task["Resource"] == "arn:aws:states:::lambda:invoke":
            (retry,) = task["Retry"]
            assert retry == {
                "ErrorEquals": TRANSIENT,
                "IntervalSeconds": 2,
                "MaxAttempts": 3,
                "BackoffRate": 2,
            }, name
            # A failed sync step fails the run; a failed decision about a prepared run
            # leaves it prepared; a commit that stopped after it began stays committing;
            # the match and stage steps a re-stage shares with a sync tell them apart;
            # a report's write touches no run.
            failure = (
                "ReportFailed"
                if name == "Report"
                else "BackToPrepared"
                if name in DECISION_TASKS
                else "CommitInterrupted"
                if name in COMMITTING_TASKS
                else "StageFailed"
                if name in RESTAGE_SHARED_TASKS
                else "RecordFailure"
            )
            assert task["Catch"] == [
                {"ErrorEquals": ["States.ALL"], "ResultPath": "$.error", "Next": failure}
            ], name
            assert task["Parameters"]["Payload.$"] == "$"
            assert task["OutputPath"] == "$.Payload"


DECISION_TASKS = {"CommitPrepared", "Rework", "Restage", "Restaged"}
#: Sync steps a re-stage runs too: their failure fails a sync, and leaves a re-stage prepared.
RESTAGE_SHARED_TASKS = {"Match", "Stage", "FinishStage"}
#: Tasks after a commit began: a failure leaves the run committing, to be resumed.
COMMITTING_TASKS = {"ResumeCommit", "FinishCommit"}
MAP_ITEM_TASKS = {"ApplyChunk", "StagePart", "StageDependentPart", "NormalizePart"}


def test_decisions_about_a_run_are_routed_past_the_sync() -> None:
    states = json.loads((REPO / "statemachines/sync.asl.json").read_text())["States"]
    definition = json.loads((REPO / "statemachines/sync.asl.json").read_text())
    route = states[definition["StartAt"]]
    assert route["Type"] == "Choice" and route["Default"] == "Fetch"
    targets: dict[str, str] = {}
    for choice in route["Choices"]:
        for rule in choice.get("Or", [choice]):
            if "StringEquals" in rule:
                targets[rule["StringEquals"]] = choice["Next"]
    assert targets == {
        "commit": "CommitPrepared",
        "resume": "ResumeCommit",
        "restage": "Restage",
        "select": "Rework",
        "undo": "Derive",
        "approve": "Derive",
        "report": "Report",
    }
    assert states["CommitPrepared"]["Parameters"]["FunctionName"] == "${CommitFunctionArn}"
    assert states["Rework"]["Parameters"]["FunctionName"] == "${ReviewFunctionArn}"
    assert states["Derive"]["Catch"][0]["Next"] == "RecordFailure"
    # A re-stage: its first task, then the sync's match and stage (fanned out alike),
    # then its last task puts back the admin's unticks before the run is prepared.
    assert states["Restage"]["Parameters"]["FunctionName"] == "${ReviewFunctionArn}"
    assert states["Restage"]["Next"] == "Match"
    for name in ("Match", "Stage", "FinishStage", "StageParts", "StageDependentParts"):
        assert [c["Next"] for c in states[name]["Catch"]] == ["StageFailed"], name
    failed = states["StageFailed"]
    assert failed["Choices"] == [
        {"Variable": "$.operation", "StringEquals": "restage", "Next": "BackToPrepared"}
    ]
    assert failed["Default"] == "RecordFailure"
    decided = {json.dumps(c, sort_keys=True): c["Next"] for c in states["CommitOrStop"]["Choices"]}
    restaged = [n for c, n in decided.items() if '"restage"' in c]
    assert restaged == ["MarkRestaged"]
    mark = states["MarkRestaged"]
    assert (mark["Type"], mark["Result"], mark["ResultPath"]) == ("Pass", "restaged", "$.operation")
    assert states[mark["Next"]]["Parameters"]["FunctionName"] == "${ReviewFunctionArn}"
    assert states[mark["Next"]]["Next"] == "Prepared"
    back = states["BackToPrepared"]
    assert back["Resource"] == "arn:aws:states:::dynamodb:updateItem"
    assert back["Parameters"]["ExpressionAttributeValues"][":status"] == {"S": "prepared"}
    assert states[back["Next"]]["Type"] == "Fail"


def test_the_sync_flow() -> None:
    states = json.loads((REPO / "statemachines/sync.asl.json").read_text())["States"]
    chain = ["Fetch", "Normalize", "Match", "Stage"]

    for current, following in pairwise(chain):
        # Normalize's choice goes on to the match once every file is read.
        after = states[current]["Next"]
        if after == "NormalizeFanOutOrMatch":
            after = states[after]["Default"]
        assert after == following
    fan_stage = states[states["Stage"]["Next"]]
    assert fan_stage["Type"] == "Choice"
    # A plan still splitting entities goes back to the stage task, then the parts' Map.
    assert [c["Next"] for c in fan_stage["Choices"]] == ["Stage", "StageParts"]
    assert "$.stage.splitting" in json.dumps(fan_stage["Choices"][0])
    choice = states[fan_stage["Default"]]
    assert choice["Type"] == "Choice"
    targets = {c["StringEquals"]: c["Next"] for c in choice["Choices"] if "StringEquals" in c}
    assert targets == {"commit": "Commit", "prepared": "Prepared"}
    for begin in ("Commit", "CommitPrepared", "ResumeCommit"):
        assert states[begin]["Next"] == "FanOutOrFinish", begin
    fan = states["FanOutOrFinish"]
    assert fan["Default"] == "FinishCommit" and fan["Choices"][0]["Next"] == "ApplyChunks"
    chunks = states["ApplyChunks"]
    assert chunks["ItemProcessor"]["ProcessorConfig"]["Mode"] == "DISTRIBUTED"
    assert chunks["Next"] == "FinishCommit" and chunks["ResultPath"] is None
    assert chunks["Catch"][0]["Next"] == "CommitInterrupted"
    assert states["FinishCommit"]["Next"] == "Committed"
    interrupted = states["CommitInterrupted"]
    # The run keeps its status (committing): only the error is noted.
    assert ":status" not in interrupted["Parameters"]["ExpressionAttributeValues"]
    assert states[interrupted["Next"]]["Type"] == "Fail"
    assert states["Committed"]["Type"] == states["Prepared"]["Type"] == "Succeed"
    assert states[choice["Default"]]["Next"] == "RecordFailure"
    record = states["RecordFailure"]
    assert record["Resource"] == "arn:aws:states:::dynamodb:updateItem"
    assert record["Parameters"]["TableName"] == "${RunsTableName}"
    assert record["Parameters"]["Key"] == {"pk": {"S.$": "$.tenant"}, "sk": {"S.$": "$.run_id"}}
    assert record["ResultPath"] is None
    assert record["Next"] == "NotifyFailure"
    notify = states["NotifyFailure"]
    assert notify["Resource"] == "arn:aws:states:::events:putEvents"
    assert notify["Parameters"]["Entries"][0]["DetailType"] == "run.failed"
    assert notify["Next"] == "Failed"
    assert states["Failed"]["Type"] == "Fail"


def test_the_layer_does_not_ship_boto3_or_moto() -> None:
    lines = (REPO / "layers/common/requirements.txt").read_text(encoding="utf-8").splitlines()
    names = {line.split("=")[0].split("[")[0].strip().lower() for line in lines if line.strip()}
    names.discard("")

    assert {"aws-lambda-powertools", "pydantic", "httpx", "rapidfuzz"} <= names
    assert not names & {"boto3", "botocore", "moto"}


SECRETS_ARN = (
    "arn:${AWS::Partition}:secretsmanager:${AWS::Region}:${AWS::AccountId}:secret:rostersync/*"
)
#: Who may do what with tenants' secrets: the fetch reads them, connecting writes them.
SECRET_GRANTS = {
    "FetchFunction": {"secretsmanager:GetSecretValue"},
    "ApiFunction": {
        "secretsmanager:CreateSecret",
        "secretsmanager:PutSecretValue",
        "secretsmanager:DescribeSecret",
        "secretsmanager:DeleteSecret",
        "secretsmanager:GetSecretValue",
        "secretsmanager:TagResource",
    },
}


def test_only_the_fetch_and_the_api_touch_secrets_and_only_under_rostersync() -> None:
    functions = of_type("AWS::Serverless::Function")
    for function in functions:
        granted: set[str] = set()
        for statement in statements(function):
            actions = {a for a in as_list(statement["Action"]) if a.startswith("secretsmanager:")}
            if not actions:
                continue
            assert statement["Effect"] == "Allow"
            assert [resource_text(r) for r in as_list(statement["Resource"])] == [SECRETS_ARN], (
                function
            )
            assert set(as_list(statement["Action"])) == actions, "secrets apart from the rest"
            granted |= actions
        assert granted == SECRET_GRANTS.get(function, set()), function


def test_the_functions_running_the_columnar_engine_have_room_in_tmp() -> None:
    """Match, stage and re-stage read id lines and the committed index as files in /tmp
    and let DuckDB spill there, normalize maps the committed run's normalized files:
    more than Lambda's default 512 MB at a million students."""
    resources = TEMPLATE["Resources"]
    for name in ("NormalizeFunction", "MatchFunction", "StageFunction", "ReviewFunction"):
        size = resources[name]["Properties"].get("EphemeralStorage", {}).get("Size", 512)
        assert size >= 4096, name


def test_the_stage_fans_out_in_two_waves_then_finishes() -> None:
    """Stage → (parts over a Distributed Map: wave 1, then wave 2 if the plan has one) →
    FinishStage → the commit-or-prepared choice; a part's item names the run, the
    stage's attempt and the part, and a failed Map fails the run."""
    states = json.loads((REPO / "statemachines/sync.asl.json").read_text())["States"]
    fan = states["StageFanOutOrDecide"]
    assert fan["Default"] == "CommitOrStop"
    waves = states["StageParts"], states["StageDependentParts"]
    for wave, items in zip(waves, ("$.stage.parts", "$.stage.dependent_parts"), strict=True):
        assert wave["Type"] == "Map" and wave["ItemsPath"] == items
        assert wave["ItemProcessor"]["ProcessorConfig"]["Mode"] == "DISTRIBUTED"
        assert wave["ItemSelector"] == {
            "tenant.$": "$.tenant",
            "run_id.$": "$.run_id",
            "attempt.$": "$.stage.attempt",
            "part.$": "$$.Map.Item.Value",
        }
        assert wave["MaxConcurrencyPath"] == "$.stage.concurrency"
        assert wave["ResultPath"] is None
        assert wave["Catch"][0]["Next"] == "StageFailed"
        (task,) = wave["ItemProcessor"]["States"].values()
        assert task["Parameters"]["FunctionName"] == "${StagePartFunctionArn}"
    assert states["StageParts"]["Next"] == "DependentPartsOrFinish"
    second = states["DependentPartsOrFinish"]
    assert second["Choices"][0]["Next"] == "StageDependentParts"
    assert second["Default"] == states["StageDependentParts"]["Next"] == "FinishStage"
    finish = states["FinishStage"]
    assert finish["Parameters"]["FunctionName"] == "${StageFinishFunctionArn}"
    assert finish["Next"] == "CommitOrStop"


def test_normalize_fans_out_over_a_distributed_map_and_loops_back_to_its_choice() -> None:
    states = json.loads((REPO / "statemachines/sync.asl.json").read_text())["States"]
    assert states["Normalize"]["Next"] == "NormalizeFanOutOrMatch"
    choice = states["NormalizeFanOutOrMatch"]
    assert choice["Choices"][0]["Next"] == "NormalizeParts" and choice["Default"] == "Match"
    mapped = states["NormalizeParts"]
    assert mapped["ItemProcessor"]["ProcessorConfig"]["Mode"] == "DISTRIBUTED"
    task = mapped["ItemProcessor"]["States"]["NormalizePart"]
    assert task["Parameters"]["FunctionName"] == "${NormalizePartFunctionArn}"
    assert mapped["Next"] == "NormalizeNext"
    assert states["NormalizeNext"]["Parameters"]["FunctionName"] == "${NormalizeNextFunctionArn}"
    assert states["NormalizeNext"]["Next"] == "NormalizeFanOutOrMatch"


def test_only_the_tasks_that_join_parts_delete_and_only_parts() -> None:
    deleting = {
        name: grants(name, {"s3:DeleteObject"})
        for name, resource in RESOURCES.items()
        if resource["Type"] == "AWS::Serverless::Function" and grants(name, {"s3:DeleteObject"})
    }
    parts = "${RosterBucket.Arn}/runs/*/"
    assert deleting["CommitFinishFunction"] == {
        parts + "stage/*",
        parts + "normalize/*",
    }
    assert deleting["NormalizeNextFunction"] == {parts + "normalize/parts/*"}
    for name, resources in deleting.items():
        if name not in {"CommitFinishFunction", "NormalizeNextFunction"}:
            assert all("/runs/" not in r for r in resources), name


def test_normalize_parts_read_raw_and_their_run_and_write_only_the_run() -> None:
    for function in NORMALIZE_TASKS:
        reads = grants(function, {"s3:GetObject"})
        assert reads == {"${RosterBucket.Arn}/raw/*", "${RosterBucket.Arn}/runs/*"} | (
            {"${RosterBucket.Arn}/state/*/current.json"}
            if function == "NormalizeNextFunction"
            else set()
        ), function
        assert grants(function, S3_OBJECT_WRITES) == {"${RosterBucket.Arn}/runs/*"} | (
            {"${RosterBucket.Arn}/runs/*/normalize/parts/*"}
            if function == "NormalizeNextFunction"
            else set()
        )
        # Only the task that joins the parts deletes, and only the parts' files.
        deletes = grants(function, {"s3:DeleteObject"})
        assert deletes == (
            {"${RosterBucket.Arn}/runs/*/normalize/parts/*"}
            if function == "NormalizeNextFunction"
            else set()
        )
        assert not grants(function, {"events:PutEvents", "dynamodb:BatchWriteItem"})


def test_the_stage_part_function_reads_the_run_and_the_state_and_writes_only_the_run() -> None:
    """Least privilege for a stage part: objects under runs/ and state/ read, under runs/
    written; the tenants table read (contact details edited in the app); nothing else
    of DynamoDB but the idempotency records, no event bus, no run record."""
    reads = grants("StagePartFunction", {"s3:GetObject"})
    assert reads == {"${RosterBucket.Arn}/runs/*", "${RosterBucket.Arn}/state/*"}
    assert grants("StagePartFunction", S3_OBJECT_WRITES) == {"${RosterBucket.Arn}/runs/*"}
    tables = grants("StagePartFunction", {"dynamodb:GetItem", "dynamodb:Query"})
    assert tables == {"${TenantsTable.Arn}", "${IdempotencyTable.Arn}"}
    assert not grants("StagePartFunction", {"events:PutEvents", "dynamodb:BatchWriteItem"})


@pytest.mark.parametrize("function", sorted({*FUNCTIONS, *TASKS}))
def test_each_steps_handler_is_in_its_code_folder(function: str) -> None:
    """The handler a function's template names exists in its folder's ``app.py`` (the
    stage's plan, part and finish; the commit's begin, chunk and finish)."""
    props = {**TEMPLATE["Globals"]["Function"], **RESOURCES[function]["Properties"]}
    module_name, attribute = props["Handler"].split(".")
    path = REPO / props["CodeUri"] / f"{module_name}.py"
    spec = importlib.util.spec_from_file_location(f"{function}_{module_name}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)

    assert callable(getattr(module, attribute, None)), f"{path}: no {attribute}"
