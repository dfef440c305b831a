"""A build on an engine that cannot see this machine's files (remote mode), the remote side of the workspace seam
(``workspace.Workspace``): every directory a local build would bind-mount is a volume instead, mounted at the same
absolute path, so that Cargo's messages, OUT_DIRs and the report carry host paths as they do locally.

- The workspace (and each path dependency, Cargo config directory or `mounts` entry outside it) is synced into a
  volume of its own, by content (``sync``): a build after a one-file change sends that file. Before each step, the
  volumes it may write to are listed through its own container (``entered``): what an earlier command changed there
  is reset to the host's copy.
- The target dir is a volume of its own, which only Cargo writes (xpcargo sends it only its own `--config` files);
  what the host needs comes back after the build: the final artifacts Cargo named, and each build script's run
  directory (`output`, `root-output`, `stderr` and OUT_DIR), which the report reads; and Cargo.lock, which Cargo may
  had to write (after the fetch step, or after a build when the host has none). Never through a link on the host:
  a target dir that is a link in the project is refused.
- CARGO_HOME is a volume the fetch step fills from the network on the engine's side; only CARGO_HOME's Cargo config
  is sent from here. Its credentials files never are: a volume is readable by whatever the engine runs, so in remote
  mode registry tokens reach `cargo fetch` only from the environment (`CARGO_REGISTRY_TOKEN`, ...).
- The host's CA bundle (which the fetch step trusts, as it does locally) is a volume of its own, mounted at
  /usr/local/share/xpcargo-ca for the fetch step only.
- The target's image is never built on the remote engine: it is built on this machine's engine and sent.
"""

from __future__ import annotations

import fcntl
import os
import tempfile
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from types import MappingProxyType
from typing import IO, Any

from xpcargo import artifacts
from xpcargo.cargo.project import Project
from xpcargo.config.targets import TargetSpec
from xpcargo.container import volumes
from xpcargo.container.location import Engines
from xpcargo.container.session import Session, open_session
from xpcargo.container.spec import WORKSPACE_LABEL, ContainerRequest, Mount
from xpcargo.errors import ConfigError, EngineError, ImageBuildError
from xpcargo.image import send
from xpcargo.image.builder import Builder
from xpcargo.image.plan import ImagePlan
from xpcargo.pipeline import sync
from xpcargo.pipeline.workspace import Step, Venue
from xpcargo.ui import Reporter

# Where the fetch step finds the host's CA bundle.
CA_DIRECTORY = Path("/usr/local/share/xpcargo-ca")
# CARGO_HOME's own Cargo config: all of CARGO_HOME a build reads from this machine.
_CARGO_HOME_CONFIG = ("config.toml", "config")


@dataclass(frozen=True, kw_only=True)
class SyncedVolume:
    volume: volumes.VolumeSpec
    selection: sync.Selection
    # Read-only for the build (CARGO_HOME, path dependencies, other mounts); the fetch step writes CARGO_HOME.
    read_only: bool
    cargo_home: bool = False
    # Mounted for the fetch step only (the host's CA bundle).
    fetch_only: bool = False

    @property
    def writable(self) -> bool:
        """Whether a step that runs Cargo (or a shell) may write to it: then its tree is listed before each."""
        return (not self.read_only or self.cargo_home) and not self.fetch_only


