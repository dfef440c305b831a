"""The pure parts of `dist` and `verify`: the archive writer's determinism, sha256.sum, package ids, the Cargo
arguments of a release, the comparison, and the provenance document's shape against the in-toto and SLSA rules."""

from __future__ import annotations

import datetime
import gzip
import hashlib
import io
import json
import os
import shutil
import tarfile
from pathlib import Path

import pytest

from xpcargo.errors import ProjectError
from xpcargo.image.inventory import DebianPackage, ImageInventory, parse_rustc_version
from xpcargo.release import archive, dist, provenance, verify

from .slsa_rules import check_statement


def _binary(directory: Path, content: bytes = b"\x7fELF binary") -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "app"
    path.write_bytes(content)
    return path


def test_archives_are_the_same_bytes_whatever_the_files_metadata(tmp_path: Path) -> None:
    one, two = _binary(tmp_path / "one"), _binary(tmp_path / "two")
    one.chmod(0o700)
    two.chmod(0o775)
    os.utime(two, (1, 2_000_000_000))
    members = [archive.Member(name="app", source=one, executable=True)]
    first = archive.tar_gz_bytes("app-x", members, mtime=1700000000)
    second = archive.tar_gz_bytes("app-x", [archive.Member(name="app", source=two, executable=True)], mtime=1700000000)
    assert first == second
    assert archive.tar_gz_bytes("app-x", members, mtime=1700000001) != first


def test_archive_entries_are_sorted_owned_by_root_and_dated_by_the_epoch(tmp_path: Path) -> None:
    binary = _binary(tmp_path)
    (tmp_path / "README").write_text("hi\n", encoding="utf-8")
    members = [
        archive.Member(name="app", source=binary, executable=True),
        archive.Member(name="doc/README", source=tmp_path / "README"),
    ]
    data = archive.tar_gz_bytes("app-x", list(reversed(members)), mtime=1700000000)
    # gzip header: no name flag, mtime 0.
    assert data[3] == 0
    assert data[4:8] == b"\0\0\0\0"
    with tarfile.open(fileobj=io.BytesIO(gzip.decompress(data))) as tar:
        infos = tar.getmembers()
    assert [info.name for info in infos] == ["app-x", "app-x/app", "app-x/doc", "app-x/doc/README"]
    for info in infos:
        assert (info.uid, info.gid, info.uname, info.gname, info.mtime) == (0, 0, "", "", 1700000000)
    assert [oct(info.mode) for info in infos] == ["0o755", "0o755", "0o755", "0o644"]


def test_sha256_sums_are_in_gnu_format_sorted() -> None:
    assert archive.sha256_sums({"b.tar.gz": "2" * 64, "a.tar.gz": "1" * 64}) == (
        f"{'1' * 64}  a.tar.gz\n{'2' * 64}  b.tar.gz\n"
    )


def test_write_atomically_returns_the_digest(tmp_path: Path) -> None:
    digest = archive.write_atomically(tmp_path / "out" / "f", b"abc")
    assert digest == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    assert (tmp_path / "out" / "f").read_bytes() == b"abc"
    assert [path.name for path in (tmp_path / "out").iterdir()] == ["f"]


@pytest.mark.parametrize(
    ("package_id", "expected"),
    [
        ("path+file:///src/app#0.1.0", ("app", "0.1.0")),
        ("path+file:///src/crates/x#app@0.2.0-beta.1", ("app", "0.2.0-beta.1")),
        ("registry+https://github.com/rust-lang/crates.io-index#libz-sys@1.1.22", ("libz-sys", "1.1.22")),
        ("app 0.1.0 (path+file:///src/app)", ("app", "0.1.0")),
    ],
)
def test_package_ids(package_id: str, expected: tuple[str, str]) -> None:
    assert dist.package_name_and_version(package_id) == expected


def test_release_args() -> None:
    assert dist.release_args([]) == ["--release", "--bins"]
    assert dist.release_args(["--profile=dist", "--bin", "a"]) == ["--profile=dist", "--bin", "a"]
    assert dist.release_args(["-p", "x", "--", "arg"]) == ["-p", "x", "--release", "--bins", "--", "arg"]


def test_git_uris() -> None:
    assert dist._git_uri("https://user:tok@github.com/o/r.git") == "git+https://github.com/o/r.git"
    assert dist._git_uri("git@github.com:o/r.git") == "git+ssh://github.com/o/r.git"
    assert dist._git_uri("ssh://git@host/r") == "git+ssh://git@host/r"


