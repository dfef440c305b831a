"""The GitHub Action (action.yml) and the workflows in examples/: valid YAML of the right shape, every xpcargo command
in them one that the real CLI parses, no `${{ }}` pasted into a script, caches restored and saved under the same
paths, the release's permissions no more than it needs, and the matrix that `xpcargo targets --github-matrix`
prints fits what the workflows read. GitHub itself is not run here: these read the files, and run the action's own
scripts (the cache dir, the command runner) on this machine."""

from __future__ import annotations

import json
import os
import re
import shlex
import stat
import subprocess
import sys
import warnings
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import click
import pytest
import yaml

from xpcargo.commands import cache
from xpcargo.context import KNOBS, Context, Settings

with warnings.catch_warnings():
    warnings.filterwarnings("ignore", r"'click\.utils\.get_(binary|text)_stream' is deprecated", DeprecationWarning)
    import typer.main

    from xpcargo import cli

from .projects import app_project

ROOT = Path(__file__).resolve().parents[2]
ACTION = ROOT / "action.yml"
WORKFLOWS = {path.name: path for path in sorted((ROOT / "examples").glob("*.yml"))}
SAMPLE_TARGET = "aarch64-unknown-linux-gnu"
# What the scripts' own variables stand for when a command of theirs is parsed; any other `$` word fails the test, so a
# placeholder is never parsed as if it were an argument.
_SHELL_WORDS = {"${triples[@]}": [SAMPLE_TARGET], "$IMAGES": ["/tmp/xpcargo-images"]}
# `xpcargo` where a command starts: at the start of a line or of a `$(...)`.
_COMMAND = re.compile(r"(?:^|\$\()xpcargo\s+([^)|;&>\n]*)")
_EXPRESSION = re.compile(r"\$\{\{")
_PINNED = re.compile(r"^actions/[\w-]+(/[\w-]+)?@v\d+$")


def _load(path: Path) -> dict[Any, Any]:
    document = yaml.safe_load(path.read_text(encoding="utf-8"))
    assert isinstance(document, dict)
    return document


