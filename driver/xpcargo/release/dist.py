"""`xpcargo dist`: a reproducible release build of every binary for every target, packed as one archive per
binary and target, with `sha256.sum`, a manifest and the provenance beside them.

The archives, `sha256.sum` and `dist-manifest.json` are byte-reproducible: built again from the same commit in
another checkout, they come out the same. `provenance.intoto.json` records when and by what they were made, so it
is not.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import re
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from xpcargo import __version__
from xpcargo.build import matrix, reproducible, run
from xpcargo.build.matrix import Artifact
from xpcargo.build.plan import remapping, reproducibility
from xpcargo.cargo import args as cargo_args
from xpcargo.context import Context
from xpcargo.errors import ProjectError
from xpcargo.image.builder import image_for
from xpcargo.image.inventory import ImageInventory, inventory
from xpcargo.release import archive, provenance

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
    context: Context,
    names: Sequence[str],
    args: Sequence[str],
    *,
    connect: run.Connect,
    out_dir: Path | None,
    version_in_name: bool,
    target_jobs: int | None,
) -> int:
    triples = context.named_targets(names)
    settings = reproducibility(context, args)
    build_args = release_args(args)
    project = context.project(cargo_args.parse_cargo_args(build_args))
    destination = (context.cwd / out_dir) if out_dir is not None else project.target_dir / "dist"
    started = datetime.datetime.now(datetime.timezone.utc)
    summary = matrix.build_matrix(
        context,
        "build",
        triples,
        build_args,
        connect=connect,
        target_jobs=target_jobs if target_jobs is not None else matrix.default_target_jobs(),
        fail_fast=True,
        reproducible=settings,
    )
    if summary.exit_code != 0:
        return summary.exit_code
    binaries = [(result.triple, artifact) for result in summary.results for artifact in result.artifacts]
    binaries = [(triple, artifact) for triple, artifact in binaries if "bin" in artifact.kinds]
    if not binaries:
        raise ProjectError(
            "the release build made no binary to pack", hint="dist packs binaries: the project needs a [[bin]] target"
        )
    packed = [
        _pack(triple, artifact, destination, epoch=settings.source_date_epoch, version_in_name=version_in_name)
        for triple, artifact in binaries
    ]
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

    pool = run.engines(context, connect)
    project_config = context.project_config(project.workspace_root)
    images: list[ImageInventory] = []
    for triple in triples:
        spec = context.target(triple, project_config)
        # The image as the engine that built the target holds it (the same content hash on every engine).
        runtime = pool.runtime(context.engine_for(spec))
        reference = image_for(context, runtime, spec)
        plan_hash = None if spec.image else context.image_plan(spec).digest
        images.append(
            inventory(runtime, context.settings.cache_dir, triple=triple, reference=reference, plan_hash=plan_hash)
        )
    lock = project.workspace_root / "Cargo.lock"
    remaps = remapping(project)
    document = provenance.statement(
        provenance.Release(
            subjects=digests,
            command=["xpcargo", "dist", *(f"--target={triple}" for triple in triples), *args],
            targets=triples,
            cargo_args=build_args,
            source=git_source(project.workspace_root),
            source_date_epoch=settings.source_date_epoch,
            epoch_source=settings.epoch_source,
            remaps=remaps,
            environment={
                **reproducible.environment(settings),
                "umask": settings.variation.umask,
            },
            cargo_lock_sha256=hashlib.sha256(lock.read_bytes()).hexdigest() if lock.is_file() else None,
            images=images,
            builder_id=provenance.builder_id(context.environ),
            xpcargo_version=__version__,
            started=started,
            finished=datetime.datetime.now(datetime.timezone.utc),
        )
    )
    archive.write_atomically(destination / PROVENANCE, (json.dumps(document, indent=2) + "\n").encode())
    reporter = context.reporter()
    for item in sorted(packed, key=lambda item: item.archive):
        reporter.status("Packed", f"{destination / item.archive} ({item.sha256[:16]})")
    reporter.status("Wrote", f"{destination / SUMS}, {destination / MANIFEST} and {destination / PROVENANCE}")
    return 0


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


def _pack(triple: str, artifact: Artifact, destination: Path, *, epoch: int, version_in_name: bool) -> Packed:
    binary = artifact.path.name
    # A WebAssembly module is `<bin>.wasm`; its archive is named after the binary, as every other target's is.
    stem = binary.removesuffix(".wasm")
    package, version = package_name_and_version(artifact.package_id)
    top = f"{stem}-v{version}-{triple}" if version_in_name and version else f"{stem}-{triple}"
    data = archive.tar_gz_bytes(top, [archive.Member(name=binary, source=artifact.path, executable=True)], mtime=epoch)
    name = f"{top}.tar.gz"
    digest = archive.write_atomically(destination / name, data)
    return Packed(
        archive=name,
        sha256=digest,
        size=len(data),
        target=triple,
        binary=binary,
        binary_sha256=artifact.sha256,
        package=package,
        version=version,
    )


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


def git_source(root: Path) -> provenance.Source:
    """The commit and the remote the workspace was checked out from, when git knows them."""
    git = shutil.which("git")
    if git is None:
        return provenance.Source(uri=None, commit=None)

    def ask(*argv: str) -> str | None:
        completed = subprocess.run([git, "-C", str(root), *argv], capture_output=True, text=True, check=False)
        return completed.stdout.strip() if completed.returncode == 0 else None

    commit = ask("rev-parse", "HEAD")
    remote = ask("remote", "get-url", "origin")
    status = ask("status", "--porcelain", "--untracked-files=no") if commit else None
    return provenance.Source(uri=_git_uri(remote) if remote else None, commit=commit, dirty=bool(status))


def _git_uri(remote: str) -> str:
    """A remote as SLSA's git URIs spell it: `git+https://host/path`; credentials in an https remote are dropped."""
    if remote.startswith(("https://", "http://")):
        scheme, _, rest = remote.partition("://")
        return f"git+{scheme}://{rest.rpartition('@')[2] if '@' in rest.split('/', 1)[0] else rest}"
    scp = re.match(r"^(?:[^@/]+@)?(?P<host>[^:/]+):(?P<path>[^/].*)$", remote)
    if scp and "://" not in remote:
        return f"git+ssh://{scp['host']}/{scp['path']}"
    return remote if remote.startswith("git+") else f"git+{remote}"
