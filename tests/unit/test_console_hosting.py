"""The console on AWS: template.yaml serves the same pages from a private bucket behind
CloudFront, beside the API on one origin; the publisher puts them there."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws

from rostersync.console import ROOT, SECURITY_HEADERS
from rostersync.console.publish import PREFIX, console_files, handle_custom_resource
from rostersync.local.template import load_template
from rostersync.storage.objects import ObjectStore

REPO = Path(__file__).resolve().parents[2]
RESOURCES: dict[str, dict[str, Any]] = load_template(REPO / "template.yaml")["Resources"]


def props(name: str) -> dict[str, Any]:
    return dict(RESOURCES[name]["Properties"])


# ------------------------------------------------------------------------ template


def test_one_distribution_serves_the_pages_from_the_bucket_and_the_rest_from_the_api():
    config = props("ConsoleDistribution")["DistributionConfig"]
    origins = {o["Id"]: o for o in config["Origins"]}
    (pages,) = config["CacheBehaviors"]
    default = config["DefaultCacheBehavior"]

    assert pages["PathPattern"] == "/console*"
    assert origins[pages["TargetOriginId"]]["DomainName"] == {
        "Fn::GetAtt": ["ConsoleBucket", "RegionalDomainName"]
    }
    assert origins[pages["TargetOriginId"]]["OriginAccessControlId"] == {
        "Fn::GetAtt": ["ConsoleOriginAccessControl", "Id"]
    }
    assert set(pages["AllowedMethods"]) == {"GET", "HEAD"}
    api = origins[default["TargetOriginId"]]
    assert "${AdminApi}.execute-api" in api["DomainName"]["Fn::Sub"]
    assert api["OriginPath"] == "/v1"
    assert {"POST", "PUT", "PATCH"} <= set(default["AllowedMethods"])
    # Nothing of the API is cached; the bearer token (every header but Host) reaches it.
    assert default["CachePolicyId"] == "4135ea2d-6df8-44a3-9df3-4b5a84be39ad"
    assert default["OriginRequestPolicyId"] == "b689b0a8-53d0-40ab-baf2-68738e2966ac"
    assert default["ViewerProtocolPolicy"] == "https-only"


def test_the_pages_get_the_same_headers_on_aws_as_from_rostersync_serve():
    policy = props("ConsoleHeadersPolicy")["ResponseHeadersPolicyConfig"]
    template, values = policy["SecurityHeadersConfig"]["ContentSecurityPolicy"][
        "ContentSecurityPolicy"
    ]["Fn::Sub"]

    assert template.replace("${Auth}", "") == SECURITY_HEADERS["Content-Security-Policy"]
    assert "amazoncognito.com" in values["Auth"]["Fn::If"][1]["Fn::Sub"]
    assert policy["SecurityHeadersConfig"]["ReferrerPolicy"]["ReferrerPolicy"] == "no-referrer"
    assert policy["CustomHeadersConfig"]["Items"] == [
        {"Header": "Cache-Control", "Value": "no-cache", "Override": True}
    ]


def test_the_console_bucket_is_private_and_only_the_distribution_reads_it():
    bucket = props("ConsoleBucket")
    statements = props("ConsoleBucketPolicy")["PolicyDocument"]["Statement"]
    allowed = [s for s in statements if s["Effect"] == "Allow"]

    assert all(bucket["PublicAccessBlockConfiguration"].values())
    assert len(bucket["PublicAccessBlockConfiguration"]) == 4
    assert [s["Principal"] for s in allowed] == [{"Service": "cloudfront.amazonaws.com"}]
    (read,) = allowed
    assert read["Action"] == "s3:GetObject"
    assert read["Resource"] == {"Fn::Sub": "${ConsoleBucket.Arn}/console/*"}
    assert "${ConsoleDistribution}" in read["Condition"]["StringEquals"]["AWS:SourceArn"]["Fn::Sub"]


def test_the_publisher_writes_only_the_pages_and_runs_again_when_they_change():
    function = props("ConsolePublishFunction")
    (statement,) = function["Policies"][0]["Statement"]
    files = props("ConsoleFiles")

    assert Path(REPO / function["CodeUri"]).resolve() == ROOT
    assert function["Handler"] == "publish.handler"
    assert statement["Action"] == "s3:PutObject"
    assert statement["Resource"] == {"Fn::Sub": "${ConsoleBucket.Arn}/console/*"}
    assert files["ServiceToken"] == {"Fn::GetAtt": ["ConsolePublishFunction", "Arn"]}
    assert files["FunctionVersion"] == {"Ref": "ConsolePublishFunction.Version"}
    assert "AutoPublishAlias" in function


def test_the_api_takes_zip_uploads_and_the_hosted_ui_returns_to_the_console():
    api = props("AdminApi")
    client = props("UserPoolClient")

    assert "application~1zip" in api["BinaryMediaTypes"]
    callback = client["CallbackURLs"]["Fn::If"][1]
    assert callback == [{"Fn::Sub": "https://${ConsoleDistribution.DomainName}/console/"}]
    assert client["AllowedOAuthFlows"]["Fn::If"][1] == ["code"]
    assert client["GenerateSecret"] is False


# ----------------------------------------------------------------------- publisher


class Recorder(BaseHTTPRequestHandler):
    answers: list[dict[str, Any]] = []

    def do_PUT(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        Recorder.answers.append(json.loads(self.rfile.read(length)))
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        return


@pytest.fixture
def response_url() -> Iterator[str]:
    """CloudFormation's pre-signed response URL, played by a server on 127.0.0.1."""
    Recorder.answers = []
    server = HTTPServer(("127.0.0.1", 0), Recorder)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/cloudformation-response"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def s3() -> Iterator[Any]:
    with mock_aws():
        client = boto3.client("s3", region_name="us-east-1")
        client.create_bucket(Bucket="console-pages")
        yield client


