"""The embedded stack: template.yaml's functions and state machine under moto, with
in-process handlers, over the embedded store.

``LocalCloud`` starts moto, creates every bus, topic, function and state machine that
``template.yaml`` declares (same environment, the same ASL with its
``DefinitionSubstitutions`` resolved) and runs each function's ``app.handler`` in this
process when Step Functions (or anyone) invokes it. Tables, objects and events live in
the embedded store (``rostersync.storage.local``) in the state directory: every write is
durable when it returns, and several processes may use one directory at once. With
``storage="moto"`` (the default without a state directory) moto's S3, DynamoDB and
EventBridge hold them instead, in memory, for the AWS adapters' tests.
See docs/local-runtime.md.
"""

from __future__ import annotations

import io
import json
import logging
import os
import re
import shutil
import sys
import tempfile
import threading
import time
import uuid
import zipfile
from collections.abc import Callable, Iterable, Mapping
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Literal

import boto3

from rostersync.local.moto_seams import InProcessFunctions, MotoPatches, check_moto_seams
from rostersync.local.table_tasks import run_table_task
from rostersync.local.template import StackSpec, TemplateError, describe_stack, load_template
from rostersync.pipeline.deps import reset_default_deps
from rostersync.processes import runner_gone, runner_name
from rostersync.storage.local import LocalStore, open_local_store

__all__ = [
    "ExecutionResult",
    "LocalCloud",
    "StackNames",
    "TemplateError",
    "find_project_root",
]

_LOG = logging.getLogger("rostersync.local")

PROJECT_ROOT_ENV = "ROSTERSYNC_PROJECT_ROOT"
TEMPLATE_FILE = "template.yaml"
#: Step Functions' limit on a state's size; moto does not enforce it.
STATE_SIZE_LIMIT = 256 * 1024
#: Where the tables, objects and events are: the embedded store, or moto's services.
Storage = Literal["embedded", "moto"]
#: Files of the snapshot format earlier versions saved on exit (no longer read).
_SNAPSHOT_PARTS = ("s3", "dynamodb", "s3-metadata.json")
_FINISHED = {"SUCCEEDED", "FAILED", "TIMED_OUT", "ABORTED"}
#: Seconds between reads of a watched execution's history (its states, for progress).
HISTORY_EVERY = 1.0


def find_project_root(explicit: Path | None = None) -> Path:
    """The folder holding template.yaml: ``explicit``, else ``$ROSTERSYNC_PROJECT_ROOT``,
    else the nearest one above this package (a checkout with an editable install)."""
    candidates: list[Path]
    if explicit is not None:
        candidates = [Path(explicit)]
    elif os.environ.get(PROJECT_ROOT_ENV):
        candidates = [Path(os.environ[PROJECT_ROOT_ENV])]
    else:
        candidates = list(Path(__file__).resolve().parents)
    for folder in candidates:
        if (folder / TEMPLATE_FILE).is_file():
            return folder.resolve()
    where = candidates[0] if len(candidates) == 1 else f"any folder above {Path(__file__).parent}"
    raise TemplateError(
        f"no {TEMPLATE_FILE} in {where}; pass project_root or set {PROJECT_ROOT_ENV}"
    )


@dataclass(frozen=True)
class StackNames:
    """The physical names of the local stack's resources, by logical id."""

    stack_name: str
    region: str
    account_id: str
    buckets: Mapping[str, str]
    tables: Mapping[str, str]
    event_buses: Mapping[str, str]
    topics: Mapping[str, str]  # ARNs
    functions: Mapping[str, str]
    state_machines: Mapping[str, str]  # ARNs

    @property
    def bucket(self) -> str:
        """The roster bucket (the console's pages have a bucket of their own)."""
        if "RosterBucket" in self.buckets:
            return self.buckets["RosterBucket"]
        return _only(self.buckets, "bucket")

    @property
    def event_bus(self) -> str:
        return _only(self.event_buses, "event bus")

    @property
    def state_machine_arn(self) -> str:
        return _only(self.state_machines, "state machine")


def _only(named: Mapping[str, str], what: str) -> str:
    if len(named) != 1:
        raise LookupError(f"the template has {len(named)} {what}s; pick one by logical id")
    return next(iter(named.values()))


