"""Every place the local runtime reaches into moto's internals, in one module.

moto emulates S3, DynamoDB, EventBridge and Step Functions (with a real ASL interpreter),
but it runs Lambda code only in Docker, keeps no record of the events put on a bus, makes
Retry intervals and Wait states really sleep, and sends the state machine's own DynamoDB
tasks to its own tables (the embedded store keeps them elsewhere). The runtime therefore
patches these internals. They are not
moto's public API: the project pins moto exactly (``MOTO_VERSION``) and
``check_moto_seams`` fails loudly, naming the version, if any of them has moved.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import json
import logging
import subprocess
import sys
import threading
import time
import traceback
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType
from typing import Any

from rostersync.local.template import FunctionSpec

#: The moto release these seams were written and tested against.
MOTO_VERSION = "5.2.5"

_LOG = logging.getLogger("rostersync.local")


class MotoSeamMissing(RuntimeError):
    """The installed moto lacks an internal the local runtime patches or reads."""


@dataclass(frozen=True)
class Seam:
    module: str
    attribute: str  # dotted inside the module: "Class.method"
    why: str


SEAMS: tuple[Seam, ...] = (
    Seam(
        "moto.awslambda.models",
        "LambdaFunction._invoke_lambda",
        "replaced: runs the function's handler in this process instead of Docker",
    ),
    Seam(
        "moto.awslambda.models",
        "LambdaBackend.invoke",
        "used: the Docker backend's invoke, which calls _invoke_lambda",
    ),
    Seam(
        "moto.awslambda_simple.models",
        "LambdaSimpleBackend.invoke",
        "replaced: without Docker it echoes the payload instead of running code",
    ),
    Seam(
        "moto.events.models",
        "EventsBackend.put_events",
        "wrapped: moto does not keep the events put on a bus",
    ),
    Seam(
        "moto.stepfunctions.parser.asl.component.common.retry.retrier_decl",
        "time",
        "replaced: Retry intervals call time.sleep",
    ),
    Seam(
        "moto.stepfunctions.parser.asl.component.state.wait.wait_function.wait_function",
        "WaitFunction._wait_interval",
        "replaced: Wait states block for their full duration",
    ),
    Seam(
        "moto.stepfunctions.parser.models",
        "StepFunctionsParserBackend._validate_definition",
        "replaced: creating a state machine parses its definition once more only to"
        " validate it (0.7 s of every command's start); each execution parses it anyway",
    ),
    Seam(
        "moto.stepfunctions.parser.asl.component.state.exec.state_task.service"
        ".state_task_service_dynamodb",
        "StateTaskServiceDynamoDB._eval_service_task",
        "wrapped: the state machine's DynamoDB tasks reach the embedded store's tables",
    ),
)


def installed_moto_version() -> str:
    try:
        module = importlib.import_module("moto")
    except ImportError:
        return "(not installed)"
    return str(getattr(module, "__version__", "(unknown)"))


def _lookup(seam: Seam) -> Any:
    target: Any = importlib.import_module(seam.module)
    for part in seam.attribute.split("."):
        target = getattr(target, part)
    return target


def _defer_package(name: str) -> None:
    """Register the package ``name`` without running its ``__init__`` until something
    reads an attribute it does not have yet; its submodules import as usual."""
    if name in sys.modules:
        return
    spec = importlib.util.find_spec(name)
    if spec is None or spec.loader is None or spec.submodule_search_locations is None:
        return
    module = importlib.util.module_from_spec(spec)
    loader = spec.loader
    loaded = threading.Lock()
    state = {"run": False}

    def load(attribute: str) -> Any:
        with loaded:
            if not state["run"]:
                state["run"] = True
                loader.exec_module(module)
        if attribute in module.__dict__:
            return module.__dict__[attribute]
        raise AttributeError(f"module {name!r} has no attribute {attribute!r}")

    module.__getattr__ = load  # type: ignore[method-assign]
    sys.modules[name] = module


def check_moto_seams() -> None:
    """Raise ``MotoSeamMissing`` unless every internal in ``SEAMS`` exists."""
    # The Step Functions interpreter imports one enum from moto.batch, whose package
    # brings in the Batch and EC2 emulations (most of the interpreter's import time);
    # they load if anything uses them.
    _defer_package("moto.batch")
    missing: list[str] = []
    for seam in SEAMS:
        try:
            _lookup(seam)
        except (ImportError, AttributeError):
            missing.append(f"{seam.module}.{seam.attribute} ({seam.why})")
    if missing:
        raise MotoSeamMissing(
            f"moto {installed_moto_version()} lacks what the local runtime needs: "
            + "; ".join(missing)
            + f". The runtime is written against moto=={MOTO_VERSION}; install that version."
        )


# ------------------------------------------------------------------ in-process Lambda


@dataclass
class LocalLambdaContext:
    """The attributes of Lambda's context object that handlers and Powertools read."""

    function_name: str
    invoked_function_arn: str
    memory_limit_in_mb: int
    aws_request_id: str
    log_group_name: str
    log_stream_name: str
    deadline: float
    function_version: str = "$LATEST"
    identity: Any = None
    client_context: Any = None

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self.deadline - time.monotonic()) * 1000))


