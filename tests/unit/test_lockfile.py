"""Locked images without an engine: the lock file, the locked plan and its tag, the mmdebstrap command, `image lock`
and `image verify` against the fake runtime, and the one line for a locked version the mirror lacks."""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import threading
from dataclasses import replace
from pathlib import Path

import pytest

from xpcargo.commands import images
from xpcargo.context import Context
from xpcargo.errors import ConfigError, ImageBuildError, ProjectError
from xpcargo.image import debian, layers, lockfile, records
from xpcargo.image.inventory import contents
from xpcargo.image.lockfile import LOCK_FILE, LockedImage, Package
from xpcargo.image.plan import LABEL_LOCK, ImagePlan

from .fake_runtime import INSTALLED, Exec, FakeBootstrap, FakeRuntime, Reply

AARCH64 = "aarch64-unknown-linux-gnu"
X86_64 = "x86_64-unknown-linux-gnu"
# The real bootstrap, which conftest replaces for every test; one test here runs it over a fake mmdebstrap.
_BOOTSTRAP = debian.bootstrap


@pytest.fixture
def project(tmp_path: Path) -> Path:
    root = tmp_path / "project"
    root.mkdir()
    (root / "Cargo.toml").write_text('[package]\nname = "p"\nversion = "0.1.0"\n', encoding="utf-8")
    return root


@pytest.fixture
def context(project: Path, tmp_path: Path) -> Context:
    return Context.create(cwd=project, environ={"HOME": str(tmp_path), "XPCARGO_CACHE_DIR": str(tmp_path / "cache")})


def _plan(context: Context, triple: str) -> ImagePlan:
    """``triple``'s image plan in the project: locked when its lock file has an entry for the target."""
    project = context.project_config_here()
    return context.host.image_plan(context.host.target(triple, project), project)


def _entry(plan_digest: str, *packages: Package, epoch: int = 1_764_000_000) -> LockedImage:
    return LockedImage(
        plan=plan_digest,
        build_arch="amd64",
        suite="trixie",
        mirror="http://deb.debian.org/debian",
        source_date_epoch=epoch,
        packages=tuple(sorted(packages or INSTALLED)),
        # What FakeBootstrap's base holds: all but the last.
        base_packages=INSTALLED[:-1],
    )


def _write_lock(context: Context, triple: str, entry: LockedImage) -> None:
    lockfile.save(lockfile.ImageLocks(path=context.cwd / LOCK_FILE, targets={triple: entry}))


def _locked_plan(context: Context) -> ImagePlan:
    """x86_64's plan once the lock file has an entry (``_entry``) for its unlocked plan."""
    unlocked = _plan(context, X86_64)
    _write_lock(context, X86_64, _entry(unlocked.digest))
    return _plan(context, X86_64)


def test_the_lock_file_reads_back_what_was_written(tmp_path: Path) -> None:
    foreign = Package(name="libssl-dev", arch="arm64", version="3.5.1-1")
    entry = replace(
        _entry("a" * 64, *INSTALLED, foreign),
        std_deb="http://deb.debian.org/debian/pool/main/r/rustc-web/libstd-rust-web-dev_1_arm64.deb",
        std_sha256="b" * 64,
    )
    locks = lockfile.ImageLocks(path=tmp_path / LOCK_FILE, targets={AARCH64: entry, X86_64: _entry("c" * 64)})
    lockfile.save(locks)
    text = (tmp_path / LOCK_FILE).read_text(encoding="utf-8")
    assert f'[targets."{AARCH64}"]' in text
    assert '    "libssl-dev:arm64=3.5.1-1",' in text
    # The base's packages are listed once, and `packages` holds what the target adds.
    assert text.count('"base-files:amd64=13.8+deb13u8"') == 2
    loaded = lockfile.load(tmp_path)
    assert dict(loaded.targets) == {AARCH64: entry, X86_64: _entry("c" * 64)}
    assert loaded.targets[AARCH64].digest == entry.digest
    # What apt is asked for: native and arch-all packages by name, foreign ones with their architecture; the base
    # its own, the layer the rest.
    assert entry.base_specs() == ("base-files=13.8+deb13u8", "ca-certificates=20250419")
    assert entry.layer_specs() == ("libc6=2.41-12", "libssl-dev:arm64=3.5.1-1")