def _steps(document: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    """Every step of a composite action or of a workflow's jobs, with where it is."""
    if "runs" in document:
        for index, step in enumerate(document["runs"].get("steps", [])):
            yield f"runs.steps[{index}]", step
    for name, job in (document.get("jobs") or {}).items():
        for index, step in enumerate(job.get("steps", [])):
            yield f"jobs.{name}.steps[{index}]", step


def _documents() -> dict[str, dict[str, Any]]:
    return {"action.yml": _load(ACTION)} | {name: _load(path) for name, path in WORKFLOWS.items()}


def _shell_commands(script: str) -> list[list[str]]:
    """The xpcargo command lines of a bash script, its variables replaced by what they stand for."""
    found = []
    for line in script.splitlines():
        if line.strip().startswith("#"):
            continue
        for match in _COMMAND.finditer(line.strip()):
            words: list[str] = []
            for word in shlex.split(match.group(1)):
                if "$" in word:
                    assert word in _SHELL_WORDS, f"`{line.strip()}`: what does {word} stand for?"
                    words += _SHELL_WORDS[word]
                else:
                    words.append(word)
            found.append(words)
    return found


def _commands(document: dict[str, Any]) -> list[list[str]]:
    """The xpcargo commands a document runs: in its bash scripts, and the lines it gives the action to run."""
    found = []
    for _, step in _steps(document):
        if "run" in step and step.get("shell", "bash") == "bash":
            found += _shell_commands(step["run"])
        if step.get("uses") == "./":
            for line in step["with"]["command"].splitlines():
                if line.strip():
                    found.append(shlex.split(line.replace("${{ matrix.target }}", SAMPLE_TARGET)))
    return found


def _parses(argv: list[str]) -> None:
    root = typer.main.get_command(cli.app)
    context = root.make_context("xpcargo", list(argv), resilient_parsing=False)
    group: click.Command = root
    args = list(argv)
    while isinstance(group, click.Group):
        name, sub, args = group.resolve_command(context, args)
        assert sub is not None, f"`xpcargo {' '.join(argv)}`: no command {name}"
        context = sub.make_context(name or "", list(args), parent=context)
        group = sub
    # Options xpcargo does not know are Cargo's (build, test, dist): they must be ones Cargo knows.
    assert set(context.args) <= {"--release", "--locked"}, argv


def test_the_examples_are_the_ci_and_the_release_workflow() -> None:
    assert set(WORKFLOWS) == {"ci.yml", "release.yml"}


def test_the_action_is_a_composite_one_with_its_inputs() -> None:
    action = _load(ACTION)
    assert action["runs"]["using"] == "composite"
    inputs = action["inputs"]
    assert set(inputs) == {
        "command",
        "target",
        "working-directory",
        "target-dir",
        "extra-cache-paths",
        "install",
        "python-version",
        "cargo-incremental",
    }
    assert inputs["command"]["required"] is True
    assert all(inputs[name]["required"] is False and "default" in inputs[name] for name in set(inputs) - {"command"})
    for where, step in _steps(action):
        # A composite action's run steps must name their shell; GitHub refuses the action otherwise.
        assert "uses" in step or "shell" in step, where
    # With no `install`, xpcargo comes from the action's own checkout: a pinned `uses:` runs exactly that code.
    (install,) = [step for _, step in _steps(action) if step.get("name") == "Install xpcargo"]
    assert install["env"]["ACTION_PATH"] == "${{ github.action_path }}"
    assert '"${INSTALL:-$ACTION_PATH}"' in install["run"]


def test_every_action_used_is_githubs_own_pinned_to_a_major_version_or_xpcargos() -> None:
    for name, document in _documents().items():
        for where, step in _steps(document):
            if "uses" in step:
                assert _PINNED.match(step["uses"]) or (name != "action.yml" and step["uses"] == "./"), (name, where)


def test_the_workflows_use_the_action_by_path_and_say_how_to_pin_it() -> None:
    for name, path in WORKFLOWS.items():
        document = _load(path)
        uses = [step.get("uses") for _, step in _steps(document)]
        assert "./" in uses, name
        # Copied into a project, `./` would be the project itself: the header says what to write instead.
        assert "`uses: <owner>/xpcargo@<full commit sha>`" in " ".join(path.read_text(encoding="utf-8").split()), name


def test_every_xpcargo_command_in_the_action_and_the_workflows_parses() -> None:
    commands = {name: _commands(document) for name, document in _documents().items()}
    assert {tuple(argv[:2]) for argv in commands["action.yml"]} == {
        ("cache", "path"),
        ("image", "key"),
        ("image", "load"),
        ("image", "save"),
    }
    assert {argv[0] for argv in commands["ci.yml"]} == {"targets", "build", "test"}
    assert {argv[0] for argv in commands["release.yml"]} == {"targets", "dist"}
    for argv in [argv for found in commands.values() for argv in found]:
        _parses(argv)


def test_every_xpcargo_step_of_the_action_runs_in_the_project() -> None:
    """xpcargo reads the project's xpcargo.toml where it runs (its targets, extra packages: the images' plans)."""
    for where, step in _steps(_load(ACTION)):
        if step.get("shell") == "python" or (step.get("shell") == "bash" and _shell_commands(step["run"])):
            assert step["working-directory"] == "${{ inputs.working-directory }}", where


def test_a_placeholder_in_a_script_is_not_parsed_as_an_argument() -> None:
    with pytest.raises(AssertionError, match=r"what does \$TARGET stand for"):
        _shell_commands('xpcargo build --target "$TARGET"')
    assert _shell_commands('key=$(xpcargo image key "${triples[@]}")') == [["image", "key", SAMPLE_TARGET]]


def _interpolated_runs(document: dict[str, Any]) -> list[str]:
    """The steps whose script has a `${{ }}` in it. GitHub pastes an expression's value into the script before the
    shell reads it, so an input, a matrix value or an event's text (a branch name, a PR title) would run as code:
    values reach scripts through `env:` instead."""
    return [where for where, step in _steps(document) if _EXPRESSION.search(str(step.get("run", "")))]


def test_no_script_in_the_action_or_the_workflows_has_an_expression_in_it() -> None:
    assert {name: _interpolated_runs(document) for name, document in _documents().items()} == {
        name: [] for name in ["action.yml", *WORKFLOWS]
    }


_HOSTILE = [
    "xpcargo ${{ inputs.command }}",
    'echo "${{ matrix.target }}"',
    'echo "${{ github.event.pull_request.title }}"',
    "git checkout ${{github.head_ref}}",
]


@pytest.mark.parametrize("script", _HOSTILE)
def test_an_expression_in_a_script_is_found_in_an_action(script: str) -> None:
    document = yaml.safe_load(
        "runs:\n  using: composite\n  steps:\n"
        "    - {shell: bash, run: 'true'}\n"
        f"    - shell: bash\n      run: |\n        set -e\n        {script}\n"
    )
    assert _interpolated_runs(document) == ["runs.steps[1]"]


@pytest.mark.parametrize("script", _HOSTILE)
def test_an_expression_in_a_script_is_found_in_a_workflow(script: str) -> None:
    document = yaml.safe_load(
        f"jobs:\n  build:\n    steps:\n      - uses: actions/checkout@v4\n      - run: {script!r}\n"
    )
    assert _interpolated_runs(document) == ["jobs.build.steps[1]"]


def test_a_value_through_env_is_not_an_expression_in_a_script() -> None:
    document = yaml.safe_load(
        "jobs:\n  build:\n    steps:\n"
        "      - env: {TITLE: '${{ github.event.pull_request.title }}'}\n"
        '        run: echo "$TITLE"\n'
    )
    assert _interpolated_runs(document) == []


def test_the_only_xpcargo_variables_set_are_ones_xpcargo_reads() -> None:
    """xpcargo refuses an XPCARGO_* variable it does not know (a typo is an error): a step's own variable with that
    prefix would fail every command after it."""
    for name, document in _documents().items():
        for where, step in _steps(document):
            for variable in step.get("env", {}):
                assert not variable.startswith("XPCARGO_") or variable in KNOBS, (name, where, variable)
        for job in (document.get("jobs") or {}).values():
            assert not any(v.startswith("XPCARGO_") and v not in KNOBS for v in job.get("env", {})), name
        assert not any(v.startswith("XPCARGO_") and v not in KNOBS for v in document.get("env", {})), name


def test_each_cache_is_saved_under_the_paths_and_key_it_is_restored_with() -> None:
    """actions/cache versions an entry by its paths: a save with other paths than the restore would never be hit."""
    steps = dict(_steps(_load(ACTION)))
    restores = {step["id"]: step for step in steps.values() if step.get("uses") == "actions/cache/restore@v4"}
    saves = [step for step in steps.values() if step.get("uses") == "actions/cache/save@v4"]
    assert set(restores) == {"image-cache", "deb-cache", "build-cache"}
    assert len(saves) == len(restores)
    for save in saves:
        (restore,) = [step for step in restores.values() if step["with"]["path"] == save["with"]["path"]]
        assert save["with"]["key"] in (
            restore["with"]["key"],
            f"${{{{ steps.{restore['id']}.outputs.cache-primary-key }}}}",
        )
        # Nothing is saved that was just restored: an entry cannot be overwritten.
        assert f"steps.{restore['id']}.outputs.cache-hit != 'true'" in save["if"]


def _script(name: str) -> dict[str, Any]:
    (step,) = [step for _, step in _steps(_load(ACTION)) if step.get("id") == name or step.get("name") == name]
    return step


@pytest.mark.parametrize(
    "environ",
    [
        {},
        {"XDG_CACHE_HOME": "/xdg"},
        {"XDG_CACHE_HOME": ""},
        {"XPCARGO_CACHE_DIR": "/elsewhere/cache", "XDG_CACHE_HOME": "/xdg"},
        {"XPCARGO_CACHE_DIR": ""},
    ],
)
def test_the_action_caches_the_deb_cache_xpcargo_uses(tmp_path: Path, environ: dict[str, str]) -> None:
    """No command prints xpcargo's cache dir, so the action finds it as xpcargo does; this runs its script."""
    output = tmp_path / "output"
    environ = {"HOME": "/home/runner", **environ}
    env = {"PATH": os.environ["PATH"], "RUNNER_TEMP": "/tmp/runner", "GITHUB_OUTPUT": str(output), **environ}
    step = _script("paths")
    env |= {"TARGET_DIR": "target"}
    subprocess.run(["bash", "-eo", "pipefail", "-c", step["run"]], check=True, env=env, cwd=tmp_path)
    outputs = dict(line.split("=", 1) for line in output.read_text(encoding="utf-8").splitlines())
    # The deb cache is <cache>/debs (image/builder.py).
    assert outputs["debs"] == str(Settings.from_environment(environ).cache_dir / "debs")
    assert outputs["target-dir"] == f"{tmp_path}/target"
    subprocess.run(["bash", "-c", step["run"]], check=True, env=env | {"TARGET_DIR": "/abs/target"}, cwd=tmp_path)
    assert output.read_text(encoding="utf-8").splitlines()[-2] == "target-dir=/abs/target"
    assert outputs["cargo-home"] == "/home/runner/.cargo"


def test_the_action_caches_the_compile_cache_xpcargo_uses(tmp_path: Path) -> None:
    """The compile cache's directory is xpcargo's own answer (`xpcargo cache path`), run here by the action's step
    with the real CLI, in a project."""
    project = app_project(tmp_path)
    fake = tmp_path / "bin" / "xpcargo"
    fake.parent.mkdir()
    fake.write_text(f'#!/bin/sh\nexec {shlex.quote(sys.executable)} -m xpcargo "$@"\n', encoding="utf-8")
    fake.chmod(0o755)
    output = tmp_path / "output"
    environ = {"HOME": str(tmp_path / "home"), "XPCARGO_CACHE_DIR": str(tmp_path / "cache")}
    env = {"PATH": f"{fake.parent}{os.pathsep}{os.environ['PATH']}", "GITHUB_OUTPUT": str(output), **environ}
    step = _script("compile-cache")
    assert step["if"] == "inputs.target-dir != ''"
    subprocess.run(["bash", "-eo", "pipefail", "-c", step["run"]], check=True, env=env, cwd=project / "src")
    expected = cache.path(Context.create(cwd=project, environ=environ)).lines
    assert output.read_text(encoding="utf-8").splitlines() == [f"path={expected[0]}"]
    restore = _script("build-cache")
    assert "${{ steps.compile-cache.outputs.path }}" in restore["with"]["path"]


def _run_commands(
    tmp_path: Path, commands: str, *, incremental: str = "0", job: Mapping[str, str] | None = None
) -> tuple[int, list[list[str]]]:
    """The action's command step as GitHub runs it (`shell: python`), with an xpcargo that records its arguments
    (and, after them, the CARGO_INCREMENTAL it was given, or None) and fails when its first one is `fail`.
    ``incremental`` is the cargo-incremental input, ``job`` the job's own environment."""
    record = tmp_path / "record"
    recorder = tmp_path / "record.py"
    recorder.write_text(
        "import json, os, sys\n"
        f"with open({str(record)!r}, 'a') as f:\n"
        "    f.write(json.dumps([*sys.argv[1:], os.environ.get('CARGO_INCREMENTAL')]) + '\\n')\n"
        "sys.exit(3 if sys.argv[1:2] == ['fail'] else 0)\n",
        encoding="utf-8",
    )
    fake = tmp_path / "bin" / "xpcargo"
    fake.parent.mkdir()
    # Through sh: a `#!` line cannot name an interpreter at a path with a space (a checkout's .venv may have one).
    fake.write_text(
        f'#!/bin/sh\nexec {shlex.quote(sys.executable)} {shlex.quote(str(recorder))} "$@"\n', encoding="utf-8"
    )
    fake.chmod(fake.stat().st_mode | stat.S_IXUSR)
    step = _script("xpcargo")
    assert step["shell"] == "python"
    assert step["env"] == {"COMMANDS": "${{ inputs.command }}", "INCREMENTAL": "${{ inputs.cargo-incremental }}"}
    env = {"PATH": f"{fake.parent}{os.pathsep}{os.environ['PATH']}", "HOME": str(tmp_path), "COMMANDS": commands}
    env |= {**(job or {}), "INCREMENTAL": incremental}
    done = subprocess.run([sys.executable, "-c", step["run"]], env=env, cwd=tmp_path, capture_output=True, check=False)
    lines = record.read_text(encoding="utf-8").splitlines() if record.exists() else []
    return done.returncode, [json.loads(line) for line in lines]


def test_the_action_runs_each_line_as_one_xpcargo_command(tmp_path: Path) -> None:
    code, ran = _run_commands(tmp_path, "build --release --target a\n\n  test --features 'x y'\n")
    assert code == 0
    assert ran == [["build", "--release", "--target", "a", "0"], ["test", "--features", "x y", "0"]]


@pytest.mark.parametrize(
    ("incremental", "job", "given"),
    [
        ("0", {}, "0"),
        ("0", {"CARGO_INCREMENTAL": "1"}, "0"),
        ("1", {}, "1"),
        ("", {"CARGO_INCREMENTAL": "1"}, "1"),
        ("", {}, None),
    ],
)
def test_the_commands_get_the_cargo_incremental_asked_for(
    tmp_path: Path, incremental: str, job: dict[str, str], given: str | None
) -> None:
    """The input's default is what a CI job wants (the compile cache keeps no incremental compilation); empty leaves
    the job's own setting."""
    code, ran = _run_commands(tmp_path, "build\n", incremental=incremental, job=job)
    assert (code, ran) == (0, [["build", given]])


def test_a_cargo_incremental_that_is_not_a_switch_is_one_error_before_any_command(tmp_path: Path) -> None:
    code, ran = _run_commands(tmp_path, "build\n", incremental="yes; rm -rf /")
    assert (code, ran) == (1, [])


def test_the_action_stops_at_the_first_failed_command_with_its_code(tmp_path: Path) -> None:
    code, ran = _run_commands(tmp_path, "build\nfail now\ntest\n")
    assert (code, ran) == (3, [["build", "0"], ["fail", "now", "0"]])


def test_the_action_expands_nothing_in_a_command(tmp_path: Path) -> None:
    """A hostile line stays arguments to xpcargo: no shell reads it. (Only `touch`: if a shell ever did read it,
    the test must fail, not harm the machine it runs on.)"""
    code, ran = _run_commands(tmp_path, "build $(touch pwned) `touch pwned`; touch pwned && echo $HOME * > pwned\n")
    assert code == 0
    assert ran == [
        [
            *["build", "$(touch", "pwned)", "`touch", "pwned`;", "touch", "pwned", "&&", "echo", "$HOME", "*", ">"],
            *["pwned", "0"],
        ]
    ]
    assert not (tmp_path / "pwned").exists()


def test_a_failed_xpcargo_fails_the_step_that_writes_its_output(tmp_path: Path) -> None:
    """`echo "key=$(xpcargo ...)"` succeeds whatever xpcargo did (bash -e looks at echo's status): an empty key or
    matrix would go on to the next step. Each step that writes xpcargo's answer to $GITHUB_OUTPUT is run here with an
    xpcargo that fails."""
    fake = tmp_path / "bin" / "xpcargo"
    fake.parent.mkdir()
    fake.write_text("#!/bin/sh\nexit 4\n", encoding="utf-8")
    fake.chmod(0o755)
    env = {"PATH": f"{fake.parent}{os.pathsep}{os.environ['PATH']}", "GITHUB_OUTPUT": str(tmp_path / "output")}
    env |= {"TARGETS": SAMPLE_TARGET, "RUNNER_OS": "Linux", "RUNNER_ARCH": "X64"}
    writers = [
        (name, where, step["run"])
        for name, document in _documents().items()
        for where, step in _steps(document)
        if "GITHUB_OUTPUT" in step.get("run", "") and _shell_commands(step["run"])
    ]
    assert len(writers) == 4, writers
    for name, where, script in writers:
        # `bash -e`, as GitHub runs a step that names no shell (`shell: bash` adds pipefail).
        done = subprocess.run(["bash", "-e", "-c", script], env=env, cwd=tmp_path, check=False)
        assert done.returncode == 4, (name, where)


def test_each_workflow_has_a_matrix_job_fed_by_the_targets_job() -> None:
    for name, path in WORKFLOWS.items():
        jobs = _load(path)["jobs"]
        assert jobs["targets"]["outputs"]["matrix"] == "${{ steps.matrix.outputs.matrix }}", name
        (matrix_job,) = [job for job in jobs.values() if "strategy" in job]
        assert matrix_job["needs"] == "targets"
        assert matrix_job["strategy"]["matrix"] == "${{ fromJSON(needs.targets.outputs.matrix) }}"
        (action,) = [step for step in matrix_job["steps"] if step.get("uses") == "./"]
        # The image cache is keyed on the job's own target.
        assert action["with"]["target"] == "${{ matrix.target }}"
        uses = [step.get("uses", "") for step in matrix_job["steps"]]
        assert any(use.startswith("actions/upload-artifact@") for use in uses)


def test_the_release_asks_for_the_least_it_needs() -> None:
    document = _load(WORKFLOWS["release.yml"])
    # YAML 1.1 (PyYAML) reads the key `on` as true.
    assert document[True] == {"push": {"tags": ["v*"]}}
    assert document["permissions"] == {}
    jobs = document["jobs"]
    assert jobs["publish"]["permissions"] == {"id-token": "write", "attestations": "write", "contents": "write"}
    assert all(job["permissions"] == {"contents": "read"} for name, job in jobs.items() if name != "publish")
    assert _load(WORKFLOWS["ci.yml"])["permissions"] == {"contents": "read"}


def test_the_release_attests_every_archive_and_publishes_one_sha256_sum(tmp_path: Path) -> None:
    steps = _load(WORKFLOWS["release.yml"])["jobs"]["publish"]["steps"]
    (attest,) = [step for step in steps if step.get("uses") == "actions/attest-build-provenance@v2"]
    # The archive kinds dist makes: .tar.gz, and .zip for Windows.
    assert attest["with"]["subject-path"].split() == ["release/*.tar.gz", "release/*.zip"]
    # The gathering script, run on two targets' dist output as download-artifact lays it out.
    for target, archive in [
        ("x86_64-pc-windows-gnu", "tool-v1-x86_64-pc-windows-gnu.zip"),
        ("a-b", "tool-v1-a-b.tar.gz"),
    ]:
        out = tmp_path / "dist" / f"dist-{target}"
        out.mkdir(parents=True)
        (out / archive).write_bytes(target.encode())
        digest = subprocess.run(["sha256sum", archive], cwd=out, check=True, capture_output=True, text=True).stdout
        (out / "sha256.sum").write_text(digest, encoding="utf-8")
        (out / "dist-manifest.json").write_text(target, encoding="utf-8")
        (out / "provenance.intoto.json").write_text(target, encoding="utf-8")
    (gather,) = [step for step in steps if step.get("name") == "Gather the archives"]
    subprocess.run(["bash", "-eo", "pipefail", "-c", gather["run"]], cwd=tmp_path, check=True, capture_output=True)
    release = tmp_path / "release"
    assert sorted(path.name for path in release.iterdir()) == [
        "a-b.dist-manifest.json",
        "a-b.provenance.intoto.json",
        "sha256.sum",
        "tool-v1-a-b.tar.gz",
        "tool-v1-x86_64-pc-windows-gnu.zip",
        "x86_64-pc-windows-gnu.dist-manifest.json",
        "x86_64-pc-windows-gnu.provenance.intoto.json",
    ]
    sums = (release / "sha256.sum").read_text(encoding="utf-8").splitlines()
    assert [line.split("  ")[1] for line in sums] == ["tool-v1-a-b.tar.gz", "tool-v1-x86_64-pc-windows-gnu.zip"]
    (release / "tool-v1-a-b.tar.gz").write_bytes(b"changed")
    # A file that is not what its sum says fails the job.
    failed = subprocess.run(
        ["bash", "-eo", "pipefail", "-c", "cd release && sha256sum --check --strict sha256.sum"],
        cwd=tmp_path,
        capture_output=True,
        check=False,
    )
    assert failed.returncode != 0
    assert "sha256sum --check --strict sha256.sum" in gather["run"]


def test_the_matrix_output_fits_the_workflows(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        cli.main(["targets", "--github-matrix", "--target", "all"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    assert out.count("\n") == 1, "one line, as $GITHUB_OUTPUT wants"
    matrix = json.loads(out)
    assert set(matrix) == {"include"}
    assert all(set(entry) == {"target"} for entry in matrix["include"])
    # The workflows read matrix.target and nothing else of an entry.
    for path in WORKFLOWS.values():
        assert set(re.findall(r"(?<![.\w])matrix\.(\w+)", path.read_text(encoding="utf-8"))) == {"target"}
