"""Several targets in one command, against a fake runtime: side by side, every line attributable, a summary with
each artifact's size and sha256, the exit code, --fail-fast, and the GitHub step summary."""

from __future__ import annotations

import hashlib
import json
import re
import threading
from dataclasses import replace
from pathlib import Path

import pytest

from xpcargo.artifacts import final_artifacts
from xpcargo.context import Context
from xpcargo.pipeline.compile_cache import Stats
from xpcargo.pipeline.matrix import Summary, TargetResult

from .fake_runtime import Exec, FakeRuntime, Reply, builds_a_binary, default_script, target_of
from .projects import app_project, build_matrix
from .test_artifacts import artifact_tree

AARCH64 = "aarch64-unknown-linux-gnu"
I686 = "i686-unknown-linux-gnu"
X86_64 = "x86_64-unknown-linux-gnu"


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return app_project(tmp_path)


def _context(root: Path, **environ: str) -> Context:
    # XPCARGO_TRUST: the user consents to the `image` a project here names (config.trust).
    env = {
        "HOME": str(root.parent / "home"),
        "XPCARGO_CACHE_DIR": str(root.parent / "cache"),
        "XPCARGO_TRUST": "1",
        **environ,
    }
    return Context.create(cwd=root, environ=env)


def test_named_targets(root: Path) -> None:
    context = _context(root)
    assert context.named_targets([AARCH64, AARCH64, I686]) == [AARCH64, I686]
    shipped = sorted(context.host.toolchains.targets)
    assert X86_64 in shipped
    assert context.named_targets(["all"]) == shipped
    assert context.named_targets([I686, "all"]) == [I686, *(t for t in shipped if t != I686)]


def test_naming_no_target_means_all_or_the_shipped_ones(root: Path) -> None:
    own = "loongarch64-unknown-linux-gnu"
    (root / "xpcargo.toml").write_text(
        f'[target.{own}]\nrecipe = "trixie-rust"\ndebian-arch = "loong64"\nrunner = ["qemu-loongarch64"]\n',
        encoding="utf-8",
    )
    context = _context(root)
    shipped = sorted(context.host.toolchains.targets)
    assert context.named_targets([]) == context.named_targets(["all"]) == sorted([*shipped, own])
    assert context.named_targets([], default="shipped") == shipped
    assert context.named_targets(["all"], default="shipped") == sorted([*shipped, own])


def test_three_targets_summary_and_artifacts(
    root: Path, capsysbinary: pytest.CaptureFixture[bytes], tmp_path: Path
) -> None:
    step_summary = tmp_path / "step-summary.md"
    context = _context(root, GITHUB_STEP_SUMMARY=str(step_summary))
    runtime = builds_a_binary(root)
    code = build_matrix(
        context,
        "build",
        [AARCH64, I686, X86_64],
        [],
        connect=lambda *_: runtime,
        target_jobs=3,
        fail_fast=False,
    ).exit_code
    assert code == 0
    err = capsysbinary.readouterr().err.decode()
    # Every line a target printed says which target it is.
    for line in err.splitlines():
        if "Compiling app" in line:
            assert line.split(" | ")[0].strip() in (AARCH64, I686, X86_64), line
    for triple in (AARCH64, I686, X86_64):
        binary = root.resolve() / "target" / triple / "debug" / "app"
        digest = hashlib.sha256(binary.read_bytes()).hexdigest()
        row = next(line for line in err.splitlines() if line.startswith(triple) and digest in line)
        assert f"target/{triple}/debug/app" in row
        assert " ok " in row
        assert f"`{digest}`" in step_summary.read_text(encoding="utf-8")
    assert "`build` for 3 targets" in err
    assert not runtime.cold_running


def test_a_failing_target_fails_the_command_and_the_others_finish(
    root: Path, capsysbinary: pytest.CaptureFixture[bytes]
) -> None:
    runtime = builds_a_binary(root, failing=frozenset({I686}))
    code = build_matrix(
        _context(root),
        "build",
        [AARCH64, I686, X86_64],
        [],
        connect=lambda *_: runtime,
        target_jobs=1,
        fail_fast=False,
    ).exit_code
    assert code == 101
    err = capsysbinary.readouterr().err.decode()
    assert re.search(rf"^{I686} +\| error: could not compile `app`$", err, re.MULTILINE)
    assert sorted(target_of(call) for call in runtime.execs if call.command == "build") == sorted(
        [AARCH64, I686, X86_64]
    )
    assert (root / "target" / X86_64 / "debug" / "app").exists()
    assert "2 ok, 1 failed" in err or "1 failed" in err


@pytest.mark.parametrize("keep_warm", ["0", "600"], ids=["own-container", "warm-container"])
def test_fail_fast_stops_the_other_targets(
    root: Path, capsysbinary: pytest.CaptureFixture[bytes], keep_warm: str
) -> None:
    slow_container: list[str] = []
    slow_started = threading.Event()
    removed = threading.Event()

    class Stoppable(FakeRuntime):
        def remove(self, container_id: str, *, unhurried: bool = False) -> None:
            super().remove(container_id, unhurried=unhurried)
            if container_id in slow_container:
                removed.set()

    def script(call: Exec) -> Reply:
        if call.warm_script == "xpcargo-stop" and call.container in slow_container:
            # A warm container stays; the command's process group is stopped in it.
            removed.set()
            return Reply()
        if call.command != "build":
            return default_script(call)
        if target_of(call) == I686:
            # Fails once the other target is well into its build.
            slow_started.wait(10)
            return Reply(code=101, stderr=b"error: broken\n")
        # The other target builds until its container is removed under it.
        slow_container.append(call.container)
        slow_started.set()
        assert removed.wait(10), "the slow target was never cancelled"
        return Reply(code=137)

    runtime = Stoppable(script=script, every_image=True)
    context = _context(root, XPCARGO_KEEP_WARM=keep_warm)
    code = build_matrix(
        context,
        "build",
        [AARCH64, I686],
        [],
        connect=lambda *_: runtime,
        target_jobs=2,
        fail_fast=True,
    ).exit_code
    assert code == 101
    err = capsysbinary.readouterr().err.decode()
    assert "1 cancelled" in err
    assert "1 failed" in err
    assert not runtime.cold_running


