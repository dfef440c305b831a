"""`xpcargo dist`: a reproducible release build of every binary for every target, packed as one archive per
binary and target, with `sha256.sum`, a manifest and the provenance beside them.

The archives, `sha256.sum` and `dist-manifest.json` are byte-reproducible: built again from the same commit in
another checkout, they come out the same. `provenance.intoto.json` records when and by what they were made, so it
is not.
"""

from __future__ import annotations

import datetime
import errno
import hashlib
import json
import os
import re
import stat
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from xpcargo import __version__
from xpcargo.artifacts import Artifact
from xpcargo.cargo.project import Project
from xpcargo.config.targets import load_project_config
from xpcargo.context import Host
from xpcargo.errors import ProjectError
from xpcargo.image.inventory import ImageInventory, inventory
from xpcargo.pipeline import git_checkout, matrix, reproducible, run
from xpcargo.pipeline.plan import project_at, remapping, reproducibility
from xpcargo.release import archive, provenance, verify

SUMS = "sha256.sum"
MANIFEST = "dist-manifest.json"
PROVENANCE = "provenance.intoto.json"
# Options that choose which Cargo targets are built: with none of them, dist builds every binary.
_SELECTING = ("--bin", "--bins", "--example", "--examples", "--all-targets")


@dataclass(frozen=True, kw_only=True)
class Packed:
    archive: str
    sha256: str
    size: int
    target: str
    binary: str
    binary_sha256: str
    package: str
    version: str


def dist(
    host: Host,
    cwd: Path,
    triples: Sequence[str],
    args: Sequence[str],
    *,
    connect: run.Connect,
    out_dir: Path | None,
    version_in_name: bool,
    target_jobs: int | None,
    verified: bool = True,
) -> int:
    settings = reproducibility(host, project_at(host, cwd, args), triples[0])
    build_args = release_args(args)
    project = project_at(host, cwd, build_args)
    destination = (cwd / out_dir) if out_dir is not None else project.target_dir / "dist"
    started = datetime.datetime.now(datetime.timezone.utc)
    directories: list[Path] = []
    try:
        built = (
            _build_verified(host, cwd, triples, build_args, settings=settings, connect=connect, directories=directories)
            if verified
            else _build_once(
                host, cwd, project, triples, build_args, settings=settings, connect=connect, target_jobs=target_jobs
            )
        )
        if isinstance(built, int):
            return built
        binaries = [(triple, built_by, artifact) for triple, built_by, artifact in built if "bin" in artifact.kinds]
        if not binaries:
            raise ProjectError(
                "the release build made no binary to pack",
                hint="dist packs binaries: the project needs a [[bin]] target",
            )
        packed = [
            _pack(
                triple,
                artifact,
                destination,
                target_dir=built_by.target_dir,
                workspace_root=built_by.workspace_root,
                epoch=settings.source_date_epoch,
                version_in_name=version_in_name,
            )
            for triple, built_by, artifact in binaries
        ]
    finally:
        verify.discard(directories)
    names_seen = [item.archive for item in packed]
    duplicates = sorted({name for name in names_seen if names_seen.count(name) > 1})
    if duplicates:
        raise ProjectError(
            f"two binaries would be packed as {', '.join(duplicates)}",
            hint="give the binaries distinct names, or build one package with -p",
        )
    digests = {item.archive: item.sha256 for item in packed}
    archive.write_atomically(destination / SUMS, archive.sha256_sums(digests).encode())
    archive.write_atomically(destination / MANIFEST, manifest(packed, settings.source_date_epoch).encode())

    pool = run.engines(host, connect)
    project_config = load_project_config(project.workspace_root)
    images: list[ImageInventory] = []
    for triple in triples:
        spec = host.target(triple, project_config)
        # The image as the engine that built the target holds it (the same content hash on every engine).
        runtime = pool.runtime(host.engine_for(spec))
        image_plan = None if spec.image else host.image_plan(spec, project_config)
        reference = host.image_builder(runtime).image_for(spec, image_plan)
        plan_hash = image_plan.digest if image_plan else None
        images.append(
            inventory(runtime, host.settings.cache_dir, triple=triple, reference=reference, plan_hash=plan_hash)
        )
    lock = project.workspace_root / "Cargo.lock"
    # The paths of the builds whose artifacts were packed (with verification, each target's first copy).
    remaps = list(dict.fromkeys(pair for _, built_by, _ in built for pair in remapping(built_by)))
    document = provenance.statement(
        provenance.Release(
            subjects=digests,
            command=["xpcargo", "dist", *(f"--target={triple}" for triple in triples), *args],
            targets=triples,
            cargo_args=build_args,
            source=git_source(project.workspace_root, host.environ),
            source_date_epoch=settings.source_date_epoch,
            epoch_source=settings.epoch_source,
            remaps=remaps,
            environment={
                **reproducible.environment(settings),
                "umask": settings.variation.umask,
            },
            cargo_lock_sha256=hashlib.sha256(lock.read_bytes()).hexdigest() if lock.is_file() else None,
            images=images,
            builder_id=provenance.builder_id(host.environ),
            xpcargo_version=__version__,
            started=started,
            finished=datetime.datetime.now(datetime.timezone.utc),
            verified=verified,
        )
    )
    archive.write_atomically(destination / PROVENANCE, (json.dumps(document, indent=2) + "\n").encode())
    reporter = host.reporter()
    for item in sorted(packed, key=lambda item: item.archive):
        reporter.status("Packed", f"{destination / item.archive} ({item.sha256[:16]})")
    reporter.status("Wrote", f"{destination / SUMS}, {destination / MANIFEST} and {destination / PROVENANCE}")
    return 0


