"""What the usual way keeps of a build for its record (``pipeline.replay_record``): Cargo's standard output, within a
bound. The record's use is tests/integration/test_replay.py's."""

from __future__ import annotations

from pathlib import Path

from xpcargo.context import Settings
from xpcargo.pipeline import replay_record


def test_a_capture_keeps_no_more_of_cargos_output_than_a_no_op_prints(tmp_path: Path) -> None:
    passed: list[bytes] = []
    capture = replay_record.Capture(
        argv=("build",),
        cwd=str(tmp_path),
        path=str(tmp_path / "record"),
        settings=Settings.from_environment({}),
        sources_before=[],
    )
    write = capture.tee(passed.append)
    write(b'{"reason":"build-finished","success":true}\n')
    assert list(capture.stdout or ()) == [b'{"reason":"build-finished","success":true}\n']
    chunk = b"x" * (1 << 20)
    for _ in range(20):
        write(chunk)
    # Dropped once over the bound: the output still goes on, whole.
    assert capture.stdout is None
    assert len(b"".join(passed)) == 20 * len(chunk) + 43