def event(kind: str, url: str, **properties: str) -> dict[str, Any]:
    return {
        "RequestType": kind,
        "ResponseURL": url,
        "StackId": "stack",
        "RequestId": "request-1",
        "LogicalResourceId": "ConsoleFiles",
        "ResourceProperties": {"Bucket": "console-pages", **properties},
    }


def test_publishing_puts_every_page_with_its_type_and_the_sign_in_config(s3, response_url):
    store = lambda bucket: ObjectStore(s3, bucket)  # noqa: E731

    answer = handle_custom_resource(
        event(
            "Create",
            response_url,
            CognitoDomain="admins.auth.eu-west-1.amazoncognito.com",
            ClientId="client-1",
            RedirectUri="https://d1.cloudfront.net/console/",
        ),
        store,
    )

    assert answer["Status"] == "SUCCESS"
    assert Recorder.answers == [answer]
    expected = {f"{PREFIX}{f.path}": f for f in console_files()}
    assert {f"{PREFIX}index.html", f"{PREFIX}js/main.js", f"{PREFIX}console.css"} <= set(expected)
    assert not any(key.endswith(".py") for key in expected)
    for key, item in expected.items():
        stored = s3.get_object(Bucket="console-pages", Key=key)
        assert stored["Body"].read() == item.body, key
        assert stored["ContentType"] == item.content_type, key
    config = json.loads(
        s3.get_object(Bucket="console-pages", Key=f"{PREFIX}config.json")["Body"].read()
    )
    assert config == {
        "cognito": {
            "domain": "admins.auth.eu-west-1.amazoncognito.com",
            "client_id": "client-1",
            "redirect_uri": "https://d1.cloudfront.net/console/",
        }
    }


def test_a_failure_is_answered_and_a_delete_keeps_the_pages(s3, response_url):
    store = lambda bucket: ObjectStore(s3, bucket)  # noqa: E731
    missing = event("Update", response_url)
    missing["ResourceProperties"]["Bucket"] = "no-such-bucket"

    failed = handle_custom_resource(missing, store)
    deleted = handle_custom_resource(event("Delete", response_url), store)

    assert failed["Status"] == "FAILED" and "see the logs" in failed["Reason"]
    assert deleted["Status"] == "SUCCESS"
    assert [a["Status"] for a in Recorder.answers] == ["FAILED", "SUCCESS"]
