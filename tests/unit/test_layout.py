"""The shape of the package, checked: imports run one way (no module reaches itself through others), one module
imports the Docker SDK, only the session starts or removes containers, and the commands that reach no engine do not
import the SDK when they run."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

from .projects import app_project

PACKAGE = Path(__file__).resolve().parents[2] / "driver" / "xpcargo"


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def _imports(name: str) -> set[str]:
    """Every xpcargo module that ``name`` imports, at the top, lazily inside a function, or for type checking."""
    tree = ast.parse(MODULES[name].read_text(encoding="utf-8"))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return {module for module in found if module in MODULES and module not in (name, "xpcargo")}


def test_no_module_imports_itself_through_others() -> None:
    graph = {name: _imports(name) for name in MODULES}
    for start, imported in graph.items():
        seen: set[str] = set()
        pending = list(imported)
        while pending:
            current = pending.pop()
            assert current != start, f"{start} imports itself through {sorted(seen)}"
            if current not in seen:
                seen.add(current)
                pending += graph[current]


# The layers, lowest first, written once: a module may import its own layer and the layers below it, never one
# above. A name is a top-level module or package of xpcargo.
LAYERS: tuple[tuple[str, ...], ...] = (
    # Shared leaves: no xpcargo concept above them.
    (
        "errors",
        "files",
        "ui",
        "hashing",
        "platforms",
        "resources",
        "interrupts",
        "elf",
        "pe",
        "artifacts",
        "installation",
    ),
    # What a target is, and how its programs run under its emulator.
    ("config", "emulation"),
    ("cargo",),
    ("container",),
    ("image",),
    ("report",),
    ("context",),
    # A no-op build replayed: the engine's exec, as the pipeline recorded it.
    ("replay", "replay_listing"),
    ("pipeline",),
    ("release",),
    ("commands",),
    ("cli", "launch", "__main__"),
)


def _layer(module: str) -> int:
    unit = module.split(".")[1] if "." in module else module
    for index, names in enumerate(LAYERS):
        if unit in names:
            return index
    raise AssertionError(f"{module} is in no layer: add {unit!r} to LAYERS in {__name__}")


def backward_imports(graph: dict[str, set[str]]) -> set[tuple[str, str]]:
    """Every import of a module in a higher layer than the importer's."""
    return {
        (importer, imported)
        for importer, modules in graph.items()
        for imported in modules
        if _layer(imported) > _layer(importer)
    }


def test_the_layers_run_one_way() -> None:
    found = backward_imports({name: _imports(name) for name in MODULES if name != "xpcargo"})
    assert found == set(), "imports that run back up the layers"


def test_a_backward_import_is_caught() -> None:
    """The test above can fail: an import of the CLI planted in the lowest layer is found."""
    graph = {name: _imports(name) for name in MODULES if name != "xpcargo"}
    graph["xpcargo.errors"] = {*graph["xpcargo.errors"], "xpcargo.cli"}
    assert ("xpcargo.errors", "xpcargo.cli") in backward_imports(graph)


def test_only_the_commands_take_the_whole_context() -> None:
    """Below ``commands/`` a module takes what it needs (the Host, the project), never the whole ``Context``: it
    neither imports the name nor reaches it through the module (`context.Context`)."""
    takers = set()
    for name, path in MODULES.items():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module == "xpcargo.context":
                named = any(alias.name == "Context" for alias in node.names)
            else:
                named = isinstance(node, ast.Attribute) and node.attr == "Context"
            if named:
                takers.add(name)
    assert {name for name in takers if _layer(name) < _layer("xpcargo.commands")} == set()


# Unit test files that test the package's shape or the repository's files, not one module (release_coverage: the
# script scripts/release_coverage.py and its data).
_TESTS_OF_NO_MODULE = {"layout", "examples", "release_coverage"}


def test_each_unit_test_file_is_named_for_the_module_it_tests() -> None:
    """`tests/unit/test_<name>.py`: ``name`` is a module's own name, or its path's last parts joined by `_`
    (`test_report_store.py` for `report/store.py`), so that a module's tests are found by its name."""
    names = {"_".join(module.split(".")[-depth:]) for module in MODULES for depth in (1, 2, 3) if module != "xpcargo"}
    files = {path.stem.removeprefix("test_") for path in Path(__file__).parent.glob("test_*.py")}
    assert files - names - _TESTS_OF_NO_MODULE == set()