def _build_verified(
    host: Host,
    cwd: Path,
    triples: Sequence[str],
    build_args: Sequence[str],
    *,
    settings: reproducible.Reproducibility,
    connect: run.Connect,
    directories: list[Path],
) -> list[tuple[str, Project, Artifact]] | int:
    """Each target built twice as `verify` builds it; the first build's artifacts, with the project (the copy) that
    made them, when every artifact of both builds is the same bytes. ``directories`` collects the builds' directories,
    for the caller to remove once it has packed."""
    found: list[tuple[str, Project, Artifact]] = []
    for triple in triples:
        rebuilt = verify.build_twice(host, cwd, triple, build_args, settings=settings, connect=connect)
        if isinstance(rebuilt, int):
            return rebuilt
        if rebuilt.differing:
            # Kept for the user to look at, as `verify` keeps them.
            sys.stdout.write(verify.table(rebuilt.comparisons))
            verify.report_differences(rebuilt, triple)
        directories.extend(rebuilt.directories)
        found += [(triple, rebuilt.plans[0].project, artifact) for artifact in rebuilt.artifacts[0]]
    return found


def _build_once(
    host: Host,
    cwd: Path,
    project: Project,
    triples: Sequence[str],
    build_args: Sequence[str],
    *,
    settings: reproducible.Reproducibility,
    connect: run.Connect,
    target_jobs: int | None,
) -> list[tuple[str, Project, Artifact]] | int:
    """Every target of ``project`` built once, side by side, in its own target dir (`--no-verify`)."""
    summary = matrix.build_matrix(
        host,
        cwd,
        "build",
        triples,
        build_args,
        project=project,
        connect=connect,
        target_jobs=target_jobs if target_jobs is not None else matrix.default_target_jobs(),
        fail_fast=True,
        reproducible=settings,
    )
    if summary.exit_code != 0:
        return summary.exit_code
    return [(result.triple, project, artifact) for result in summary.results for artifact in result.artifacts]


def release_args(args: Sequence[str]) -> list[str]:
    """The Cargo arguments of a release build of every binary: `--release` unless a profile is chosen, and
    `--bins` unless the targets are chosen."""
    head, dash, tail = _split_program_args(args)
    extra = []
    if not any(arg in ("--release", "-r") or arg.partition("=")[0] == "--profile" for arg in head):
        extra.append("--release")
    if not any(arg.partition("=")[0] in _SELECTING for arg in head):
        extra.append("--bins")
    return [*head, *extra, *dash, *tail]