@dataclass(frozen=True)
class ExecutionResult:
    """How one state machine execution ended."""

    execution_arn: str
    name: str
    status: str  # SUCCEEDED, FAILED, TIMED_OUT or ABORTED
    output: dict[str, Any] | None
    error: str | None
    cause: str | None
    #: Names of the states entered, in order (a retried state appears once per entry).
    states: list[str] = field(default_factory=list)
    #: The first state left because its task failed (None if none did).
    failed_state: str | None = None
    #: The largest state output, in bytes (Step Functions refuses more than 256 KiB).
    largest_state_bytes: int = 0

    @property
    def succeeded(self) -> bool:
        return self.status == "SUCCEEDED"


class _Environment:
    """Sets process environment variables and puts the previous values back."""

    def __init__(self) -> None:
        self._saved: dict[str, str | None] = {}

    def set(self, values: Mapping[str, str]) -> None:
        for name, value in values.items():
            self._saved.setdefault(name, os.environ.get(name))
            os.environ[name] = value

    def restore(self) -> None:
        for name, value in self._saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        self._saved.clear()


def _upper_snake(logical_id: str) -> str:
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", logical_id).upper()


def _placeholder_zip() -> bytes:
    # moto requires code; the handler runs from the project folder instead.
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("README.txt", "rostersync local runtime: code runs in-process\n")
    return buffer.getvalue()


def open_scratch(root: Path) -> Path:
    """A folder of this process's own under ``root/scratch/`` for temporary files, made
    after removing those of processes of this machine that are gone (a ``kill -9``
    leaves its folder behind); another live process's folder is left alone."""
    folder = root / "scratch"
    folder.mkdir(parents=True, exist_ok=True)
    for entry in folder.iterdir():
        owner, _, _ = entry.name.rpartition("-")
        if runner_gone(owner.replace("+", ":")):
            shutil.rmtree(entry, ignore_errors=True)
    name = runner_name().replace(":", "+")
    scratch = folder / f"{name}-{uuid.uuid4().hex[:8]}"
    scratch.mkdir()
    return scratch


def close_scratch(scratch: Path, previous: str | None) -> None:
    """Give back ``open_scratch``'s folder and the temporary folder used before it."""
    tempfile.tempdir = previous
    shutil.rmtree(scratch, ignore_errors=True)