def test_the_lock_file_is_written_as_it_was() -> None:
    """Byte for byte the text the writer before files.py wrote: a diff of a refreshed lock shows versions only."""
    base = Package(name="base-files", arch="amd64", version="13.8+deb13u8")
    aarch64 = replace(
        _entry("a" * 64, base, INSTALLED[2], Package(name="libssl-dev", arch="arm64", version="3.5.1-1")),
        base_packages=(base,),
        std_deb="http://deb.debian.org/debian/pool/main/r/rustc-web/libstd-rust-web-dev_1_arm64.deb",
        std_sha256="b" * 64,
    )
    empty = replace(_entry("c" * 64, epoch=1), packages=(), base_packages=())
    assert lockfile.render({X86_64: empty, AARCH64: aarch64}) == (
        "# Written by `xpcargo image lock`: the exact Debian packages of each target's image. Commit this file.\n"
        "# While a target has an entry here, its image is built from exactly these versions, reproducibly.\n"
        "# When the mirror stops serving one of them, `xpcargo image lock --refresh` rewrites the entries from "
        "today's mirror.\n"
        "version = 2\n"
        "\n"
        f'[targets."{AARCH64}"]\n'
        f'plan = "{"a" * 64}"\n'
        'build-arch = "amd64"\n'
        'suite = "trixie"\n'
        'mirror = "http://deb.debian.org/debian"\n'
        "source-date-epoch = 1764000000\n"
        'std-deb = "http://deb.debian.org/debian/pool/main/r/rustc-web/libstd-rust-web-dev_1_arm64.deb"\n'
        f'std-sha256 = "{"b" * 64}"\n'
        "base-packages = [\n"
        '    "base-files:amd64=13.8+deb13u8",\n'
        "]\n"
        "packages = [\n"
        '    "libc6:amd64=2.41-12",\n'
        '    "libssl-dev:arm64=3.5.1-1",\n'
        "]\n"
        "\n"
        f'[targets."{X86_64}"]\n'
        f'plan = "{"c" * 64}"\n'
        'build-arch = "amd64"\n'
        'suite = "trixie"\n'
        'mirror = "http://deb.debian.org/debian"\n'
        "source-date-epoch = 1\n"
        "base-packages = [\n"
        "]\n"
        "packages = [\n"
        "]\n"
    )