Handler = Callable[[Any, Any], Any]


class _HandlerCache:
    """One module per handler file, imported once, shared by every thread (Map states)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._modules: dict[Path, ModuleType] = {}

    def handler(self, function: FunctionSpec) -> Handler:
        module_path, _, attribute = function.handler.rpartition(".")
        source = function.code_dir / (module_path.replace(".", "/") + ".py")
        with self._lock:
            module = self._modules.get(source)
            if module is None:
                module = self._import(source)
                self._modules[source] = module
        handler = getattr(module, attribute, None)
        if not callable(handler):
            raise AttributeError(f"{source} has no callable {attribute!r}")
        return handler  # type: ignore[no-any-return]

    @staticmethod
    def _import(source: Path) -> ModuleType:
        # Each function's app.py gets a unique module name: every function has one.
        digest = hashlib.sha1(str(source).encode(), usedforsecurity=False).hexdigest()[:12]
        name = f"_rostersync_function_{digest}_{source.stem}"
        spec = importlib.util.spec_from_file_location(name, source)
        if spec is None or spec.loader is None:
            raise ImportError(f"cannot import {source}")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        try:
            spec.loader.exec_module(module)
        except BaseException:
            sys.modules.pop(name, None)
            raise
        return module


_HANDLERS = _HandlerCache()


def _error_payload(error_type: str, message: str, request_id: str, trace: list[str]) -> str:
    # The shape Lambda's Python runtime returns for an unhandled exception; Step Functions
    # takes the error name from errorType, so Retry/Catch match our own exception names.
    return json.dumps(
        {
            "errorMessage": message,
            "errorType": error_type,
            "requestId": request_id,
            "stackTrace": trace,
        }
    )


def _invoke_request(function: FunctionSpec, event: Any) -> str:
    """What ``rostersync.local.invoke`` reads on its stdin."""
    return json.dumps(
        {
            "function": {
                "logical_id": function.logical_id,
                "name": function.name,
                "arn": function.arn,
                "code_dir": str(function.code_dir),
                "handler": function.handler,
                "runtime": function.runtime,
                "memory_size": function.memory_size,
                "timeout": function.timeout,
            },
            "event": event,
        }
    )


class InProcessFunctions:
    """Runs the stack's Lambda functions' handlers in this process, or with
    ``processes`` each invocation in a process of its own (``rostersync.local.invoke``:
    as on Lambda, one invocation's memory is its process's)."""

    def __init__(self, functions: Iterable[FunctionSpec], *, processes: bool = False) -> None:
        self._by_name = {function.name: function for function in functions}
        self._processes = processes

    def invoke(self, function_name: str, event: Any) -> tuple[str, bool]:
        """Call the handler; return (response body, whether it is a function error)."""
        function = self._by_name.get(function_name)
        request_id = str(uuid.uuid4())
        if function is None:
            message = f"no local code for function {function_name!r} (not in template.yaml)"
            return _error_payload("Runtime.HandlerNotFound", message, request_id, []), True
        if self._processes:
            return self._in_process_of_its_own(function, event, request_id)
        try:
            handler = _HANDLERS.handler(function)
        except Exception as exc:
            message = f"Unable to import module '{function.handler}': {exc}"
            _LOG.warning("cannot load %s: %s", function.logical_id, exc)
            trace = traceback.format_exception(exc)
            return _error_payload("Runtime.ImportModuleError", message, request_id, trace), True
        if isinstance(event, bytes | str):
            event = json.loads(event or "{}")
        context = LocalLambdaContext(
            function_name=function.name,
            invoked_function_arn=function.arn,
            memory_limit_in_mb=function.memory_size,
            aws_request_id=request_id,
            log_group_name=f"/aws/lambda/{function.name}",
            log_stream_name=f"local/{request_id}",
            deadline=time.monotonic() + function.timeout,
        )
        try:
            result = handler(event, context)
        except Exception as exc:
            # INFO, not WARNING: retried transient errors are expected; the execution's
            # error and the run record carry what a user needs.
            _LOG.info("%s raised %s", function.logical_id, type(exc).__name__, exc_info=True)
            # Lambda's trace starts in the handler: drop this function's own frame.
            trace = traceback.format_list(traceback.extract_tb(exc.__traceback__)[1:])
            return _error_payload(type(exc).__name__, str(exc), request_id, trace), True
        try:
            return json.dumps(result), False
        except (TypeError, ValueError) as exc:
            message = f"Unable to marshal response: {exc}"
            return _error_payload("Runtime.MarshalError", message, request_id, []), True

    def _in_process_of_its_own(
        self, function: FunctionSpec, event: Any, request_id: str
    ) -> tuple[str, bool]:
        if isinstance(event, bytes | str):
            event = json.loads(event or "{}")
        try:
            done = subprocess.run(
                [sys.executable, "-m", "rostersync.local.invoke"],
                input=_invoke_request(function, event),
                capture_output=True,
                text=True,
                timeout=function.timeout,
                check=False,
            )
        except subprocess.TimeoutExpired:
            message = f"Task timed out after {function.timeout} seconds"
            return _error_payload("Sandbox.Timedout", message, request_id, []), True
        lines = done.stdout.strip().splitlines()
        try:
            answer = json.loads(lines[-1])
        except (IndexError, ValueError):
            # The process died before answering (killed, out of memory).
            message = f"the function's process ended with status {done.returncode}"
            _LOG.warning("%s: %s", function.logical_id, message)
            sys.stderr.write(done.stderr[-4000:])
            return _error_payload("Runtime.ExitError", message, request_id, []), True
        _LOG.info("%s used %d MB", function.logical_id, answer["peak_mb"])
        return str(answer["body"]), bool(answer["errored"])


# ------------------------------------------------------------------------- patching


CapturedEvents = Callable[[list[tuple[str, dict[str, Any]]]], None]
#: Runs a state machine's DynamoDB task (boto3 action name, parameters); None: moto runs it.
TableTask = Callable[[str, dict[str, Any]], dict[str, Any] | None]


class _InstantClock:
    """``time`` for the Step Functions retrier, with ``sleep`` a no-op."""

    @staticmethod
    def sleep(_seconds: float) -> None:
        return None

    def __getattr__(self, name: str) -> Any:
        return getattr(time, name)


def _event_time(value: Any) -> str:
    if isinstance(value, int | float):
        moment = datetime.fromtimestamp(float(value), UTC)
    elif isinstance(value, datetime):
        moment = value.astimezone(UTC)
    elif isinstance(value, str) and value:
        return value
    else:
        moment = datetime.now(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def delivered_event(
    request: dict[str, Any], event_id: str, account_id: str, region: str
) -> dict[str, Any]:
    """A PutEvents entry in the shape a rule's target receives it."""
    return {
        "version": "0",
        "id": event_id,
        "detail-type": request.get("DetailType"),
        "source": request.get("Source"),
        "account": account_id,
        "time": _event_time(request.get("Time")),
        "region": region,
        "resources": list(request.get("Resources") or []),
        "detail": json.loads(request.get("Detail") or "{}"),
    }