def test_without_options_drops_both_spellings() -> None:
    args = ["--release", "--target-dir", "t", "--manifest-path=m/Cargo.toml", "-p", "x", "--", "--target-dir"]
    assert verify.without_options(args, ("--manifest-path", "--target-dir")) == [
        "--release",
        "-p",
        "x",
        "--",
        "--target-dir",
    ]


def test_first_difference(tmp_path: Path) -> None:
    one, two, three = tmp_path / "1", tmp_path / "2", tmp_path / "3"
    one.write_bytes(b"a" * 70000 + b"x")
    two.write_bytes(b"a" * 70000 + b"y")
    three.write_bytes(b"a" * 70000)
    assert verify.first_difference(one, two) == 70000
    assert verify.first_difference(one, three) == 70000


def _release(**changes: object) -> provenance.Release:
    image = ImageInventory(
        triple="aarch64-unknown-linux-gnu",
        reference="xpcargo/aarch64-unknown-linux-gnu:506aa059dffd62d6",
        image_id="sha256:" + "c" * 64,
        plan_hash="d" * 64,
        layers=("sha256:" + "e" * 64,),
        rustc=parse_rustc_version("rustc 1.96.0 (abc 2026-01-01)\nrelease: 1.96.0\ncommit-hash: " + "f" * 40 + "\n"),
        packages=(
            DebianPackage(name="gcc", version="4:14.2.0-1", architecture="amd64"),
            DebianPackage(name="libc6", version="2.41-12", architecture="amd64"),
            DebianPackage(name="libc6", version="2.41-12", architecture="arm64"),
        ),
    )
    values: dict[str, object] = {
        "subjects": {"app-aarch64-unknown-linux-gnu.tar.gz": "a" * 64},
        "command": ["xpcargo", "dist", "--target=aarch64-unknown-linux-gnu"],
        "targets": ["aarch64-unknown-linux-gnu"],
        "cargo_args": ["--release", "--bins"],
        "source": provenance.Source(uri="git+https://example.com/app.git", commit="b" * 40),
        "source_date_epoch": 1700000000,
        "epoch_source": "git",
        "remaps": [(Path("/src/app"), "/xpcargo/source")],
        "environment": {"TZ": "UTC"},
        "cargo_lock_sha256": "1" * 64,
        "images": [image],
        "builder_id": provenance.LOCAL_BUILDER,
        "xpcargo_version": "0.1.0",
        "started": datetime.datetime(2026, 11, 25, 12, 0, tzinfo=datetime.timezone.utc),
        "finished": datetime.datetime(2026, 11, 25, 12, 1, tzinfo=datetime.timezone.utc),
    }
    values.update(changes)
    return provenance.Release(**values)  # type: ignore[arg-type]


def test_the_provenance_follows_the_statement_and_slsa_rules() -> None:
    document = provenance.statement(_release())
    check_statement(document)
    # It is JSON as it stands.
    assert json.loads(json.dumps(document)) == document


def test_the_provenance_names_what_went_in() -> None:
    document = provenance.statement(_release())
    definition = document["predicate"]["buildDefinition"]
    assert definition["buildType"] == provenance.BUILD_TYPE
    assert definition["externalParameters"]["source"] == {
        "uri": "git+https://example.com/app.git",
        "digest": {"gitCommit": "b" * 40},
        "dirty": False,
    }
    assert definition["internalParameters"]["sourceDateEpoch"] == 1700000000
    assert definition["internalParameters"]["pathRemapping"] == [{"from": "/src/app", "to": "/xpcargo/source"}]
    dependencies = {entry["name"]: entry for entry in definition["resolvedDependencies"]}
    image = dependencies["xpcargo/aarch64-unknown-linux-gnu:506aa059dffd62d6"]
    assert image["digest"] == {"sha256": "c" * 64}
    assert image["annotations"]["planHash"] == "d" * 64
    assert image["annotations"]["rootfsLayers"] == ["sha256:" + "e" * 64]
    assert dependencies["Cargo.lock"]["digest"] == {"sha256": "1" * 64}
    assert dependencies["rustc (aarch64-unknown-linux-gnu)"]["uri"] == "pkg:generic/rustc@1.96.0"
    packages = [
        entry["uri"] for entry in definition["resolvedDependencies"] if entry.get("uri", "").startswith("pkg:deb")
    ]
    assert packages == [
        "pkg:deb/debian/gcc@4:14.2.0-1?arch=amd64",
        "pkg:deb/debian/libc6@2.41-12?arch=amd64",
        "pkg:deb/debian/libc6@2.41-12?arch=arm64",
    ]
    details = document["predicate"]["runDetails"]
    assert details["builder"] == {"id": provenance.LOCAL_BUILDER, "version": {"xpcargo": "0.1.0"}}
    assert details["metadata"] == {"startedOn": "2026-11-25T12:00:00Z", "finishedOn": "2026-11-25T12:01:00Z"}