@dataclass(frozen=True, kw_only=True)
class RemoteWorkspace:
    """The build's files in volumes of the engine at ``engine`` (``workspace.Workspace``)."""

    engine: str
    # The bind mounts a local build would have, which the volumes stand in for.
    binds: tuple[Mount, ...]
    volumes: tuple[SyncedVolume, ...]
    # The host's manifests of what each volume was sent.
    manifests: Path
    # Where files may come back to: the target dir, and the workspace (its Cargo.lock only).
    target_dir: Path
    lock_file: Path
    # The host's CA bundle as the fetch step sees it (in a volume of its own: a volume holds directories).
    ca_bundle: Path | None = None
    fetch_record: Path

    def tree(self, synced: SyncedVolume) -> sync.Tree:
        """How a container that mounts ``synced`` lists it: what the selection leaves out, and where another volume
        is mounted inside it (the target dir in the workspace, say), are not listed."""
        root, selection = synced.volume.path, synced.selection
        if selection.only is not None:
            return sync.Tree(root=root, only=selection.only)
        skipped = {str(p.relative_to(selection.root)) for p in selection.exclude if p.is_relative_to(selection.root)}
        skipped.update(
            str(other.volume.path.relative_to(root))
            for other in self.volumes
            if other.volume.path != root and other.volume.path.is_relative_to(root)
        )
        return sync.Tree(root=root, skipped=tuple(sorted(skipped)))

    def destinations(self) -> tuple[sync.Destination, ...]:
        """Where files come back to: the target dir (reached from the workspace, through no link, when it is in
        it) and the workspace (its Cargo.lock)."""
        workspace = self.lock_file.parent
        anchor = workspace if self.target_dir.is_relative_to(workspace) else self.target_dir
        return (
            sync.Destination(path=self.target_dir, anchor=anchor),
            sync.Destination(path=workspace, anchor=workspace),
        )

    def lock_after_build(self) -> tuple[Path, ...]:
        """Cargo.lock, as a build may bring it back: only when the host has none (an offline build's first). The
        fetch step resolves it, and brings it back; after a build, a changed lock would be a build script's doing,
        which must not reach the host's checkout (the next step's ``entered`` resets it on the engine)."""
        return () if os.path.lexists(self.lock_file) else (self.lock_file,)

    def mounts(self, step: Step) -> tuple[Mount, ...]:
        """The volumes as a step mounts them (CARGO_HOME's writable, and the CA bundle's, for the fetch step alone):
        CARGO_HOME's credentials are in none of them."""
        fetch = step is Step.FETCH
        # Parents first: a target dir inside the workspace is mounted over the workspace's volume.
        ordered = sorted((v for v in self.volumes if fetch or not v.fetch_only), key=lambda v: len(v.volume.path.parts))
        return tuple(
            Mount(path=v.volume.path, volume=v.volume.name, read_only=v.read_only and not (fetch and v.cargo_home))
            for v in ordered
        )

    def hidden(self) -> tuple[Path, ...]:
        return ()  # A remote CARGO_HOME holds no bin directory to hide.

    def image(self, builder: Builder, spec: TargetSpec, plan: ImagePlan | None, engines: Engines | None) -> str:
        """Never built on the remote engine, whose layer builds could not bind-mount xpcargo's caches: built on this
        machine's engine (or found there) and sent, under the same content-hash tags (``image.send``)."""
        if plan is None or builder.runtime.image_exists(plan.reference):
            return builder.image_for(spec, plan)
        missing = f"the engine at {self.engine} has no {plan.reference}"
        if engines is None:
            raise ImageBuildError(
                f"{missing}, and xpcargo builds images only on an engine that sees this machine's files",
                hint=f"build it here and send it: `xpcargo image save {spec.triple} -o DIR`, then "
                f"`DOCKER_HOST={self.engine} xpcargo image load DIR`",
            )
        local = engines.local(missing=missing)
        replace(builder, runtime=local).ensure(plan)
        if local is not builder.runtime:
            send.send(plan, local=local, remote=builder.runtime, cache=builder.cache, reporter=builder.reporter)
        return plan.reference

    def push(self, venue: Venue) -> None:
        """Bring every volume up to date with the host: one question to the engine when nothing changed; else one
        short-lived container per changed volume (with no network, running nothing of the project's, mounting that
        volume alone) through which the changes go. What a command changed in a volume itself is found by
        ``entered``."""
        _sync(venue, self, self.volumes)

    def entered(self, session: Session, venue: Venue) -> None:
        """Before a step runs anything in ``session``: the volumes it may write to (the workspace's, the target
        dir's files of xpcargo's, CARGO_HOME's Cargo config) hold what the host has, whatever an earlier command (a
        build script, a program run, a shell) changed in them. One listing through the session; a volume whose tree
        is not as it was left is synced again, through a container of its own."""
        checked = [synced for synced in self.volumes if synced.writable]
        if not checked:
            return
        listed = _list(session, [self.tree(synced) for synced in checked])
        changed = [
            synced
            for index, synced in enumerate(checked)
            if _manifest(self, synced).load(None).tree != listed.get(index, {})
        ]
        if changed:
            _sync(venue, self, changed, force=True)

    def fetched(self, session: Session, venue: Venue) -> None:
        # `cargo fetch` may have written the lock file, which the fetch record's fingerprint covers: on the host too.
        _pull(session, self, [self.lock_file], venue.reporter)

    def built(self, session: Session, venue: Venue, messages: Sequence[Mapping[str, Any]]) -> None:
        # Before the report is collected: it reads each build script's output, on the host.
        wanted = _wanted_back(messages, self.target_dir)
        _pull(session, self, [*wanted, *self.lock_after_build()], venue.reporter)