def _split_program_args(args: Sequence[str]) -> tuple[list[str], list[str], list[str]]:
    if "--" not in args:
        return list(args), [], []
    split = list(args).index("--")
    return list(args[:split]), ["--"], list(args[split + 1 :])


def _pack(
    triple: str,
    artifact: Artifact,
    destination: Path,
    *,
    target_dir: Path,
    workspace_root: Path,
    epoch: int,
    version_in_name: bool,
) -> Packed:
    binary = artifact.path.name
    # A WebAssembly module is `<bin>.wasm`, a Windows program `<bin>.exe`; its archive is named after the binary,
    # as every other target's is.
    stem = binary.removesuffix(".wasm").removesuffix(".exe")
    package, version = package_name_and_version(artifact.package_id)
    top = f"{stem}-v{version}-{triple}" if version_in_name and version else f"{stem}-{triple}"
    content = read_built_file(target_dir, artifact.path, workspace_root=workspace_root)
    content_sha256 = hashlib.sha256(content).hexdigest()
    if content_sha256 != artifact.sha256:
        raise ProjectError(
            f"refusing to pack {artifact.path}: it changed after the build made it",
            hint="something outside Cargo rewrites the target dir (a process a build script left running?)",
        )
    member = archive.Member(name=binary, source=artifact.path, data=content, executable=True)
    if is_windows(triple):
        # What Windows users unpack, and cargo-dist's choice: a .zip with the .exe at its top.
        data = archive.zip_bytes([member], mtime=epoch)
        name = f"{top}.zip"
    else:
        data = archive.tar_gz_bytes(top, [member], mtime=epoch)
        name = f"{top}.tar.gz"
    digest = archive.write_atomically(destination / name, data)
    return Packed(
        archive=name,
        sha256=digest,
        size=len(data),
        target=triple,
        binary=binary,
        binary_sha256=content_sha256,
        package=package,
        version=version,
    )


def is_windows(triple: str) -> bool:
    """Whether a target's programs are Windows programs (Rust's `*-windows-*` triples), packed as a .zip."""
    return triple.split("-")[2:3] == ["windows"]


_DIRECTORY_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
# O_NONBLOCK: opening a FIFO planted in the binary's place must not hang; fstat then refuses it.
_FILE_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK


def read_built_file(target_dir: Path, path: Path, *, workspace_root: Path) -> bytes:
    """The content of ``path``, a file the build made in ``target_dir``: a regular file reached from the target dir
    without following any link, and linked nowhere else but Cargo's own `deps/` copy of it. What is checked is what
    is read: one descriptor, from a walk that opens each directory with O_NOFOLLOW, so that nothing swapped in
    between the check and the read (a symlink to the user's SSH key, say) is packed. The walk starts at a directory
    the build cannot replace, being a mount point in its container: the workspace root when the target dir is in
    it (the build can rename `target` itself and leave a link to another tree on the host in its place), else the
    target dir, its own mount."""

    def refuse(why: str) -> ProjectError:
        return ProjectError(
            f"refusing to pack {path}: {why}",
            hint="dist ships only regular files the build made in the target dir; look for a build script or a "
            "process that replaces the build's output",
        )

    try:
        parts = path.relative_to(target_dir).parts
    except ValueError:
        raise refuse(f"it is not in the target dir {target_dir}") from None
    if not parts or ".." in parts:
        raise refuse(f"it is not in the target dir {target_dir}")
    anchor = workspace_root if target_dir.is_relative_to(workspace_root) else target_dir
    parts = path.relative_to(anchor).parts
    if ".." in parts:
        raise refuse(f"it is not in the target dir {target_dir}")
    descriptors: list[int] = []
    try:
        try:
            descriptors.append(os.open(anchor, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC))
            for part in parts[:-1]:
                descriptors.append(os.open(part, _DIRECTORY_FLAGS, dir_fd=descriptors[-1]))
            file = os.open(parts[-1], _FILE_FLAGS, dir_fd=descriptors[-1])
        except OSError as error:
            if error.errno in (errno.ELOOP, errno.ENOTDIR):
                raise refuse(f"it, or a directory on its way from {anchor}, is a symbolic link") from None
            raise refuse(error.strerror or str(error)) from None
        descriptors.append(file)
        found = os.fstat(file)
        if not stat.S_ISREG(found.st_mode):
            raise refuse("it is not a regular file")
        if found.st_nlink > 1 and not _only_linked_from_deps(descriptors[-2], found):
            raise refuse(f"it has {found.st_nlink} hard links, and not only Cargo's own in deps/")
        os.set_blocking(file, True)
        chunks = []
        while chunk := os.read(file, 1 << 20):
            chunks.append(chunk)
        return b"".join(chunks)
    finally:
        for descriptor in reversed(descriptors):
            os.close(descriptor)