def test_an_unknown_source_is_left_out() -> None:
    document = provenance.statement(_release(source=provenance.Source(uri=None, commit=None), cargo_lock_sha256=None))
    check_statement(document)
    assert "source" not in document["predicate"]["buildDefinition"]["externalParameters"]
    names = [entry["name"] for entry in document["predicate"]["buildDefinition"]["resolvedDependencies"]]
    assert "source" not in names
    assert "Cargo.lock" not in names


def test_the_rules_catch_a_broken_statement() -> None:
    document = provenance.statement(_release())
    document["subject"][0]["digest"]["sha256"] = "XYZ"
    with pytest.raises(AssertionError, match="sha256"):
        check_statement(document)
    document = provenance.statement(_release())
    document["predicate"]["runDetails"]["builder"]["version"] = "0.1.0"
    with pytest.raises(AssertionError, match="version"):
        check_statement(document)


def test_the_builder_in_github_actions_is_the_workflow() -> None:
    environ = {
        "GITHUB_SERVER_URL": "https://github.com",
        "GITHUB_WORKFLOW_REF": "o/r/.github/workflows/r.yml@refs/tags/v1",
    }
    assert provenance.builder_id(environ) == "https://github.com/o/r/.github/workflows/r.yml@refs/tags/v1"
    assert provenance.builder_id({}) == provenance.LOCAL_BUILDER


def test_an_inventory_takes_the_packages_of_the_build_record_and_asks_the_image_for_rustc(tmp_path: Path) -> None:
    """Provenance and locks read one list of packages: the record written when the image was built."""
    from xpcargo.image import records  # noqa: PLC0415
    from xpcargo.image.inventory import inventory  # noqa: PLC0415
    from xpcargo.image.lockfile import Package  # noqa: PLC0415

    from .fake_runtime import Exec, FakeRuntime, Reply  # noqa: PLC0415

    def script(call: Exec) -> Reply:
        assert call.argv == ("rustc", "-vV"), call.argv
        return Reply(stdout=b"rustc 1.96.0 (abc 2026-01-01)\nrelease: 1.96.0\nhost: x86_64-unknown-linux-gnu\n")

    runtime = FakeRuntime(script=script)
    runtime.images.add("img:1")
    runtime.image_ids["img:1"] = "sha256:abc"
    records.save(
        tmp_path,
        digest="d" * 64,
        reference="img:1",
        image_id="sha256:abc",
        target="x86_64-unknown-linux-gnu",
        packages=[Package(name="libc6", arch="amd64", version="2.41-12")],
    )
    found = inventory(runtime, tmp_path, triple="x86_64-unknown-linux-gnu", reference="img:1", plan_hash="d" * 64)
    assert found.packages == (DebianPackage(name="libc6", version="2.41-12", architecture="amd64"),)
    assert found.rustc["release"] == "1.96.0"
    assert found.image_id == "sha256:abc"


def test_a_wasm_module_is_packed_under_its_binarys_name(tmp_path: Path) -> None:
    from xpcargo.artifacts import Artifact  # noqa: PLC0415

    module = tmp_path / "app.wasm"
    module.write_bytes(b"\0asm\x01\0\0\0")
    digest = hashlib.sha256(module.read_bytes()).hexdigest()
    artifact = Artifact(path=module, size=8, sha256=digest, kinds=frozenset({"bin"}), package_id="app 0.3.0")
    packed = dist._pack(
        "wasm32-wasip1", artifact, tmp_path, target_dir=tmp_path, workspace_root=tmp_path, epoch=0, version_in_name=True
    )
    assert packed.archive == "app-v0.3.0-wasm32-wasip1.tar.gz"
    assert packed.binary == "app.wasm"
    with tarfile.open(tmp_path / packed.archive) as opened:
        assert opened.getnames() == ["app-v0.3.0-wasm32-wasip1", "app-v0.3.0-wasm32-wasip1/app.wasm"]