def _refuse_private(path: Path, private: Sequence[tuple[Path, str]], why: str) -> None:
    """A directory copied to another machine must not hold the user's home, CARGO_HOME (its credentials) or
    xpcargo's cache: locally those would be read-only bind mounts, remotely they would be copies on a disk that
    whatever the engine runs can read. A path dependency comes from the project's own, untrusted, Cargo.toml."""
    for place, what in private:
        if place.is_relative_to(path):
            raise ConfigError(
                f"refusing to send `{path}` ({why}) to a remote engine: it holds {what} ({place})",
                hint="move the project (or run xpcargo from inside it) so that nothing outside the workspace holds "
                "that, or build with a local engine (XPCARGO_REMOTE=0)",
            )


def plan_remote(
    project: Project,
    mounts: Sequence[Mount],
    *,
    engine: str,
    cache_dir: Path,
    state_files: Iterable[Path],
    ca_bundle: Path | None,
    fetch_record: Path,
    user_home: Path | None = None,
) -> RemoteWorkspace:
    """The volumes of a build whose bind mounts would be ``mounts``."""
    workspace, target, home = project.workspace_root, project.target_dir, project.cargo_home
    private = [(home, "CARGO_HOME"), (cache_dir, "xpcargo's cache")]
    if user_home is not None:
        private.append((user_home, "your home directory"))
    synced: list[SyncedVolume] = []
    for mount in mounts:
        source = mount.source or mount.path
        if mount.path == target:
            continue
        if mount.path in project.cargo_config_files and not mount.path.is_relative_to(workspace):
            # A Cargo config file outside the workspace is mounted alone (a `~/.cargo` holds the credentials and the
            # registry too); a volume holds a directory: its directory, with that file only.
            selection = sync.Selection(root=source.parent, only=(mount.path.name,))
            synced.append(_volume("cargo-config", mount.path.parent, selection, workspace, read_only=True))
            continue
        if not source.exists():
            # A CARGO_HOME not made yet (Cargo makes it on first use) was said to be "a file".
            raise ConfigError(
                f"`{mount.path}` does not exist, and a remote engine's volume is sent from it",
                hint=f"create it (`mkdir -p {mount.path}`), or build with a local engine (XPCARGO_REMOTE=0)",
            )
        if not source.is_dir():
            raise ConfigError(
                f"`{mount.path}` is a file, and a remote engine's volumes hold directories",
                hint="mount its directory instead, or build with a local engine (XPCARGO_REMOTE=0)",
            )
        if mount.path == workspace:
            inside = (target,) if target.is_relative_to(workspace) else ()
            selection = sync.Selection(root=source, exclude=inside)
            synced.append(_volume("workspace", mount.path, selection, workspace, read_only=False))
        elif mount.path == home:
            selection = sync.Selection(root=source, only=_CARGO_HOME_CONFIG)
            synced.append(
                SyncedVolume(
                    volume=volumes.spec("cargo-home", mount.path, workspace=None),
                    selection=selection,
                    read_only=True,
                    cargo_home=True,
                )
            )
        else:
            kind = "path-dependency" if mount.path in project.outside_paths else "mount"
            _refuse_private(source.resolve(), private, "a path dependency" if kind == "path-dependency" else "a mount")
            synced.append(_volume(kind, mount.path, sync.Selection(root=source), workspace, read_only=True))
    files = tuple(sorted(str(path.relative_to(target)) for path in state_files if path.is_relative_to(target)))
    synced.append(_volume("target-dir", target, sync.Selection(root=target, only=files), workspace, read_only=False))
    ca = None
    if ca_bundle is not None:
        # Not at its host path, which would hide the image's own /etc/ssl/certs: at a directory of xpcargo's.
        bundle = ca_bundle.resolve()
        ca = CA_DIRECTORY / bundle.name
        selection = sync.Selection(root=bundle.parent, only=(bundle.name,))
        synced.append(
            SyncedVolume(
                volume=volumes.spec("ca", CA_DIRECTORY, workspace=None),
                selection=selection,
                read_only=True,
                fetch_only=True,
            )
        )
    return RemoteWorkspace(
        engine=engine,
        binds=tuple(mounts),
        volumes=tuple(synced),
        manifests=cache_dir / "volumes",
        target_dir=target,
        lock_file=workspace / "Cargo.lock",
        ca_bundle=ca,
        fetch_record=fetch_record,
    )