def test_only_the_docker_runtime_imports_the_sdk() -> None:
    """The SDK (and requests under it) is the ``container.docker`` package's alone."""
    users = {
        name
        for name, path in MODULES.items()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
        if (isinstance(node, ast.Import) and any(a.name.split(".")[0] in ("docker", "requests") for a in node.names))
        or (isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] in ("docker", "requests"))
    }
    assert users
    assert {name for name in users if not name.startswith("xpcargo.container.docker.")} == set()


def test_only_the_session_starts_and_removes_containers() -> None:
    callers = set()
    for name, path in MODULES.items():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
                target = node.func.value
                on_runtime = (isinstance(target, ast.Name) and target.id == "runtime") or (
                    isinstance(target, ast.Attribute) and target.attr in ("runtime", "_runtime")
                )
                if on_runtime and node.func.attr in ("start", "remove"):
                    callers.add(name)
    assert callers == {"xpcargo.container.session"}


def test_the_cli_imports_no_engine_or_yaml_at_start() -> None:
    """`xpcargo --help` must not pay for the Docker SDK or PyYAML: the CLI imports the layers lazily."""
    tree = ast.parse(MODULES["xpcargo.cli"].read_text(encoding="utf-8"))
    top_level = {
        node.module if isinstance(node, ast.ImportFrom) else node.names[0].name
        for node in tree.body
        if isinstance(node, ast.Import | ast.ImportFrom)
    }
    assert top_level <= {
        "__future__",
        "pathlib",
        "os",
        "sys",
        "collections.abc",
        "typing",
        "click",
        "typer",
        "typer.core",
        "xpcargo",
        "xpcargo.errors",
    }


# Prints, when the process ends (after the CLI's sys.exit), which of the engine's libraries and PyYAML it imported.
_IMPORTED_AT_EXIT = """
import atexit, sys
heavy = ("docker", "requests", "urllib3", "yaml", "typer", "click")
atexit.register(lambda: print(sorted({m.split(".")[0] for m in sys.modules} & set(heavy)), file=sys.stderr))
from xpcargo.MODULE import main
main(sys.argv[1:])
"""


def _imported(module: str, argv: list[str], cwd: Path) -> set[str]:
    """The heavy libraries that `xpcargo ARGV` imported, run for real in a fresh interpreter."""
    environ = {**os.environ, "PYTHONPATH": str(PACKAGE.parent), "HOME": str(cwd), "XPCARGO_CACHE_DIR": str(cwd / "c")}
    for name in ("XPCARGO_TOOLCHAINS", "XPCARGO_IMAGES", "CARGO_TARGET_DIR"):
        environ.pop(name, None)
    done = subprocess.run(
        [sys.executable, "-c", _IMPORTED_AT_EXIT.replace("MODULE", module), *argv],
        cwd=cwd,
        env=environ,
        capture_output=True,
        text=True,
        check=False,
    )
    last = done.stderr.strip().splitlines()[-1]
    return set(ast.literal_eval(last))


@pytest.mark.parametrize(
    "argv",
    [["--help"], ["image", "--help"], ["targets"], ["report", "--target", "x86_64-unknown-linux-gnu"]],
    ids=["help", "image-help", "targets", "report"],
)
def test_commands_that_reach_no_engine_import_no_docker_sdk(tmp_path: Path, argv: list[str]) -> None:
    """What is imported, not what the source says: a module imported on the way in would pay for the SDK too."""
    project = app_project(tmp_path)
    imported = _imported("cli", argv, project)
    assert not imported & {"docker", "requests", "urllib3"}
    if argv[-1] == "--help":
        assert "yaml" not in imported


def test_a_help_from_the_cache_imports_neither_typer_nor_click(tmp_path: Path) -> None:
    assert {"typer", "click"} <= _imported("launch", ["--help"], tmp_path)  # the first help fills the cache
    assert _imported("launch", ["--help"], tmp_path) == set()
