"""The package's shape: no import cycles, boto3 only in storage, httpx only in the
source clients, the environment read in one place, and a layer holding only what
Lambda runs."""

from __future__ import annotations

import ast
import importlib.util
import itertools
import re
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
LAYER = REPO / "layers" / "common"
PACKAGE = LAYER / "rostersync"


def _build_layer_module():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location("build_layer", LAYER / "build_layer.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["build_layer"] = module
    spec.loader.exec_module(module)
    return module


BUILD = _build_layer_module()


def module_name(path: Path) -> str:
    parts = list(path.relative_to(LAYER).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


MODULES: dict[str, Path] = {module_name(p): p for p in PACKAGE.rglob("*.py")}


def imports_of(path: Path) -> Iterator[str]:
    """Every module an import statement names, at the top or inside a function."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join([*base, node.module] if node.module else base)
            else:
                module = node.module or ""
            yield module
            yield from (f"{module}.{alias.name}" for alias in node.names)


def internal_graph() -> dict[str, set[str]]:
    return {
        name: {m for m in imports_of(path) if m in MODULES and m != name}
        for name, path in MODULES.items()
    }


def importers_of(library: str) -> set[str]:
    return {
        name
        for name, path in MODULES.items()
        if any(m == library or m.startswith(library + ".") for m in imports_of(path))
    }


def is_development(name: str) -> bool:
    relative = MODULES[name].relative_to(PACKAGE).as_posix()
    return bool(BUILD.is_development_only(relative))


def test_the_package_has_no_import_cycles() -> None:
    graph = internal_graph()
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in graph[node]:
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for node in graph:
        if node not in index:
            visit(node)
    assert cycles == []


def test_only_storage_imports_boto3() -> None:
    # The local runtime is moto's harness (development only, outside the layer).
    outside = {
        name
        for name in importers_of("boto3") | importers_of("botocore")
        if not name.startswith("rostersync.storage") and not name.startswith("rostersync.local")
    }
    assert outside == set()


def test_only_source_clients_import_httpx() -> None:
    assert {n for n in importers_of("httpx") if not n.startswith("rostersync.sources.")} == set()


def test_only_settings_and_the_command_line_read_the_environment() -> None:
    readers = {name for name, path in MODULES.items() if "os.environ" in path.read_text()}
    runtime_readers = {name for name in readers if not is_development(name)}
    assert runtime_readers == {"rostersync.config"}


def test_no_runtime_module_imports_development_code() -> None:
    graph = internal_graph()
    leaks = {
        (name, target)
        for name, targets in graph.items()
        if not is_development(name)
        for target in targets
        if is_development(target)
    }
    assert leaks == set()
    assert {n for n in importers_of("moto") if not is_development(n)} == set()


def test_the_api_and_cli_call_use_cases_not_steps() -> None:
    graph = internal_graph()
    callers = [n for n in graph if n.startswith("rostersync.api.") or n == "rostersync.cli"]
    steps = {f"rostersync.pipeline.{s}" for s in ("fetch", "normalize", "match", "stage")}
    steps |= {"rostersync.pipeline.commit", "rostersync.pipeline.steps"}
    assert {(c, t) for c in callers for t in graph[c] if t in steps} == set()


def test_the_layer_holds_the_runtime_package_only(tmp_path: Path) -> None:
    assert BUILD.main([str(tmp_path), "--no-deps"]) == 0
    built = tmp_path / "python" / "rostersync"
    shipped = {p.relative_to(built).as_posix() for p in built.rglob("*.py")}

    for absent in ("cli.py", "demo.py", "generator.py", "existing_app.py", "api/local_http.py"):
        assert absent not in shipped
    assert not any(name.startswith("local/") for name in shipped)
    assert {"pipeline/steps.py", "application/review.py", "sources/registry.py"} <= shipped
    lines = (LAYER / "requirements.txt").read_text().lower().splitlines()
    packages = {line.split("=")[0].split("[")[0].strip() for line in lines if line[:1].isalpha()}
    assert not packages & {"moto", "boto3", "botocore", "pytest"}


def test_the_layer_is_built_for_the_functions_runtime() -> None:
    """Compiled dependencies (pydantic-core, numpy, orjson, rapidfuzz) are installed for
    the runtime and architecture template.yaml names, not for the Python of the build."""
    template = (REPO / "template.yaml").read_text()
    runtimes = set(re.findall(r"^\s+Runtime: (python3\.\d+)$", template, re.MULTILINE))
    compatible = set(re.findall(r"CompatibleRuntimes: \[(python3\.\d+)\]", template))
    architectures = set(re.findall(r"Architectures: \[(\w+)\]", template))
    architectures |= set(re.findall(r"BuildArchitecture: (\w+)", template))
    assert runtimes == compatible == {f"python{BUILD.LAMBDA_PYTHON}"}
    assert len(architectures) == 1
    (architecture,) = architectures
    assert BUILD.LAMBDA_PLATFORMS and all(
        p.endswith(f"_{architecture}") for p in BUILD.LAMBDA_PLATFORMS
    )
    command = BUILD.pip_install_command(Path("/layer/python"))
    options = list(itertools.pairwise(command))
    assert ("--python-version", BUILD.LAMBDA_PYTHON) in options
    assert ("--implementation", "cp") in options
    assert {("--platform", p) for p in BUILD.LAMBDA_PLATFORMS} <= set(options)
    assert ("--target", "/layer/python") in options
    assert "--only-binary=:all:" in command


@pytest.mark.parametrize("function", sorted(p.parent.name for p in REPO.glob("functions/*/app.py")))
def test_every_handler_imports_only_the_layer(function: str) -> None:
    path = REPO / "functions" / function / "app.py"
    for module in imports_of_handler(path):
        top = module.split(".")[0]
        assert top in {"rostersync", "aws_lambda_powertools", "typing", "__future__"}, (
            function,
            module,
        )
        if module in MODULES:
            assert not is_development(module), (function, module)


def imports_of_handler(path: Path) -> Iterator[str]:
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            yield node.module


def test_the_layer_leaves_out_what_the_lambda_runtime_provides(tmp_path: Path) -> None:
    installed = [
        "botocore",
        "botocore-1.44.8.dist-info",
        "python_dateutil-2.9.0.post0.dist-info",
        "dateutil",
        "six.py",
        "six-1.17.0.dist-info",
        "pydantic",
        "pydantic-2.14.3.dist-info",
        "duckdb",
    ]
    for name in installed:
        path = tmp_path / name
        path.write_text("") if name.endswith(".py") else path.mkdir()

    BUILD.drop_runtime_provided(tmp_path)

    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "duckdb",
        "pydantic",
        "pydantic-2.14.3.dist-info",
    ]