def bus_name_of(value: str | None) -> str:
    """A bus name from the name or ARN PutEvents accepts (default bus when absent)."""
    if not value:
        return "default"
    return value.rsplit("/", 1)[-1] if value.startswith("arn:") else value


def _accept_definition(definition: str) -> None:
    return None


_PATCH_LOCK = threading.Lock()
_installed: MotoPatches | None = None


class MotoPatches:
    """Installs the runtime's replacements into moto; ``remove`` puts moto back."""

    def __init__(
        self,
        *,
        functions: InProcessFunctions,
        on_events: CapturedEvents,
        instant_waits: bool,
        table_tasks: TableTask | None = None,
    ) -> None:
        self._functions = functions
        self._on_events = on_events
        self._instant_waits = instant_waits
        self._table_tasks = table_tasks
        self._originals: list[tuple[Any, str, Any]] = []

    def install(self) -> None:
        global _installed
        check_moto_seams()
        from moto.awslambda import models as lambda_models
        from moto.awslambda_simple import models as lambda_simple_models
        from moto.events import models as events_models
        from moto.stepfunctions.parser import models as parser_models
        from moto.stepfunctions.parser.asl.component.common.retry import retrier_decl
        from moto.stepfunctions.parser.asl.component.state.exec.state_task.service import (
            state_task_service_dynamodb,
        )
        from moto.stepfunctions.parser.asl.component.state.wait.wait_function import (
            wait_function,
        )

        with _PATCH_LOCK:
            if _installed is not None:
                raise RuntimeError("another local runtime is active in this process")
            functions = self._functions

            def invoke_lambda(fn: Any, event: Any = None) -> tuple[str, bool, str]:
                body, errored = functions.invoke(fn.function_name, event)
                return body, errored, ""

            original_put_events = events_models.EventsBackend.put_events
            on_events = self._on_events

            def put_events(backend: Any, events: list[dict[str, Any]]) -> list[dict[str, Any]]:
                entries: list[dict[str, Any]] = original_put_events(backend, events)
                accepted = [
                    (
                        bus_name_of(request.get("EventBusName")),
                        delivered_event(
                            request, result["EventId"], backend.account_id, backend.region_name
                        ),
                    )
                    for request, result in zip(events, entries, strict=False)
                    if "EventId" in result
                ]
                if accepted:
                    on_events(accepted)
                return entries

            self._set(lambda_models.LambdaFunction, "_invoke_lambda", invoke_lambda)
            # Without Docker moto answers every invoke with its payload; the Docker
            # backend's invoke is what calls _invoke_lambda.
            self._set(
                lambda_simple_models.LambdaSimpleBackend,
                "invoke",
                lambda_models.LambdaBackend.invoke,
            )
            self._set(events_models.EventsBackend, "put_events", put_events)
            # The definitions are the template's, checked by the ASL checks; an execution
            # parses its definition before running it, so a broken one still fails.
            self._set(
                parser_models.StepFunctionsParserBackend,
                "_validate_definition",
                staticmethod(_accept_definition),
            )
            if self._table_tasks is not None:
                self._patch_table_tasks(state_task_service_dynamodb.StateTaskServiceDynamoDB)
            if self._instant_waits:
                self._set(retrier_decl, "time", _InstantClock())

                def no_wait(_self: Any, env: Any, wait_seconds: int) -> None:
                    return None

                self._set(wait_function.WaitFunction, "_wait_interval", no_wait)
            # The interpreter logs every failure it handles at ERROR; with no handler
            # configured Python would print them to stderr although Catch handles them.
            logging.getLogger("moto.stepfunctions.parser").addHandler(logging.NullHandler())
            _installed = self

    def _patch_table_tasks(self, task_class: Any) -> None:
        table_tasks = self._table_tasks
        assert table_tasks is not None
        original = task_class._eval_service_task

        def eval_service_task(
            task: Any,
            env: Any,
            resource_runtime_part: Any,
            normalised_parameters: dict[str, Any],
            state_credentials: Any,
        ) -> None:
            response = table_tasks(task._get_boto_service_action(), normalised_parameters)
            if response is None:
                original(
                    task,
                    env=env,
                    resource_runtime_part=resource_runtime_part,
                    normalised_parameters=normalised_parameters,
                    state_credentials=state_credentials,
                )
            else:
                env.stack.append(response)

        self._set(task_class, "_eval_service_task", eval_service_task)

    def _set(self, owner: Any, name: str, value: Any) -> None:
        self._originals.append((owner, name, owner.__dict__[name]))
        setattr(owner, name, value)

    def remove(self) -> None:
        global _installed
        with _PATCH_LOCK:
            while self._originals:
                owner, name, original = self._originals.pop()
                setattr(owner, name, original)
            if _installed is self:
                _installed = None
