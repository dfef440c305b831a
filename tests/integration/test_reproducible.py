"""A release built with xpcargo can be rebuilt bit for bit: same sources, same path, same image, same bytes."""

from __future__ import annotations

import hashlib
import shutil

import pytest

from .helpers import AARCH64, Cli, copy_fixture

pytestmark = pytest.mark.engine


def test_clean_rebuild_is_bit_for_bit_identical(tmp_path_factory: pytest.TempPathFactory, xpcargo: Cli) -> None:
    # zlib-sys: a crates.io -sys crate whose build script compiles C with the cc crate, so both rustc's and the C
    # toolchain's output (and the static archive between them) have to be deterministic.
    project = copy_fixture(tmp_path_factory, "zlib-sys")
    artifact = project / "target" / AARCH64 / "release" / "zlib-roundtrip"
    digests = []
    for _ in range(2):
        shutil.rmtree(project / "target", ignore_errors=True)
        built = xpcargo(["build", "--release", "--target", AARCH64], cwd=project)
        assert built.code == 0, built
        digests.append(hashlib.sha256(artifact.read_bytes()).hexdigest())
    assert digests[0] == digests[1]