def _volume(kind: str, path: Path, selection: sync.Selection, workspace: Path, *, read_only: bool) -> SyncedVolume:
    return SyncedVolume(volume=volumes.spec(kind, path, workspace=workspace), selection=selection, read_only=read_only)


# --- the way in -----------------------------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class Pushed:
    files: int
    removed: int
    bytes: int


@contextmanager
def _locked(directory: Path, names: Iterable[str]) -> Iterator[None]:
    """A lock per volume while it is compared and sent to: two commands must not interleave their manifests. In a
    fixed order, so that two commands never wait on each other."""
    with ExitStack() as stack:
        try:
            directory.mkdir(parents=True, exist_ok=True)
        except OSError:
            yield
            return
        for name in sorted(names):
            try:
                descriptor = os.open(directory / f"{name}.lock", os.O_RDWR | os.O_CREAT, 0o600)
            except OSError:
                continue
            stack.callback(os.close, descriptor)
            fcntl.flock(descriptor, fcntl.LOCK_EX)
        yield


def _manifest(remote: RemoteWorkspace, synced: SyncedVolume) -> sync.Manifest:
    return sync.Manifest(remote.manifests / f"{synced.volume.name}.json")


def _list(session: Session, trees: Sequence[sync.Tree]) -> dict[int, dict[str, sync.Signature]]:
    """The trees as ``session``'s container sees them; nothing is followed (find -P), so any container may list."""
    output = bytearray()
    errors = bytearray()
    code = session.run(["sh", "-c", sync.tree_script(trees)], on_stdout=output.extend, on_stderr=errors.extend)
    if code != 0:
        raise EngineError(
            f"could not list a volume on the engine: the listing exited with {code}: "
            + errors.decode(errors="replace").strip()[:300]
        )
    return sync.read_tree(bytes(output))


@dataclass(frozen=True, kw_only=True)
class _Pending:
    synced: SyncedVolume
    manifest: sync.Manifest
    created: str
    changes: sync.Changes
    known: sync.Known


