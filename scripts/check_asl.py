"""Check Amazon States Language files: JSON, moto's ASL parser, and statelint.

    python scripts/check_asl.py statemachines/*.asl.json

cfn-lint does not read a state machine's DefinitionUri, and each of these checks catches
mistakes the others miss: moto's parser (the interpreter the local runtime executes)
rejects what it could not run; statelint checks paths, reachability and dangling Next.
``${Name}`` placeholders (DefinitionSubstitutions) become plausible ARNs or names first.
Exits 1 if any file fails, printing every problem found.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import re
import sys
from pathlib import Path

REGION = "us-east-1"
ACCOUNT = "123456789012"
_PLACEHOLDER = re.compile(r"\$\{([A-Za-z0-9_.:-]+)\}")


def placeholder_value(name: str) -> str:
    """A plausible value for a DefinitionSubstitutions placeholder, judged by its name."""
    base = re.sub(r"(Arn|Name|Url)$", "", name).lower() or "value"
    if name.endswith("Arn"):
        for hint, service, kind in (
            ("function", "lambda", "function:"),
            ("statemachine", "states", "stateMachine:"),
            ("topic", "sns", ""),
            ("queue", "sqs", ""),
            ("table", "dynamodb", "table/"),
            ("bus", "events", "event-bus/"),
        ):
            if hint in base:
                return f"arn:aws:{service}:{REGION}:{ACCOUNT}:{kind}{base}"
        if "bucket" in base:
            return f"arn:aws:s3:::{base}"
        return f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{base}"
    if name.endswith("Url"):
        return f"https://sqs.{REGION}.amazonaws.com/{ACCOUNT}/{base}"
    return f"local-{base}"


def substitute(text: str) -> str:
    return _PLACEHOLDER.sub(lambda match: placeholder_value(match.group(1)), text)


def check_json(text: str) -> list[str]:
    try:
        document = json.loads(text)
    except json.JSONDecodeError as exc:
        return [f"not valid JSON: {exc}"]
    if not isinstance(document, dict) or "States" not in document:
        return ["not a state machine: no States"]
    return []


def check_with_moto(text: str) -> list[str]:
    """Create the state machine in moto with execution enabled: its parser must accept it."""
    os.environ.setdefault("AWS_DEFAULT_REGION", REGION)
    import boto3
    from botocore.exceptions import ClientError
    from moto import mock_aws

    with mock_aws(
        config={"stepfunctions": {"execute_state_machine": True}, "lambda": {"use_docker": False}}
    ):
        iam = boto3.client("iam", region_name=REGION)
        role = iam.create_role(RoleName="check-asl", AssumeRolePolicyDocument="{}")["Role"]
        client = boto3.client("stepfunctions", region_name=REGION)
        try:
            client.create_state_machine(name="check-asl", definition=text, roleArn=role["Arn"])
        except ClientError as exc:
            return [f"moto rejects it: {exc.response['Error'].get('Message', exc)}"]
        except Exception as exc:  # the parser raises its own errors on some input
            return [f"moto cannot parse it: {type(exc).__name__}: {exc}"]
    return []


def check_with_statelint(text: str) -> list[str]:
    from statelint.cli import main as statelint

    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        status = statelint(["--ignore=URI,FLOAT", text])
    if status == 0:
        return []
    lines = [line.strip() for line in printed.getvalue().splitlines()]
    problems = [line for line in lines if line and not line.endswith(":")]
    return [f"statelint: {line}" for line in problems] or [f"statelint exited {status}"]


def check_file(path: Path) -> list[str]:
    try:
        raw = path.read_text(encoding="utf-8")
    except OSError as exc:
        return [f"cannot read: {exc}"]
    text = substitute(raw)
    problems = check_json(text)
    if problems:
        return problems
    return check_with_moto(text) + check_with_statelint(text)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("files", nargs="+", type=Path, help="ASL files (.asl.json)")
    args = parser.parse_args(argv)
    failed = 0
    for path in args.files:
        problems = check_file(path)
        if problems:
            failed += 1
            print(f"FAIL {path}")
            for problem in problems:
                print(f"  - {problem}")
        else:
            print(f"ok   {path}")
    if failed:
        print(f"{failed} of {len(args.files)} state machine file(s) failed", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