class LocalCloud:
    """template.yaml's stack under moto, with the handlers running in this process.

    ``storage="embedded"`` (the default with a ``state_dir``) keeps tables, objects and
    events in the embedded store in ``state_dir`` (a temporary directory if None), where
    other processes may use them at the same time; ``storage="moto"`` (the default
    without one) keeps them in moto's S3, DynamoDB and EventBridge, in memory, gone on
    exit. ``instant_retries`` makes Retry intervals and Wait states take no time.
    One LocalCloud may be active per process (moto's state is process-wide).
    """

    def __init__(
        self,
        state_dir: Path | None,
        project_root: Path | None = None,
        *,
        storage: Storage | None = None,
        instant_retries: bool = True,
        region: str = "us-east-1",
        stack_name: str = "local",
        parameters: Mapping[str, str] | None = None,
    ) -> None:
        self.storage: Storage = storage or ("moto" if state_dir is None else "embedded")
        if self.storage == "moto" and state_dir is not None:
            raise ValueError("storage='moto' keeps nothing on disk: pass state_dir=None")
        self.state_dir = Path(state_dir) if state_dir is not None else None
        self._project_root_arg = project_root
        self.instant_retries = instant_retries
        self.region = region
        self.stack_name = stack_name
        self.parameters = dict(parameters or {})
        self.project_root: Path | None = None
        self.environment: dict[str, str] = {}
        self._names: StackNames | None = None
        self._spec: StackSpec | None = None
        self._store: LocalStore | None = None
        self._exit: ExitStack | None = None
        self._events_lock = threading.Lock()
        self._session_events: list[dict[str, Any]] = []
        self._executions: set[str] = set()
        self._account = "123456789012"

    def _processes(self) -> bool:
        """Whether each invocation runs in a process of its own (``LOCAL_INVOKE``)."""
        mode = os.environ.get("LOCAL_INVOKE", "thread")
        if mode not in ("thread", "process"):
            raise ValueError(f"LOCAL_INVOKE is {mode!r}: 'thread' (the default) or 'process'")
        if mode == "process" and self.storage != "embedded":
            # moto's storage lives in this process: another could not reach it.
            raise ValueError("LOCAL_INVOKE=process needs the embedded store")
        return mode == "process"

    # ------------------------------------------------------------------ lifetime

    def __enter__(self) -> LocalCloud:
        if self._exit is not None:
            raise RuntimeError("this LocalCloud is already running")
        check_moto_seams()
        with _ACTIVE_LOCK:
            # moto's backends and the patches are process-wide: one stack per process.
            if _ACTIVE:
                raise RuntimeError("another LocalCloud is running in this process")
            _ACTIVE.append(self)
        try:
            return self._start()
        except BaseException:
            self._store = None
            with _ACTIVE_LOCK:
                _ACTIVE.remove(self)
            raise

    def _start(self) -> LocalCloud:
        from moto import mock_aws

        with self._events_lock:
            self._session_events.clear()

        root = find_project_root(self._project_root_arg)
        template = load_template(root / TEMPLATE_FILE)
        with ExitStack() as stack:
            if self.storage == "embedded":
                self._store = self._open_store(stack)
            environment = _Environment()
            stack.callback(environment.restore)
            # Handlers build boto3 clients from the environment, as on Lambda.
            environment.set(
                {
                    "AWS_DEFAULT_REGION": self.region,
                    "AWS_REGION": self.region,
                    # EMF metrics print to stdout, where the command line writes its output.
                    "POWERTOOLS_METRICS_DISABLED": "true",
                }
            )
            mock = mock_aws(
                config={
                    "stepfunctions": {"execute_state_machine": True},
                    "lambda": {"use_docker": False},
                }
            )
            mock.start()
            stack.callback(mock.stop)
            account_id = self.client("sts").get_caller_identity()["Account"]
            self._account = account_id
            spec = describe_stack(
                template,
                root,
                stack_name=self.stack_name,
                region=self.region,
                account_id=account_id,
                parameters=self.parameters,
            )
            patches = MotoPatches(
                functions=InProcessFunctions(spec.functions, processes=self._processes()),
                on_events=self._capture_events,
                instant_waits=self.instant_retries,
                table_tasks=self._table_task if self._store is not None else None,
            )
            patches.install()
            stack.callback(patches.remove)
            stack.callback(self._drain_executions)
            self._spec = spec
            self._names = _names_of(spec)
            self._create_resources(spec)
            self.environment = _process_environment(spec, self._names)
            if self._store is not None:
                self.environment["LOCAL_STORE_DIR"] = str(self._store.root)
                # Runs note which process runs them: a run whose process is gone (a
                # kill -9) is known at once by the next start on this machine.
                self.environment["LOCAL_RUNNER"] = runner_name()
                # The engines' spill files and downloads (gigabytes at a million
                # students) in the state, where a start gives back what a killed
                # process left, not in /tmp, which nothing cleans.
                scratch = open_scratch(self._store.root)
                stack.callback(close_scratch, scratch, tempfile.tempdir)
                tempfile.tempdir = str(scratch)
                # For the processes of invocations; not TMPDIR, which other programs
                # started meanwhile would take for their sockets (too long a path).
                self.environment["LOCAL_SCRATCH_DIR"] = str(scratch)
                # One writer: more chunks at once only hold more memory.
                self.environment.setdefault(
                    "COMMIT_CONCURRENCY", os.environ.get("COMMIT_CONCURRENCY", "2")
                )
                self.environment.setdefault(
                    "STAGE_CONCURRENCY", os.environ.get("STAGE_CONCURRENCY", "2")
                )
                # Two cores here: more parts at once only hold more memory.
                self.environment.setdefault(
                    "NORMALIZE_CONCURRENCY", os.environ.get("NORMALIZE_CONCURRENCY", "2")
                )
                # Larger chunks than on Lambda: each is one SQLite transaction, and the
                # store's keys are random, so a transaction rewrites most index pages it
                # touches however few rows it holds (measured: 50,000 lines a chunk
                # halve the bytes written and the commit's time in SQLite against
                # 10,000; at a million students 200,000 took a first sync's commit
                # from 629 to 298 s against 50,000, whose cost grew with the index).
                self.environment.setdefault(
                    "COMMIT_CHUNK_ACTIONS", os.environ.get("COMMIT_CHUNK_ACTIONS", "200000")
                )
                if not os.environ.get("LOCAL_SECRETS_FILE"):
                    # Tenants' secrets (API tokens) in the state, in a 0600 file: moto's
                    # Secrets Manager would forget them when the process ends.
                    secrets = self._store.root / "secrets.json"
                    self.environment["LOCAL_SECRETS_FILE"] = str(secrets)
            environment.set(self.environment)
            stack.callback(self._remove_layer_paths, self._add_layer_paths(spec.layer_dirs))
            # Dependencies cached by an earlier session point at its resources (its store).
            _reset_process_caches()
            stack.callback(_reset_process_caches)
            self.project_root = root
            self._exit = stack.pop_all()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        exit_stack, self._exit = self._exit, None
        if exit_stack is None:
            return
        try:
            self._drain_executions()
        finally:
            try:
                exit_stack.close()
            finally:
                self._store = None
                with _ACTIVE_LOCK:
                    _ACTIVE.remove(self)

    @property
    def names(self) -> StackNames:
        if self._names is None:
            raise RuntimeError("LocalCloud is not running: use it as a context manager")
        return self._names

    def client(self, service: str) -> Any:
        """A boto3 client for the local stack's region (use it while the runtime runs)."""
        return _client(service, self.region)

    @property
    def store(self) -> LocalStore:
        """The embedded store (``storage="embedded"`` only)."""
        if self._store is None:
            raise RuntimeError("this LocalCloud keeps its state in moto, not the embedded store")
        return self._store

    # ---------------------------------------------------------------- resources

    def _open_store(self, stack: ExitStack) -> LocalStore:
        if self.state_dir is None:
            temporary = tempfile.TemporaryDirectory(prefix="rostersync-state-")
            stack.callback(temporary.cleanup)
            self.state_dir = Path(temporary.name)
            stack.callback(setattr, self, "state_dir", None)
        self.state_dir.mkdir(parents=True, exist_ok=True)
        old = [part for part in _SNAPSHOT_PARTS if (self.state_dir / part).exists()]
        if old:
            _LOG.warning(
                "%s holds a snapshot of the earlier format (%s); it is not read: the state "
                "is kept in %s now",
                self.state_dir,
                ", ".join(old),
                "the embedded store",
            )
        return open_local_store(self.state_dir)

    def _create_resources(self, spec: StackSpec) -> None:
        iam = self.client("iam")
        trust = json.dumps({"Version": "2012-10-17", "Statement": []})
        role_arn = iam.create_role(
            RoleName=f"{spec.stack_name}-local-role", AssumeRolePolicyDocument=trust
        )["Role"]["Arn"]
        if self.storage == "moto":
            self._create_storage(spec)

        events = self.client("events")
        for bus in spec.event_buses:
            if bus.name != "default":
                events.create_event_bus(Name=bus.name)
        sns = self.client("sns")
        for topic in spec.topics:
            sns.create_topic(Name=topic.name)

        lambdas = self.client("lambda")
        code = _placeholder_zip()
        for function in spec.functions:
            created = lambdas.create_function(
                FunctionName=function.name,
                Runtime=function.runtime,
                Role=role_arn,
                Handler=function.handler,
                Code={"ZipFile": code},
                Timeout=function.timeout,
                MemorySize=function.memory_size,
                Environment={"Variables": function.environment},
            )
            _expect_same(created["FunctionArn"], function.arn, function.logical_id)

        states = self.client("stepfunctions")
        for machine in spec.state_machines:
            created = states.create_state_machine(
                name=machine.name, definition=machine.definition, roleArn=role_arn
            )
            _expect_same(created["stateMachineArn"], machine.arn, machine.logical_id)

    def _create_storage(self, spec: StackSpec) -> None:
        """moto's tables and buckets (``storage="moto"``: the AWS adapters' tests)."""
        dynamodb = self.client("dynamodb")
        for table in spec.tables:
            request: dict[str, Any] = {
                "TableName": table.name,
                "KeySchema": table.key_schema,
                "AttributeDefinitions": table.attribute_definitions,
                "BillingMode": "PAY_PER_REQUEST",
            }
            if table.global_secondary_indexes:
                request["GlobalSecondaryIndexes"] = [
                    {k: index[k] for k in ("IndexName", "KeySchema", "Projection")}
                    for index in table.global_secondary_indexes
                ]
            if table.local_secondary_indexes:
                request["LocalSecondaryIndexes"] = [
                    {k: index[k] for k in ("IndexName", "KeySchema", "Projection")}
                    for index in table.local_secondary_indexes
                ]
            dynamodb.create_table(**request)
            if table.ttl_attribute:
                dynamodb.update_time_to_live(
                    TableName=table.name,
                    TimeToLiveSpecification={
                        "Enabled": True,
                        "AttributeName": table.ttl_attribute,
                    },
                )

        s3 = self.client("s3")
        for bucket in spec.buckets:
            if self.region == "us-east-1":
                s3.create_bucket(Bucket=bucket.name)
            else:
                s3.create_bucket(
                    Bucket=bucket.name,
                    CreateBucketConfiguration={"LocationConstraint": self.region},
                )
            if bucket.eventbridge_notifications:
                s3.put_bucket_notification_configuration(
                    Bucket=bucket.name,
                    NotificationConfiguration={"EventBridgeConfiguration": {}},
                )

    # -------------------------------------------------------------------- events

    def _capture_events(self, accepted: list[tuple[str, dict[str, Any]]]) -> None:
        # Events put through moto (the state machine's events:putEvents tasks, any boto3
        # client): into the event log with the embedded store, else kept in memory.
        buses = set(self.names.event_buses.values())
        mine = [event for bus, event in accepted if bus in buses]
        if not mine:
            return
        if self._store is not None:
            self._store.events.append(mine)
            return
        with self._events_lock:
            self._session_events.extend(mine)

    def _table_task(self, action: str, parameters: dict[str, Any]) -> dict[str, Any] | None:
        tables = set(self.names.tables.values())
        return run_table_task(self.store.database, tables, action, parameters)

    def published_events(self) -> list[dict[str, Any]]:
        """Every event put on the stack's bus, oldest first (with the embedded store, every
        event its log holds, whichever process put it), as a rule's target receives it:
        ``{"id", "source", "detail-type", "time", "detail", ...}``."""
        if self._store is not None:
            return self._store.events.read()
        with self._events_lock:
            return [dict(event) for event in self._session_events]

    # ---------------------------------------------------------------- executions

    def start_execution(
        self, run_input: dict[str, Any], *, name: str, state_machine: str | None = None
    ) -> str:
        """Start an execution named ``name`` and return its ARN without waiting."""
        arn = (
            self.names.state_machines[state_machine]
            if state_machine is not None
            else self.names.state_machine_arn
        )
        response = self.client("stepfunctions").start_execution(
            stateMachineArn=arn, name=name, input=json.dumps(run_input)
        )
        execution_arn = str(response["executionArn"])
        self._executions.add(execution_arn)
        return execution_arn

    def start_run(
        self,
        run_input: dict[str, Any],
        *,
        name: str,
        timeout: float | None = None,
        on_state: Callable[[str], None] | None = None,
    ) -> ExecutionResult:
        """Run the state machine on ``run_input`` and wait for the end.

        Executions must be named (moto refuses a second unnamed one); the run id is a good
        name. ``on_state`` is called with each state's name as the execution enters it.
        """
        execution_arn = self.start_execution(run_input, name=name)
        return self.wait_for(execution_arn, timeout=timeout, on_state=on_state)

    def _status_of(self, execution_arn: str) -> str | None:
        """An execution's status read off moto's backend in this process: polling
        through the API costs a request's serialization and dispatch every time (most of
        a waiting run's CPU). None where the backend does not answer (then ask the API)."""
        try:
            from moto.stepfunctions.parser.models import stepfunctions_parser_backends

            backend = stepfunctions_parser_backends[self._account][self.region]
            return str(backend.describe_execution(execution_arn).status)
        except Exception:  # moto's internals moved: the API answers instead
            return None

    def wait_for(
        self,
        execution_arn: str,
        *,
        timeout: float | None = None,
        on_state: Callable[[str], None] | None = None,
    ) -> ExecutionResult:
        """Wait for an execution to finish (moto runs it in a thread) and describe it."""
        client = self.client("stepfunctions")
        deadline = None if timeout is None else time.monotonic() + timeout
        pause = 0.01
        reported = 0
        looked = 0.0
        while True:
            status = self._status_of(execution_arn)
            if status is None:
                status = str(client.describe_execution(executionArn=execution_arn)["status"])
            if on_state is not None and time.monotonic() - looked >= HISTORY_EVERY:
                # The history is read whole each time: at most once a second.
                looked = time.monotonic()
                entered = _history(client, execution_arn).states
                for state in entered[reported:]:
                    on_state(state)
                reported = len(entered)
            if status in _FINISHED:
                break
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(f"{execution_arn} still running after {timeout} s")
            time.sleep(pause)
            # At most 50 ms between looks (each a lookup in moto's backend): the end of a
            # run is seen within 50 ms, not a quarter of a second.
            pause = min(pause * 1.5, 0.05)
        described = client.describe_execution(executionArn=execution_arn)
        history = _history(client, execution_arn)
        if on_state is not None:
            for state in history.states[reported:]:
                on_state(state)
        if history.largest > STATE_SIZE_LIMIT:
            _LOG.warning(
                "%s: a state of %d bytes exceeds Step Functions' 256 KiB limit; on AWS this "
                "execution would fail with States.DataLimitExceeded",
                described["name"],
                history.largest,
            )
        output = described.get("output")
        self._executions.discard(execution_arn)
        return ExecutionResult(
            execution_arn=execution_arn,
            name=str(described["name"]),
            status=str(described["status"]),
            output=json.loads(output) if output else None,
            error=described.get("error"),
            cause=described.get("cause"),
            states=history.states,
            failed_state=history.failed_state,
            largest_state_bytes=history.largest,
        )

    def _drain_executions(self, timeout: float = 60.0) -> None:
        """Let executions started here finish before moto and the patches go away."""
        if not self._executions:
            return
        client = self.client("stepfunctions")
        deadline = time.monotonic() + timeout
        for execution_arn in sorted(self._executions):
            while time.monotonic() < deadline:
                status = client.describe_execution(executionArn=execution_arn)["status"]
                if status in _FINISHED:
                    break
                time.sleep(0.05)
            else:
                _LOG.warning("%s still running when the local runtime stopped", execution_arn)
        self._executions.clear()

    # ------------------------------------------------------------------- helpers

    @staticmethod
    def _add_layer_paths(layer_dirs: Iterable[Path]) -> list[str]:
        # As on Lambda, layer code is importable; an installed package still comes first.
        added = [
            str(folder) for folder in layer_dirs if folder.is_dir() and str(folder) not in sys.path
        ]
        sys.path.extend(added)
        return added

    @staticmethod
    def _remove_layer_paths(added: list[str]) -> None:
        for folder in added:
            if folder in sys.path:
                sys.path.remove(folder)


