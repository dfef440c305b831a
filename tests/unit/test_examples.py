"""The GitHub Actions workflow in examples/: valid YAML of the right shape, every xpcargo command in it one that the
real CLI parses, and the matrix that `xpcargo targets --github-matrix` prints fits what the workflow reads."""

from __future__ import annotations

import json
import re
import shlex
import warnings
from pathlib import Path
from typing import Any

import click
import pytest
import yaml

with warnings.catch_warnings():
    warnings.filterwarnings("ignore", r"'click\.utils\.get_(binary|text)_stream' is deprecated", DeprecationWarning)
    import typer.main

    from xpcargo import cli

WORKFLOW = Path(__file__).resolve().parents[2] / "examples" / "github-actions.yml"
_COMMAND = re.compile(r"\bxpcargo( [^)\"|;&>\n]*)")


def _workflow() -> dict[str, Any]:
    document = yaml.safe_load(WORKFLOW.read_text(encoding="utf-8"))
    assert isinstance(document, dict)
    return document


def _commands(document: dict[str, Any]) -> list[list[str]]:
    found = []
    for job in document["jobs"].values():
        for step in job["steps"]:
            for match in _COMMAND.finditer(step.get("run", "")):
                text = match.group(1).replace("${{ matrix.target }}", "aarch64-unknown-linux-gnu")
                found.append(shlex.split(text))
    return found


def test_the_workflow_has_a_matrix_job_fed_by_the_targets_job() -> None:
    document = _workflow()
    targets, build = document["jobs"]["targets"], document["jobs"]["build"]
    assert targets["outputs"]["matrix"] == "${{ steps.matrix.outputs.matrix }}"
    assert build["needs"] == "targets"
    assert build["strategy"]["matrix"] == "${{ fromJSON(needs.targets.outputs.matrix) }}"
    uses = [step.get("uses", "") for step in build["steps"]]
    assert any(use.startswith("actions/cache@") for use in uses)
    assert any(use.startswith("actions/upload-artifact@") for use in uses)


def test_every_xpcargo_command_in_it_parses() -> None:
    commands = _commands(_workflow())
    assert {command[0] for command in commands} >= {"targets", "image", "build", "test"}
    root = typer.main.get_command(cli.app)
    for argv in commands:
        context = root.make_context("xpcargo", list(argv), resilient_parsing=False)
        group: click.Command = root
        args = list(argv)
        while isinstance(group, click.Group):
            name, sub, args = group.resolve_command(context, args)
            assert sub is not None, f"`xpcargo {' '.join(argv)}`: no command {name}"
            context = sub.make_context(name or "", list(args), parent=context)
            group = sub
        # Options xpcargo does not know are Cargo's (build, test): they must be ones Cargo knows.
        assert set(context.args) <= {"--release", "--locked"}, argv


def test_the_matrix_output_fits_the_workflow(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        cli.main(["targets", "--github-matrix", "--target", "all"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    assert out.count("\n") == 1, "one line, as $GITHUB_OUTPUT wants"
    matrix = json.loads(out)
    assert set(matrix) == {"include"}
    assert all(set(entry) == {"target"} for entry in matrix["include"])
    # The workflow reads matrix.target and nothing else of an entry.
    text = WORKFLOW.read_text(encoding="utf-8")
    assert set(re.findall(r"(?<![.\w])matrix\.(\w+)", text)) == {"target"}
