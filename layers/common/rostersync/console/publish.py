"""Publishing the console to its bucket on AWS: the same files ``rostersync serve`` serves,
under ``console/`` in the console bucket (CloudFront serves them at ``/console/`` beside
the API), plus ``config.json`` telling the pages how to sign in (Cognito's hosted UI).

On AWS this folder is the code of template.yaml's ConsolePublishFunction (handler
``publish.handler``): the pages travel with it, and the module imports nothing of the
console package (the layer leaves the console out), only the layer's storage.

``handle_custom_resource`` is the CloudFormation custom resource of template.yaml's
``ConsoleFiles``: on create and update it publishes, on delete it keeps the files (the
bucket is retained: static pages, no personal data); either way it answers the
pre-signed ``ResponseURL``. Its log lines carry the request type and file count only.
"""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Protocol

from rostersync.observability import logger

#: The console's files: this module's folder (in the package, or the function's code).
ROOT: Final = Path(__file__).resolve().parent
#: The files served, by suffix (nothing else is served or published).
CONTENT_TYPES: Final = {
    ".html": "text/html; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".json": "application/json",
}
PREFIX: Final = "console/"
CONFIG_NAME: Final = "config.json"


class ConsoleStore(Protocol):
    """Where the files go (``rostersync.storage.objects.ObjectStore`` on AWS)."""

    def put_bytes(self, key: str, body: bytes, content_type: str = ...) -> None: ...


@dataclass(frozen=True)
class ConsoleFile:
    path: str
    body: bytes
    content_type: str


def console_files() -> Iterator[ConsoleFile]:
    """Every file the console serves (the folder's files with a known type)."""
    for path in sorted(ROOT.rglob("*")):
        content_type = CONTENT_TYPES.get(path.suffix)
        if path.is_file() and content_type is not None and path.name != CONFIG_NAME:
            yield ConsoleFile(path.relative_to(ROOT).as_posix(), path.read_bytes(), content_type)


def console_config(properties: dict[str, Any]) -> dict[str, Any]:
    """The pages' ``config.json``: Cognito's hosted UI, if the stack has a domain."""
    domain = str(properties.get("CognitoDomain") or "")
    if not domain:
        return {}
    return {
        "cognito": {
            "domain": domain,
            "client_id": str(properties["ClientId"]),
            "redirect_uri": str(properties["RedirectUri"]),
        }
    }


def publish(store: ConsoleStore, config: dict[str, Any]) -> list[str]:
    """Put every console file and its config under ``console/``; the keys written."""
    written = []
    for item in console_files():
        store.put_bytes(PREFIX + item.path, item.body, item.content_type)
        written.append(PREFIX + item.path)
    store.put_bytes(PREFIX + CONFIG_NAME, json.dumps(config).encode(), "application/json")
    written.append(PREFIX + CONFIG_NAME)
    return written


def _respond(url: str, body: dict[str, Any]) -> None:
    payload = json.dumps(body).encode()
    request = urllib.request.Request(url, data=payload, method="PUT", headers={"Content-Type": ""})
    with urllib.request.urlopen(request, timeout=30) as answer:
        answer.read()


def handle_custom_resource(
    event: dict[str, Any],
    store: Callable[[str], ConsoleStore],
    respond: Callable[[str, dict[str, Any]], None] = _respond,
) -> dict[str, Any]:
    """Publish (Create, Update) or keep (Delete) the console, then answer CloudFormation."""
    properties = dict(event.get("ResourceProperties") or {})
    request_type = str(event.get("RequestType"))
    answer: dict[str, Any] = {
        "Status": "SUCCESS",
        "PhysicalResourceId": event.get("PhysicalResourceId") or "rostersync-console",
        "StackId": event.get("StackId"),
        "RequestId": event.get("RequestId"),
        "LogicalResourceId": event.get("LogicalResourceId"),
        "Data": {},
    }
    try:
        if request_type in {"Create", "Update"}:
            written = publish(store(str(properties["Bucket"])), console_config(properties))
            answer["Data"] = {"Files": len(written)}
            logger().info("console published", extra={"files": len(written)})
    except Exception as exc:  # CloudFormation must hear of any failure, or it waits an hour
        logger().error("console not published", extra={"error_type": type(exc).__name__})
        answer.update({"Status": "FAILED", "Reason": f"{type(exc).__name__}: see the logs"})
    respond(str(event["ResponseURL"]), answer)
    return answer


def _s3_store(bucket: str) -> ConsoleStore:
    from rostersync.storage.clients import s3_client
    from rostersync.storage.objects import ObjectStore

    return ObjectStore(s3_client(), bucket)


@logger().inject_lambda_context
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """The ConsoleFiles custom resource's Lambda handler."""
    return handle_custom_resource(event, _s3_store)