#: Process-wide caches of clients and repositories, as (module, function) names: a
#: Lambda process builds them once; a local session must not inherit an earlier one's.
_PROCESS_CACHES = (
    ("rostersync.application.launch", "default_run_start_deps"),
    ("rostersync.api.app", "default_api"),
)


def _reset_process_caches() -> None:
    reset_default_deps()
    for module_name, function in _PROCESS_CACHES:
        module = sys.modules.get(module_name)
        cached = getattr(module, function, None)
        if cached is not None:
            cached.cache_clear()


_ACTIVE_LOCK = threading.Lock()
_ACTIVE: list[LocalCloud] = []
_CLIENTS_LOCK = threading.Lock()
_CLIENTS: dict[tuple[str, str], Any] = {}
_SESSION: list[boto3.session.Session] = []


def _client(service: str, region: str) -> Any:
    # Making a client loads its service model (tens of ms); the runtime's own clients are
    # kept for the process. moto intercepts every botocore client while it is active.
    with _CLIENTS_LOCK:
        key = (service, region)
        if key not in _CLIENTS:
            if not _SESSION:
                _SESSION.append(boto3.session.Session())
            _CLIENTS[key] = _SESSION[0].client(service, region_name=region)  # type: ignore[call-overload]
        return _CLIENTS[key]