def _only_linked_from_deps(directory: int, found: os.stat_result) -> bool:
    """Whether the file's one other link is Cargo's: Cargo hard-links a final artifact from `deps/<name>-<hash>`."""
    if found.st_nlink != 2:  # the file and its one copy in deps/
        return False
    try:
        deps = os.open("deps", _DIRECTORY_FLAGS, dir_fd=directory)
    except OSError:
        return False
    try:
        with os.scandir(deps) as entries:
            return any(
                entry.is_file(follow_symlinks=False)
                and (entry.stat(follow_symlinks=False).st_ino, entry.stat(follow_symlinks=False).st_dev)
                == (found.st_ino, found.st_dev)
                for entry in entries
            )
    finally:
        os.close(deps)


_SPEC = re.compile(r"#(?:(?P<name>[^@#]+)@)?(?P<version>[0-9][^#@]*)$")


def package_name_and_version(package_id: str) -> tuple[str, str]:
    """Cargo's package id (`path+file:///src/app#0.1.0`, `path+file:///src/x#app@0.1.0`, or the old
    `app 0.1.0 (path+file:///src/app)`) as the package's name and version."""
    match = _SPEC.search(package_id)
    if match:
        name = match["name"] or package_id.split("#", 1)[0].rstrip("/").rsplit("/", 1)[-1]
        return name, match["version"]
    words = package_id.split()
    return (words[0], words[1]) if len(words) >= 2 else (package_id, "")


def manifest(packed: Sequence[Packed], epoch: int) -> str:
    """What was built, for tools: no times and no paths, so that it is as reproducible as the archives."""
    document = {
        "format": 1,
        "xpcargo": __version__,
        "source_date_epoch": epoch,
        "archives": [
            {
                "name": item.archive,
                "sha256": item.sha256,
                "size": item.size,
                "target": item.target,
                "binary": item.binary,
                "binary_sha256": item.binary_sha256,
                "package": item.package,
                "version": item.version,
            }
            for item in sorted(packed, key=lambda item: item.archive)
        ],
    }
    return json.dumps(document, indent=2, sort_keys=True) + "\n"


def git_source(root: Path, environ: Mapping[str, str]) -> provenance.Source:
    """The commit and the remote the workspace was checked out from, when git knows them: read without the
    checkout's git config, which a build script may have written (git_checkout says how)."""
    checkout = git_checkout.read(root, environ)
    remote = checkout.remote_url
    return provenance.Source(
        uri=_git_uri(remote) if remote else None,
        commit=checkout.commit,
        dirty=checkout.commit is not None and checkout.dirty,
    )


def _git_uri(remote: str) -> str:
    """A remote as SLSA's git URIs spell it: `git+https://host/path`; credentials in an https remote are dropped."""
    if remote.startswith(("https://", "http://")):
        scheme, _, rest = remote.partition("://")
        return f"git+{scheme}://{rest.rpartition('@')[2] if '@' in rest.split('/', 1)[0] else rest}"
    scp = re.match(r"^(?:[^@/]+@)?(?P<host>[^:/]+):(?P<path>[^/].*)$", remote)
    if scp and "://" not in remote:
        return f"git+ssh://{scp['host']}/{scp['path']}"
    return remote if remote.startswith("git+") else f"git+{remote}"