def _sync(venue: Venue, remote: RemoteWorkspace, chosen: Sequence[SyncedVolume], *, force: bool = False) -> Pushed:
    """Sync those of ``chosen`` that the host changed or that were never listed; with ``force`` (a listing found
    them changed on the engine) all of them."""
    # Made under the locks too: a volume made again (volumes.ensure) must not be another command's, half sent.
    with _locked(remote.manifests, [v.volume.name for v in chosen]):
        infos = volumes.ensure(venue.runtime, [v.volume for v in chosen])
        pending = []
        for synced in chosen:
            manifest = _manifest(remote, synced)
            created = volumes.instance(infos[synced.volume.name])
            known = manifest.load(created)
            changes = sync.diff(synced.selection, known.entries)
            if changes.send or changes.remove or known.tree is None or force:
                pending.append(
                    _Pending(synced=synced, manifest=manifest, created=created, changes=changes, known=known)
                )
            elif changes.manifest != known.entries:
                # Touched but not changed: remembered, so that the next comparison need not read them again.
                manifest.save(created, changes.manifest, known.tree)
        if not pending:
            return Pushed(files=0, removed=0, bytes=0)
        pushed = _send(venue, remote, pending)
    if pushed.bytes or pushed.removed:
        venue.reporter.status(
            "Synced",
            f"{pushed.files} file(s), {pushed.bytes} bytes sent"
            + (f", {pushed.removed} removed" if pushed.removed else "")
            + f" to the engine at {remote.engine}",
        )
    return pushed


# argv: the paths to remove. A directory a build made unreadable is made readable first (the owner may), so that
# `rm` can empty it; find -P and rm -r follow no link.
_REMOVE_SCRIPT = 'find -P "$@" -type d ! -perm -u=rwx -exec chmod u+rwx {} \\; 2>/dev/null; rm -rf -- "$@"'


def _send(venue: Venue, remote: RemoteWorkspace, pending: Sequence[_Pending]) -> Pushed:
    uid, _, gid = venue.user.partition(":")
    files = removed = sent = 0
    for item in pending:
        synced, path = item.synced, item.synced.volume.path
        # Each volume in a container of its own, with no other volume mounted: a build may have put links in the
        # workspace's volume, and writing through them must not reach CARGO_HOME's volume or another's.
        request = ContainerRequest(
            image=venue.image,
            user=venue.user,
            workdir=Path("/"),
            mounts=(Mount(path=path, volume=synced.volume.name),),
            env=MappingProxyType({}),
            labels=MappingProxyType({WORKSPACE_LABEL: str(remote.lock_file.parent)}),
        )
        with open_session(venue.runtime, request, purpose="sync", cancellation=venue.cancellation) as session:
            tree = remote.tree(synced)
            # The volume as it is, against what it was left as: whatever a command changed in it goes too.
            changes = sync.reconcile(item.changes, item.known.tree, _list(session, [tree]).get(0, {}))
            if changes.reset:
                venue.reporter.warn(
                    f"reset {len(changes.reset)} path(s) that a command changed in the engine's copy of `{path}` "
                    f"(e.g. `{changes.reset[0]}`) to this machine's: a build script should write into its OUT_DIR only"
                )
            if changes.remove:
                for chunk in _chunks([str(path / name) for name in changes.remove]):
                    _quiet(session, ["sh", "-c", _REMOVE_SCRIPT, "xpcargo-remove", *chunk])
                removed += len(changes.remove)
            if changes.send:
                with tempfile.NamedTemporaryFile(suffix=".tar") as archive:
                    sync.write_tar(
                        archive,
                        selection=synced.selection,
                        top=path.name,
                        names=changes.send,
                        owner=(int(uid or 0), int(gid or 0)),
                    )
                    archive.flush()
                    sent += archive.tell()
                    session.put_archive(path.parent, Path(archive.name))
                files += sum(1 for name in changes.send if changes.manifest[name].kind == "f")
                if item.known.entries:
                    # Changed files get the engine's time, not this machine's: Cargo compares a source's mtime with
                    # the time of its last build there, and a clock behind the engine's would hide the change (a
                    # file reset to this machine's copy too).
                    changed = [str(path / n) for n in changes.send if changes.manifest[n].kind == "f"]
                    for chunk in _chunks(changed):
                        _quiet(session, ["touch", "-c", "--", *chunk])
            # The tree as this sync left it: what the next listing must find.
            item.manifest.save(item.created, changes.manifest, _list(session, [tree]).get(0, {}))
    return Pushed(files=files, removed=removed, bytes=sent)