def _expect_same(actual: str, predicted: str, logical_id: str) -> None:
    if actual != predicted:
        raise TemplateError(f"{logical_id}: moto named it {actual}, the template {predicted}")


def _names_of(spec: StackSpec) -> StackNames:
    return StackNames(
        stack_name=spec.stack_name,
        region=spec.region,
        account_id=spec.account_id,
        buckets={b.logical_id: b.name for b in spec.buckets},
        tables={t.logical_id: t.name for t in spec.tables},
        event_buses={b.logical_id: b.name for b in spec.event_buses},
        topics={t.logical_id: t.arn for t in spec.topics},
        functions={f.logical_id: f.name for f in spec.functions},
        state_machines={m.logical_id: m.arn for m in spec.state_machines},
    )


def _process_environment(spec: StackSpec, names: StackNames) -> dict[str, str]:
    """What the functions see, for code running in this process (handlers, CLI, API).

    The functions' variables come first; every other resource is added under its logical
    id in UPPER_SNAKE (``LocksTable`` -> ``LOCKS_TABLE``, ``NotificationsTopic`` ->
    ``NOTIFICATIONS_TOPIC_ARN``), plus ``STATE_MACHINE_ARN`` when there is one machine.
    """
    environment: dict[str, str] = {}
    for function in spec.functions:
        for name, value in function.environment.items():
            if environment.setdefault(name, value) != value:
                _LOG.warning(
                    "%s sets %s differently from another function; in-process code sees %r",
                    function.logical_id,
                    name,
                    environment[name],
                )
    extra: dict[str, str] = {}
    for group in (names.tables, names.buckets, names.event_buses):
        extra.update({_upper_snake(logical): name for logical, name in group.items()})
    for group in (names.topics, names.state_machines):
        extra.update({_upper_snake(logical) + "_ARN": arn for logical, arn in group.items()})
    if len(names.state_machines) == 1:
        extra["STATE_MACHINE_ARN"] = names.state_machine_arn
    for name, value in extra.items():
        environment.setdefault(name, value)
    return environment