def test_a_broken_lock_file_is_a_configuration_error(tmp_path: Path) -> None:
    (tmp_path / LOCK_FILE).write_text('version = 2\n[targets.x]\nplan = "a"\n', encoding="utf-8")
    with pytest.raises(ConfigError, match=r"targets\.x\.source-date-epoch: is missing"):
        lockfile.load(tmp_path)
    # A lock of the one-layer images before the shared base is refused with the command that rewrites it.
    (tmp_path / LOCK_FILE).write_text("version = 1\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="this xpcargo reads version 2"):
        lockfile.load(tmp_path)


def test_a_locked_plan_installs_every_package_at_its_version_under_its_own_tag(context: Context) -> None:
    unlocked = _plan(context, X86_64)
    _write_lock(context, X86_64, _entry(unlocked.digest))
    project = context.project_config_here()
    spec = context.host.target(X86_64, project)
    lock = lockfile.load(context.cwd).targets[X86_64]
    plan = context.host.image_plan(spec, project)
    assert plan.base.packages == ("base-files=13.8+deb13u8", "ca-certificates=20250419")
    (layer,) = plan.layers
    assert (layer.purpose, layer.packages) == ("locked", ("libc6=2.41-12",))
    assert plan.source_date_epoch == plan.base.source_date_epoch == 1_764_000_000
    assert plan.lock == plan.base.lock == lock.digest
    assert all(stage.labels[LABEL_LOCK] == plan.lock for stage in plan.stages)
    assert plan.reference != unlocked.reference
    assert context.host.image_plan(spec) == unlocked
    # Another date (or any other change to the entry) is another image.
    _write_lock(context, X86_64, _entry(unlocked.digest, epoch=1))
    assert _plan(context, X86_64).reference != plan.reference


def test_an_unlocked_plan_keeps_its_tag(context: Context) -> None:
    """Locks added two fields to the plan; an unlocked plan hashes as it did, so existing images stay current."""
    plan = _plan(context, X86_64)
    assert (plan.lock, plan.source_date_epoch) == (None, None)
    assert all(LABEL_LOCK not in stage.labels for stage in plan.stages)
    assert plan.digest == replace(plan).digest


def test_a_lock_for_another_plan_is_refused_with_the_command_that_renews_it(context: Context) -> None:
    _write_lock(context, X86_64, _entry("0" * 64))
    with pytest.raises(ConfigError) as caught:
        _plan(context, X86_64)
    assert caught.value.message.startswith(f"{LOCK_FILE} locks {X86_64} for another image plan than today's")
    assert caught.value.hint == f"run `xpcargo image lock {X86_64}` and commit {LOCK_FILE}"


def test_a_foreign_targets_lock_keeps_its_std_and_foreign_architectures(context: Context, tmp_path: Path) -> None:
    unlocked = _plan(context, AARCH64)
    assert unlocked.std_deb is not None
    foreign = Package(name="libssl-dev", arch="arm64", version="3.5.1-1")
    entry = replace(
        _entry(unlocked.digest, *INSTALLED, foreign), std_deb=unlocked.std_deb.url, std_sha256=unlocked.std_deb.sha256
    )
    _write_lock(context, AARCH64, entry)
    plan = _plan(context, AARCH64)
    assert plan.std_deb == unlocked.std_deb
    assert plan.emulator == "qemu-aarch64"
    command = debian.mmdebstrap_command(plan.base, tmp_path / "r.tar", deb_cache=tmp_path, packages_file=tmp_path / "p")
    assert "--architectures=amd64" in command
    assert f"--include={','.join(entry.base_specs())}" in command
    (layer,) = plan.layers
    script = layers.install_script(layer, build_arch="amd64", pool_debs=["std.deb"], owner="0:0")
    assert "dpkg --add-architecture arm64" in script
    assert "libssl-dev:arm64=3.5.1-1" in script
    assert f"dpkg-deb -x {layers.POOL}/std.deb /" in script
    assert "qemu-aarch64" in script
    # What the engine would mount over, which mmdebstrap copies from the host, is not in a locked image.
    assert '--customize-hook=rm -f "$1"/etc/hostname "$1"/etc/resolv.conf' in command
    # Nor the times of the .deb cache, which the build syncs in.
    archives = '"$1"/var/cache/apt/archives'
    assert f"--customize-hook=touch -c -h -d @1764000000 {archives}/lock {archives}/partial" in command


def test_every_build_writes_out_its_packages(context: Context, tmp_path: Path) -> None:
    plan = _plan(context, X86_64).base
    command = debian.mmdebstrap_command(
        plan, tmp_path / "r.tar", deb_cache=tmp_path, packages_file=tmp_path / "packages.txt"
    )
    assert (
        "--customize-hook=chroot \"$1\" dpkg-query -W -f '${Package}:${Architecture}=${Version}\\n' "
        '> "$1"/tmp/xpcargo-packages'
    ) in command
    assert f"--customize-hook=download /tmp/xpcargo-packages {tmp_path}/packages.txt" in command
    assert not any("resolv.conf" in argument for argument in command)
    assert lockfile.parse_dpkg_query("libc6:amd64=2.41-12\nbase-files:amd64=13.8+deb13u8\n") == (
        Package(name="base-files", arch="amd64", version="13.8+deb13u8"),
        Package(name="libc6", arch="amd64", version="2.41-12"),
    )


def _failing_mmdebstrap(monkeypatch: pytest.MonkeyPatch, output: str) -> None:
    """mmdebstrap as a script that prints ``output`` and fails."""
    monkeypatch.setattr(shutil, "which", lambda name: f"/usr/bin/{name}")
    monkeypatch.setattr(debian, "_tether", list)

    def start(argv: list[str], environment: dict[str, str]) -> subprocess.Popen[str]:
        assert environment["SOURCE_DATE_EPOCH"] == "1764000000"
        return subprocess.Popen(
            ["sh", "-c", 'printf "%s\\n" "$1"; exit 1', "sh", output],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )

    monkeypatch.setattr(debian, "_start", start)


def test_a_locked_version_the_mirror_lacks_is_named_with_the_refresh(
    context: Context, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    plan = _locked_plan(context)
    _failing_mmdebstrap(
        monkeypatch,
        "E: Version '2.41-12' for 'libc6' was not found\nE: Version '20250419' for 'ca-certificates' was not found\n"
        "E: setup failed",
    )
    with pytest.raises(ImageBuildError) as caught:
        _BOOTSTRAP(
            plan.base,
            tmp_path / "r.tar",
            target=X86_64,
            scratch=tmp_path,
            deb_cache=tmp_path / "debs",
            on_line=lambda _: None,
            on_retry=lambda _: None,
        )
    assert caught.value.summary() == (
        f"error: {LOCK_FILE} locks libc6 at 2.41-12 (and 1 more) for {X86_64}, and the mirror "
        "http://deb.debian.org/debian no longer serves that version "
        f"(hint: `xpcargo image lock --refresh {X86_64}` rewrites the lock from today's mirror; commit it)"
    )
    assert caught.value.exit_code == 8


def test_lock_records_what_the_build_installed_and_keeps_an_unchanged_entry(
    context: Context, monkeypatch: pytest.MonkeyPatch
) -> None:
    bootstrap = FakeBootstrap(monkeypatch)
    runtime = FakeRuntime()
    images.lock(context, runtime, [X86_64], refresh=False)
    # Without the project: the unlocked plan.
    unlocked = context.host.image_plan(context.host.toolchains.target(X86_64))
    assert unlocked.reference in runtime.images
    recorded = {record.digest: record.packages for record in records.load_all(context.host.settings.cache_dir)}
    assert recorded == {unlocked.base.digest: INSTALLED[:-1], unlocked.digest: INSTALLED}
    entry = lockfile.load(context.cwd).targets[X86_64]
    assert (entry.plan, entry.packages, entry.std_deb) == (unlocked.digest, INSTALLED, None)
    assert entry.base_packages == INSTALLED[:-1]
    # Read from the build's record: no container was needed.
    assert [purpose for purpose in runtime.purposes() if purpose != "image-check"] == []

    # Locking again changes nothing, the date included: the locked image keeps its tag.
    before = (context.cwd / LOCK_FILE).read_text(encoding="utf-8")
    images.lock(context, runtime, [X86_64], refresh=False)
    assert (context.cwd / LOCK_FILE).read_text(encoding="utf-8") == before
    assert len(bootstrap.calls) == 2

    # The locked build: every package at its version, with the lock's date.
    images.build(context, runtime, [X86_64])
    locked = bootstrap.plans[-1]
    assert locked.lock == entry.digest
    assert locked.source_date_epoch == entry.source_date_epoch
    assert locked.packages == entry.base_specs()
    assert bootstrap.layers[-1].packages == entry.layer_specs()
    assert _plan(context, X86_64).reference in runtime.images


def test_refresh_rebuilds_and_records_the_changes(
    context: Context, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    bootstrap = FakeBootstrap(monkeypatch)
    runtime = FakeRuntime()
    images.lock(context, runtime, [X86_64], refresh=False)
    first = lockfile.load(context.cwd).targets[X86_64]
    newer = Package(name="libc6", arch="amd64", version="2.41-13")
    bootstrap.packages = (INSTALLED[0], INSTALLED[1], newer)
    bootstrap.content = b"\1" * 1024
    capsys.readouterr()
    images.lock(context, runtime, [X86_64], refresh=True)
    assert len(bootstrap.calls) == 4
    second = lockfile.load(context.cwd).targets[X86_64]
    assert second.packages == bootstrap.packages
    assert second.plan == first.plan
    assert "libc6:amd64 2.41-12 -> 2.41-13" in capsys.readouterr().err
    # The old unlocked images went; the new ones have their names.
    assert runtime.removed_images == ["sha256:imported1", runtime.loaded[0]]


def test_an_image_without_a_record_is_asked_with_dpkg_query(context: Context) -> None:
    def script(call: Exec) -> Reply:
        assert call.argv[:2] == ("dpkg-query", "-W")
        return Reply(stdout=b"libc6:amd64=2.41-12\nbase-files:amd64=13.8+deb13u8\n")

    runtime = FakeRuntime(script=script, images={"shared:1"})
    runtime.image_labels["shared:1"] = {"org.xpcargo.plan-hash": "f" * 64, "org.xpcargo.target": X86_64}
    found = contents(runtime, context.host.settings.cache_dir, "shared:1")
    assert found.packages_from == "dpkg-query"
    assert [str(package) for package in found.packages] == ["base-files:amd64=13.8+deb13u8", "libc6:amd64=2.41-12"]
    assert (found.plan, found.target, found.lock) == ("f" * 64, X86_64, None)
    assert found.layers == ("sha256:layer-of-shared:1",)
    assert runtime.purposes() == ["image-inventory"]
    assert not runtime.running


def test_lock_outside_a_project_is_refused(tmp_path: Path) -> None:
    outside = Context.create(cwd=tmp_path, environ={"HOME": str(tmp_path)})
    with pytest.raises(ProjectError, match="image locks belong to a project"):
        images.lock(outside, FakeRuntime(), [X86_64], refresh=False)


def test_verify_rebuilds_every_layer_and_compares(
    context: Context, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    bootstrap = FakeBootstrap(monkeypatch)
    runtime = FakeRuntime()
    with pytest.raises(ConfigError, match=f"{X86_64} has no entry in"):
        images.verify(context, runtime, X86_64)
    images.lock(context, runtime, [X86_64], refresh=False)
    images.build(context, runtime, [X86_64])
    plan = _plan(context, X86_64)
    engine_held = set(runtime.images)
    capsys.readouterr()

    verification = images.verify(context, runtime, X86_64)
    assert verification.same
    assert len(verification.image_layers) == 2
    err = capsys.readouterr().err.splitlines()
    assert f"      Layers {' '.join(verification.image_layers)} of {plan.reference}" in err
    assert f"      Layers {' '.join(verification.image_layers)} of the rebuild" in err
    # The rebuild is compared, never loaded: the engine holds what it held.
    assert runtime.images == engine_held
    assert bootstrap.calls[-2:] == [f"bootstrap {X86_64}", f"layer locked {X86_64} std=False"]

    # A rebuild with other content is not the image: both shown, exit code 8.
    bootstrap.content = b"\1" * 1024
    with pytest.raises(ImageBuildError, match="has other layers than the image") as caught:
        images.verify(context, runtime, X86_64)
    assert caught.value.exit_code == 8
    assert "of the rebuild" in capsys.readouterr().err


def test_two_bases_never_run_mmdebstrap_on_one_deb_cache_at_once(
    context: Context, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    plan = _locked_plan(context)
    _failing_mmdebstrap(monkeypatch, "E: setup failed")
    debs = tmp_path / "debs"
    debs.mkdir()
    # Another process's mmdebstrap holds the cache.
    other = os.open(debs / ".mmdebstrap.lock", os.O_RDWR | os.O_CREAT)
    fcntl.flock(other, fcntl.LOCK_EX)
    said: list[str] = []
    failed: list[BaseException] = []

    def build() -> None:
        try:
            _BOOTSTRAP(
                plan.base,
                tmp_path / "r.tar",
                target=X86_64,
                scratch=tmp_path,
                deb_cache=debs,
                on_line=said.append,
                on_retry=lambda _: None,
            )
        except ImageBuildError as error:
            failed.append(error)

    thread = threading.Thread(target=build)
    thread.start()
    thread.join(1.0)
    assert thread.is_alive(), "mmdebstrap ran while another one held the .deb cache"
    assert said == ["      waiting for another image build to finish with the .deb cache"]
    os.close(other)
    thread.join(10)
    assert not thread.is_alive()
    (error,) = failed
    assert "E: setup failed" in str(error)


def test_a_refresh_of_several_targets_rebuilds_their_shared_base_once(
    context: Context, monkeypatch: pytest.MonkeyPatch
) -> None:
    bootstrap = FakeBootstrap(monkeypatch)
    runtime = FakeRuntime()
    images.lock(context, runtime, [X86_64, AARCH64], refresh=True)
    assert [call for call in bootstrap.calls if call.startswith("bootstrap")] == [f"bootstrap {X86_64}"]
    assert [call for call in bootstrap.calls if call.startswith("layer")] == [
        f"layer target {X86_64} std=False",
        f"layer target {AARCH64} std=True",
    ]