def test_json_messages_pass_through_unchanged(root: Path, capsysbinary: pytest.CaptureFixture[bytes]) -> None:
    runtime = builds_a_binary(root)
    code = build_matrix(
        _context(root),
        "build",
        [AARCH64, X86_64],
        ["--message-format=json"],
        connect=lambda *_: runtime,
        target_jobs=2,
        fail_fast=False,
    ).exit_code
    assert code == 0
    out = capsysbinary.readouterr().out
    lines = out.splitlines()
    assert lines
    assert all(json.loads(line)["reason"] in ("compiler-artifact", "build-finished") for line in lines)
    assert sum(json.loads(line)["reason"] == "build-finished" for line in lines) == 2


def test_an_error_of_xpcargos_in_one_target_is_its_result(
    root: Path, capsysbinary: pytest.CaptureFixture[bytes]
) -> None:
    runtime = builds_a_binary(root)
    runtime.every_image = False
    context = _context(root)
    # Only aarch64's image is there; the i686 target has a configured image that is missing.
    runtime.images.add(context.host.image_plan(context.host.toolchains.target(AARCH64)).reference)
    (root / "xpcargo.toml").write_text(f'[target.{I686}]\nimage = "missing:1"\n', encoding="utf-8")
    code = build_matrix(
        context,
        "build",
        [AARCH64, I686],
        [],
        connect=lambda *_: runtime,
        target_jobs=2,
        fail_fast=False,
    ).exit_code
    assert code == 3
    err = capsysbinary.readouterr().err.decode()
    assert re.search(rf"^{I686} +\| warning: image `missing:1` configured for {I686} is not in the engine", err, re.M)


def test_a_crash_in_one_target_is_not_a_hang(root: Path) -> None:
    """An exception that is no xpcargo error (a bug) in one target's thread reaches the caller; it does not leave
    the command waiting forever for a result that never comes."""

    def script(call: Exec) -> Reply:
        if call.command == "build" and target_of(call) == I686:
            return Reply(error=RuntimeError("a bug"))
        return default_script(call)

    runtime = FakeRuntime(script=script, every_image=True)
    with pytest.raises(RuntimeError, match="a bug"):
        build_matrix(
            _context(root),
            "build",
            [AARCH64, I686],
            [],
            connect=lambda *_: runtime,
            target_jobs=2,
            fail_fast=False,
        )
    assert not runtime.cold_running


def test_line_writer_keeps_lines_whole_and_memory_bounded() -> None:
    from xpcargo.ui import LineWriter  # noqa: PLC0415

    written: list[bytes] = []
    writer = LineWriter(written.append, threading.Lock(), b"T | ")
    for chunk in (b"one\ntw", b"o\nthr", b"ee"):
        writer(chunk)
    writer.close()
    assert b"".join(written) == b"T | one\nT | two\nT | three\n"

    written.clear()
    long_line = b"x" * (LineWriter.MAX_HELD * 3)
    for start in range(0, len(long_line), 1000):
        writer(long_line[start : start + 1000])
    writer(b"\nafter\n")
    assert max(len(piece) for piece in written) <= LineWriter.MAX_HELD + 1000 + 16
    assert b"".join(written) == b"T | " + long_line + b"\nT | after\n"


def test_the_summary_has_a_glibc_column(tmp_path: Path) -> None:
    target_dir, messages = artifact_tree(tmp_path)
    artifacts = tuple(
        replace(item, size=10, sha256="0" * 64) for item in final_artifacts(messages, target_dir / AARCH64)
    )
    summary = Summary(
        command="build",
        results=(TargetResult(triple=AARCH64, code=0, seconds=1.0, artifacts=artifacts, glibc_floor="2.41"),),
        seconds=1.0,
    )
    rows = summary.rows(relative_to=tmp_path)
    assert rows[0] == ("TARGET", "RESULT", "TIME", "ARTIFACT", "SIZE", "GLIBC", "SHA256")
    assert [(row[3], row[5]) for row in rows[1:]] == [
        (f"target/{AARCH64}/release/libplug.so", "2.38 (floor 2.41)"),
        (f"target/{AARCH64}/release/libplug.a", "-"),
        (f"target/{AARCH64}/release/app", "2.34 (floor 2.41)"),
    ]
    assert "| `target/aarch64-unknown-linux-gnu/release/app` | 10 B | 2.34 (floor 2.41) |" in summary.markdown(
        relative_to=tmp_path
    )


def test_the_summary_line_says_the_hit_rate_of_the_targets_that_used_the_cache() -> None:
    cached = [
        TargetResult(triple=AARCH64, code=0, seconds=1.0, cache_stats=Stats(hits=3, misses=1)),
        TargetResult(triple=I686, code=0, seconds=1.0, cache_stats=Stats(hits=1, misses=3, uncacheable=9)),
        TargetResult(triple=X86_64, code=0, seconds=1.0),
    ]
    summary = Summary(command="build", results=tuple(cached), seconds=2.0)
    assert summary.headline() == "`build` for 3 targets in 2.0s: 3 ok; compile cache 50% hit rate"
    plain = Summary(command="build", results=(replace(cached[2], triple=AARCH64), cached[2]), seconds=2.0)
    assert "compile cache" not in plain.headline()