@dataclass
class _History:
    states: list[str]
    failed_state: str | None
    largest: int


def _history(client: Any, execution_arn: str) -> _History:
    states: list[str] = []
    failed_state: str | None = None
    current: str | None = None
    current_failed = False
    largest = 0
    for page in client.get_paginator("get_execution_history").paginate(executionArn=execution_arn):
        for event in page["events"]:
            kind = str(event["type"])
            entered = event.get("stateEnteredEventDetails")
            exited = event.get("stateExitedEventDetails")
            if entered is not None:
                if current_failed and failed_state is None:
                    failed_state = current
                current, current_failed = str(entered["name"]), False
                states.append(current)
            elif exited is not None:
                largest = max(largest, len(str(exited.get("output") or "").encode()))
            elif kind.endswith("Failed") and kind != "ExecutionFailed":
                current_failed = True
            elif kind.endswith("Succeeded") and kind != "ExecutionSucceeded":
                current_failed = False
    return _History(states, failed_state, largest)


def store_environment(
    state_dir: Path, project_root: Path | None = None, region: str = "us-east-1"
) -> dict[str, str]:
    """What code in this process sees to use the embedded store in ``state_dir`` alone:
    the same resource names as under ``LocalCloud``, without starting moto (commands that
    only read and write the store start in a fraction of the time)."""
    root = find_project_root(project_root)
    spec = describe_stack(
        load_template(root / TEMPLATE_FILE), root, stack_name="local", region=region
    )
    environment = _process_environment(spec, _names_of(spec))
    store = open_local_store(state_dir)
    environment.update(
        {
            "AWS_DEFAULT_REGION": region,
            "AWS_REGION": region,
            "POWERTOOLS_METRICS_DISABLED": "true",
            "LOCAL_STORE_DIR": str(store.root),
            "LOCAL_RUNNER": runner_name(),
        }
    )
    if not os.environ.get("LOCAL_SECRETS_FILE"):
        environment["LOCAL_SECRETS_FILE"] = str(store.root / "secrets.json")
    return environment


class StoreSession:
    """The environment of ``store_environment`` for a ``with`` block; the full
    ``LocalCloud`` (moto, the state machine) starts only if something asks for it."""

    def __init__(self, state_dir: Path) -> None:
        self.state_dir = state_dir
        self._environment = _Environment()
        self._cloud: LocalCloud | None = None

    def __enter__(self) -> StoreSession:
        self._environment.set(store_environment(self.state_dir))
        _reset_process_caches()
        return self

    def cloud(self) -> LocalCloud:
        if self._cloud is None:
            cloud = LocalCloud(self.state_dir)
            cloud.__enter__()
            self._cloud = cloud
        return self._cloud

    def __exit__(self, *exc: object) -> None:
        try:
            if self._cloud is not None:
                self._cloud.__exit__(None, None, None)
        finally:
            self._environment.restore()
            _reset_process_caches()