def _built(tmp_path: Path) -> tuple[Path, Path]:
    """A target dir with a release binary as Cargo leaves it: `release/app`, hard-linked from `release/deps/`."""
    target_dir = tmp_path / "target"
    deps = target_dir / "x86_64-unknown-linux-gnu" / "release" / "deps"
    deps.mkdir(parents=True)
    (deps / "app-0123abcd").write_bytes(b"\x7fELF binary")
    binary = deps.parent / "app"
    os.link(deps / "app-0123abcd", binary)
    return target_dir, binary


def test_a_binary_cargo_made_is_read(tmp_path: Path) -> None:
    target_dir, binary = _built(tmp_path)
    assert dist.read_built_file(target_dir, binary, workspace_root=tmp_path) == b"\x7fELF binary"


@pytest.mark.parametrize(
    "swap",
    [
        "symlink to a key",
        "hard link to a key",
        "symlinked directory",
        "symlinked target dir",
        "outside the target dir",
        "fifo",
        "third link",
    ],
)
def test_dist_never_packs_anything_but_the_builds_own_file(tmp_path: Path, swap: str) -> None:
    target_dir, binary = _built(tmp_path)
    key = tmp_path / "home" / ".ssh" / "id_ed25519"
    key.parent.mkdir(parents=True)
    key.write_bytes(b"-----BEGIN OPENSSH PRIVATE KEY-----")
    path = binary
    if swap == "symlink to a key":
        binary.unlink()
        binary.symlink_to(key)
    elif swap == "hard link to a key":
        binary.unlink()
        os.link(key, binary)
    elif swap == "symlinked directory":
        # The profile directory itself swapped for a link to a directory holding a file of the same name.
        os.link(key, key.parent / "app")
        release = binary.parent
        release.rename(release.with_name("moved"))
        release.symlink_to(key.parent)
    elif swap == "symlinked target dir":
        # The whole target dir (in the workspace) swapped for a link to a tree laid out like one: every directory
        # below it is real.
        decoy = tmp_path / "home" / "other" / "target"
        (decoy / binary.parent.relative_to(target_dir)).mkdir(parents=True)
        os.link(key, decoy / binary.relative_to(target_dir))
        target_dir.rename(tmp_path / "moved")
        target_dir.symlink_to(decoy)
    elif swap == "outside the target dir":
        path = key
    elif swap == "fifo":
        binary.unlink()
        os.mkfifo(binary)
    else:
        os.link(binary, tmp_path / "elsewhere")
    with pytest.raises(ProjectError, match="refusing to pack") as caught:
        dist.read_built_file(target_dir, path, workspace_root=tmp_path)
    assert str(path) in str(caught.value)


def test_a_binary_changed_after_the_build_is_not_packed(tmp_path: Path) -> None:
    from xpcargo.artifacts import Artifact  # noqa: PLC0415

    target_dir, binary = _built(tmp_path)
    artifact = Artifact(path=binary, size=11, sha256="0" * 64, kinds=frozenset({"bin"}), package_id="app 0.1.0")
    with pytest.raises(ProjectError, match="changed after the build made it"):
        dist._pack("x86_64-unknown-linux-gnu", artifact, tmp_path / "dist", target_dir=target_dir,
                   workspace_root=tmp_path, epoch=0, version_in_name=False)  # fmt: skip
    assert not (tmp_path / "dist").exists()


def test_the_provenance_says_whether_the_release_was_verified() -> None:
    def internal(release: provenance.Release) -> dict[str, object]:
        found: dict[str, object] = provenance.statement(release)["predicate"]["buildDefinition"]["internalParameters"]
        return found

    assert internal(_release())["verifiedByRebuild"] is True
    assert internal(_release(verified=False))["verifiedByRebuild"] is False


def test_a_workspace_copy_leaves_out_fifos_and_reports_an_unreadable_file_in_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = tmp_path / "ws"
    (source / "src").mkdir(parents=True)
    (source / "src" / "main.rs").write_text("fn main() {}\n", encoding="utf-8")
    os.mkfifo(source / "src" / "pipe")
    verify._copy_tree(source, tmp_path / "copy", skip=())
    assert sorted(path.name for path in (tmp_path / "copy" / "src").iterdir()) == ["main.rs"]

    def unreadable(src: Path, dst: Path, **_: object) -> None:
        # What copytree raises once it has copied all else: every file it could not copy.
        raise shutil.Error([(str(src / "src" / "main.rs"), str(dst / "src" / "main.rs"), "Permission denied")])

    monkeypatch.setattr(shutil, "copytree", unreadable)
    with pytest.raises(ProjectError, match="cannot copy the workspace") as caught:
        verify._copy_tree(source, tmp_path / "again", skip=())
    assert str(source / "src" / "main.rs") in str(caught.value)