def _chunks(paths: Sequence[str], limit: int = 256 << 10) -> Iterator[list[str]]:
    """Argument lists well under Linux's limit for one command."""
    chunk: list[str] = []
    size = 0
    for path in paths:
        if chunk and size + len(path) > limit:
            yield chunk
            chunk, size = [], 0
        chunk.append(path)
        size += len(path) + 1
    if chunk:
        yield chunk


def _quiet(session: Session, argv: Sequence[str]) -> None:
    errors = bytearray()
    code = session.run(argv, on_stdout=lambda _: None, on_stderr=errors.extend)
    if code != 0:
        raise EngineError(
            f"could not update a volume on the engine: `{argv[0]}` exited with {code}: "
            + errors.decode(errors="replace").strip()[:300]
        )


# --- the way back ---------------------------------------------------------------------------------------------------


def _wanted_back(messages: Iterable[Mapping[str, Any]], target_dir: Path) -> list[Path]:
    """What the host needs of a build that ran on the engine: the final artifacts Cargo named (binaries, shared and
    static libraries, test executables) and each build script's run directory (its `output`, which the report reads,
    and its OUT_DIR, where the report says a library came from)."""
    paths: dict[Path, None] = {}
    for message in messages:
        reason = message.get("reason")
        if reason == "compiler-artifact":
            paths.update(dict.fromkeys(artifact.path for artifact in artifacts.named(message)))
        elif reason == "build-script-executed" and isinstance(message.get("out_dir"), str):
            paths[Path(message["out_dir"]).parent] = None
    return [path for path in paths if path.is_absolute() and path.is_relative_to(target_dir) and path != target_dir]


def _write(stream: IO[bytes], chunk: bytes) -> None:
    stream.write(chunk)


def _pull(session: Session, remote: RemoteWorkspace, paths: Sequence[Path], reporter: Reporter) -> sync.Received:
    """Copy ``paths`` (files or directories, in the target dir or the workspace's Cargo.lock) back to the host where
    the host's copy differs: one command to list them, one more to send what differs."""
    if not paths:
        return sync.Received()
    roots = (remote.target_dir, remote.lock_file.parent)
    listing = bytearray()
    code = session.run(
        ["sh", "-c", sync.LIST_SCRIPT, "xpcargo-list", *(str(p) for p in paths)],
        on_stdout=listing.extend,
        on_stderr=lambda _: None,
    )
    if code != 0:
        return sync.Received()
    asked = [path for path in paths if path.is_relative_to(remote.target_dir) or path == remote.lock_file]
    wanted = sync.stale(sync.read_listing(bytes(listing)), roots, asked)
    if not wanted:
        return sync.Received()
    with tempfile.TemporaryFile() as archive:
        errors = bytearray()
        code = session.run(
            # Hard links as files: the way back takes regular files only.
            ["tar", "--hard-dereference", "-cPf", "-", "--", *(str(item.path) for item in wanted)],
            on_stdout=lambda chunk: _write(archive, chunk),
            on_stderr=errors.extend,
        )
        archive.seek(0)
        received = sync.unpack(archive, {item.path: item for item in wanted}, remote.destinations())
    if code != 0:
        reporter.warn(f"some files did not come back from the engine: {errors.decode(errors='replace').strip()[:300]}")
    if received.refused:
        reporter.warn(f"refused {len(received.refused)} file(s) from the engine, e.g. {received.refused[0]!r}")
    reporter.status("Received", f"{received.files} file(s), {received.bytes} bytes from the engine at {remote.engine}")
    return received
