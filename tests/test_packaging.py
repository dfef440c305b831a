"""An installed wheel carries the toolchain table and the image recipes, and finds them without the source tree."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def test_wheel_finds_its_toolchains_and_recipes(tmp_path: Path) -> None:
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation", "-w", tmp_path, REPO],
        check=True,
        capture_output=True,
    )
    (wheel,) = tmp_path.glob("xpcargo-*.whl")
    installed = tmp_path / "site"
    with zipfile.ZipFile(wheel) as archive:
        archive.extractall(installed)

    # A fresh interpreter that sees only the unpacked wheel for xpcargo (its dependencies come from this venv).
    probe = (
        "from xpcargo.context import Context; import pathlib; "
        "c = Context.create(cwd=pathlib.Path('/'), environ={}); "
        "s = c.host.toolchains.target('aarch64-unknown-linux-gnu'); "
        "print(c.host.settings.toolchains_file); print(c.host.settings.recipes_dir / (s.recipe + '.yaml')); "
        "print(c.host.image_plan(s).reference)"
    )
    printed = subprocess.run(
        [sys.executable, "-I", "-c", f"import sys; sys.path.insert(0, {str(installed)!r}); {probe}"],
        check=True,
        capture_output=True,
        text=True,
        cwd=tmp_path,
    ).stdout.split()
    assert printed[:2] == [
        str(installed / "xpcargo" / "data" / "toolchains.yaml"),
        str(installed / "xpcargo" / "data" / "images" / "trixie-rust.yaml"),
    ]
    # The recipe was found and read: the plan has its content-hash tag.
    assert printed[2].startswith("xpcargo/aarch64-unknown-linux-gnu:")
