"""Builds the common Lambda layer: the ``rostersync`` runtime package and its runtime
dependencies, and nothing Lambda does not run.

``sam build`` calls it through this folder's Makefile (``BuildMethod: makefile``) with
the artifacts folder; ``python build_layer.py OUT [--no-deps]`` does the same by hand.
The dependencies are installed for the functions' runtime (``LAMBDA_PYTHON`` on
``LAMBDA_PLATFORMS``, binary wheels only), not for the Python that runs the build:
compiled modules (pydantic-core, numpy, orjson, rapidfuzz) built for another Python
would not import on Lambda.
Left out: the command line, the local runtime (moto), ``rostersync serve``'s HTTP and
SFTP servers, the demo and the district generator. The import-graph test checks that no
module of the layer imports any of them.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
PACKAGE = "rostersync"

#: The functions' runtime (template.yaml: ``Runtime: python3.12``, ``x86_64``); the
#: manylinux tags Lambda's Amazon Linux runs.
LAMBDA_PYTHON = "3.12"
LAMBDA_PLATFORMS = ("manylinux2014_x86_64", "manylinux_2_28_x86_64")

#: Development and command-line modules, relative to the package (folders end in /).
DEVELOPMENT_ONLY = (
    "cli.py",
    "entry.py",
    "demo.py",
    "generator.py",
    "existing_app.py",
    "local/",
    "api/local_http.py",
    "console/",
)


#: Distributions the Lambda runtime provides (boto3 and what it needs), pulled in by a
#: dependency (aws-xray-sdk asks for botocore): left out, so the runtime's own boto3 and
#: botocore load together, and the layer stays within Lambda's 250 MB.
RUNTIME_PROVIDED = ("boto3", "botocore", "s3transfer", "jmespath", "dateutil", "urllib3", "six")


def drop_runtime_provided(target: Path) -> list[str]:
    """Remove what the Lambda runtime provides from an installed ``target``."""
    removed = []
    for path in sorted(target.iterdir()):
        name = path.name.removesuffix(".py")
        project = name.split("-", 1)[0].replace("python_", "")
        if name in RUNTIME_PROVIDED or (
            path.suffix == ".dist-info" and project in RUNTIME_PROVIDED
        ):
            shutil.rmtree(path) if path.is_dir() else path.unlink()
            removed.append(path.name)
    return removed


def is_development_only(relative: str) -> bool:
    """Whether a path inside the package (``local/runtime.py``) stays out of the layer."""
    return any(
        relative == entry or (entry.endswith("/") and relative.startswith(entry))
        for entry in DEVELOPMENT_ONLY
    )


def copy_runtime_package(destination: Path) -> list[str]:
    """Copy the runtime modules to ``destination/rostersync``; return what was copied."""
    source = HERE / PACKAGE
    copied = []
    for path in sorted(source.rglob("*")):
        relative = path.relative_to(source).as_posix()
        if path.is_dir() or "__pycache__" in relative or is_development_only(relative):
            continue
        if path.suffix not in {".py", ".typed"}:
            continue
        target = destination / PACKAGE / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, target)
        copied.append(relative)
    return copied


def pip_install_command(target: Path) -> list[str]:
    """pip installing requirements.txt into ``target`` for the Lambda runtime."""
    platforms = [arg for platform in LAMBDA_PLATFORMS for arg in ("--platform", platform)]
    return [
        sys.executable,
        "-m",
        "pip",
        "install",
        "--quiet",
        "--requirement",
        str(HERE / "requirements.txt"),
        "--target",
        str(target),
        *platforms,
        "--implementation",
        "cp",
        "--python-version",
        LAMBDA_PYTHON,
        "--only-binary=:all:",
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("artifacts", type=Path, help="the layer's artifacts folder")
    parser.add_argument("--no-deps", action="store_true", help="copy the package only")
    args = parser.parse_args(argv)
    python = args.artifacts / "python"
    python.mkdir(parents=True, exist_ok=True)
    copy_runtime_package(python)
    if not args.no_deps:
        subprocess.run(pip_install_command(python), check=True)
        drop_runtime_provided(python)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
