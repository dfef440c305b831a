"""Remote mode without an engine: where the engine is, what a volume is sent (by content, only what changed, never
credentials, links not followed), what comes back (only what differs, only under the target dir), and the volumes'
listing and pruning."""

from __future__ import annotations

import io
import json
import os
import socket
import subprocess
import tarfile
import time
from pathlib import Path

import pytest

from xpcargo.container import volumes
from xpcargo.container.location import locate
from xpcargo.context import Context
from xpcargo.errors import ConfigError, ProjectError
from xpcargo.pipeline import remote, run, sync
from xpcargo.pipeline.remote import RemoteWorkspace
from xpcargo.pipeline.workspace import Step

from .fake_runtime import Exec, FakeRuntime, Reply, default_script
from .projects import app_project, plan_in

X86 = "x86_64-unknown-linux-gnu"


@pytest.mark.parametrize(
    ("environ", "remote"),
    [
        ({}, False),
        ({"DOCKER_HOST": "unix:///run/user/1000/docker.sock"}, False),
        ({"DOCKER_HOST": "tcp://10.0.0.5:2375"}, True),
        ({"DOCKER_HOST": "tcp://127.0.0.1:2375"}, True),
        ({"DOCKER_HOST": "ssh://me@builder"}, True),
        ({"DOCKER_HOST": "ssh://me@builder", "XPCARGO_REMOTE": "0"}, False),
        ({"XPCARGO_REMOTE": "1"}, True),
    ],
)
def test_an_engine_is_remote_when_its_address_is_not_a_local_socket(environ: dict[str, str], remote: bool) -> None:
    assert locate({"HOME": "/nonexistent", **environ}).remote is remote


def test_the_current_docker_context_names_the_engine(tmp_path: Path) -> None:
    import hashlib  # noqa: PLC0415

    meta = tmp_path / "contexts" / "meta" / hashlib.sha256(b"arm").hexdigest()
    meta.mkdir(parents=True)
    (meta / "meta.json").write_text(json.dumps({"Endpoints": {"docker": {"Host": "ssh://arm-builder"}}}))
    (tmp_path / "config.json").write_text(json.dumps({"currentContext": "arm"}))
    address = locate({"DOCKER_CONFIG": str(tmp_path)})
    assert (address.url, address.remote, address.needs_ssh) == ("ssh://arm-builder", True, True)
    assert "docker context `arm`" in address.why
    # DOCKER_HOST wins over the context, as with the docker CLI.
    assert locate({"DOCKER_CONFIG": str(tmp_path), "DOCKER_HOST": "unix:///x.sock"}).remote is False


def test_xpcargo_remote_takes_only_0_or_1(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="XPCARGO_REMOTE"):
        Context.create(cwd=tmp_path, environ={"XPCARGO_REMOTE": "yes"})


# --- the way in ---------------------------------------------------------------------------------------------------


def _tree(root: Path) -> sync.Selection:
    (root / "src").mkdir(parents=True)
    (root / "Cargo.toml").write_text("[package]\n")
    (root / "src" / "main.rs").write_text("fn main() {}\n")
    (root / "target" / "debug").mkdir(parents=True)
    (root / "target" / "debug" / "big").write_bytes(b"x" * 4096)
    return sync.Selection(root=root, exclude=(root / "target",))


def test_a_first_sync_sends_everything_but_the_excluded_and_a_second_nothing(tmp_path: Path) -> None:
    selection = _tree(tmp_path / "ws")
    first = sync.diff(selection, {})
    assert first.send == ("Cargo.toml", "src", "src/main.rs")
    assert first.remove == ()
    second = sync.diff(selection, first.manifest)
    assert (second.send, second.remove) == ((), ())


def test_only_a_changed_file_is_sent_and_a_touched_one_is_not(tmp_path: Path) -> None:
    selection = _tree(tmp_path / "ws")
    manifest = sync.diff(selection, {}).manifest
    (tmp_path / "ws" / "src" / "main.rs").write_text("fn main() { println!() }\n")
    os.utime(tmp_path / "ws" / "Cargo.toml", (1, 1))  # touched: same content
    changes = sync.diff(selection, manifest)
    assert changes.send == ("src/main.rs",)
    # The touched file's new stat is remembered, so that it is not read again.
    assert changes.manifest["Cargo.toml"].mtime_ns == 1_000_000_000


def test_a_removed_tree_is_removed_by_its_top(tmp_path: Path) -> None:
    selection = _tree(tmp_path / "ws")
    manifest = sync.diff(selection, {}).manifest
    (tmp_path / "ws" / "src" / "main.rs").unlink()
    (tmp_path / "ws" / "src").rmdir()
    assert sync.diff(selection, manifest).remove == ("src",)


def test_links_travel_as_links_and_sockets_not_at_all(tmp_path: Path) -> None:
    selection = _tree(tmp_path / "ws")
    secret = tmp_path / "secret"
    secret.write_text("token")
    (tmp_path / "ws" / "evil").symlink_to(secret)
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(str(tmp_path / "ws" / "sock"))
    try:
        changes = sync.diff(selection, {})
    finally:
        listener.close()
    assert "sock" not in changes.manifest
    assert changes.manifest["evil"].kind == "l"
    archive = io.BytesIO()
    sync.write_tar(archive, selection=selection, top="ws", names=changes.send, owner=(1000, 1000))
    archive.seek(0)
    with tarfile.open(fileobj=archive) as opened:
        members = {member.name: member for member in opened.getmembers()}
    assert members["ws/evil"].issym()
    assert members["ws/evil"].linkname == str(secret)
    assert b"token" not in archive.getvalue()
    assert {m.uid for m in members.values()} == {1000}


# --- a build in remote mode, against the fake runtime --------------------------------------------------------------


class RemoteWorld:
    def __init__(self, tmp_path: Path, script: object = default_script) -> None:
        self.root = app_project(tmp_path)
        self.home = tmp_path / "cargo-home"
        self.home.mkdir()
        (self.home / "config.toml").write_text("[net]\nretry = 3\n")
        (self.home / "credentials.toml").write_text('[registry]\ntoken = "secret"\n')
        environ = {
            "HOME": str(tmp_path / "home"),
            "CARGO_HOME": str(self.home),
            "XPCARGO_CACHE_DIR": str(tmp_path / "cache"),
            "XPCARGO_REMOTE": "1",
            "CARGO_HTTP_CAINFO": str(tmp_path / "ca.pem"),
        }
        (tmp_path / "ca.pem").write_text("-----BEGIN CERTIFICATE-----\n")
        self.context = Context.create(cwd=self.root, environ=environ)
        self.runtime = FakeRuntime(script=script)  # type: ignore[arg-type]
        spec = self.context.host.target(X86, self.context.project_config(self.root))
        self.runtime.images.add(self.context.host.image_plan(spec).reference)

    def build(self) -> int:
        build_plan = plan_in(self.context, "build", X86, [])
        return run.execute(
            self.context.host,
            build_plan,
            runtime=self.runtime,
            reporter=self.context.host.reporter(),
            write_stdout=lambda _: None,
        ).code

    def sent(self) -> list[str]:
        return [name for _, names, _ in self.runtime.archives for name in names]


def test_a_remote_build_mounts_volumes_at_the_host_paths_and_binds_nothing(tmp_path: Path) -> None:
    world = RemoteWorld(tmp_path)
    assert world.build() == 0
    for request in world.runtime.started:
        assert all(mount.volume is not None for mount in request.mounts), request.mounts
        assert request.hidden == ()
    build = world.runtime.started[-1]
    by_path = {mount.path: mount for mount in build.mounts}
    assert by_path[world.root].read_only is False
    assert by_path[world.root / "target"].read_only is False
    assert by_path[world.home].read_only is True
    assert {v.labels["org.xpcargo.volume-kind"] for v in world.runtime.volumes.values()} == {
        "workspace",
        "target-dir",
        "cargo-home",
        "ca",
    }
    # CARGO_HOME's volume gets its Cargo config, never its credentials.
    assert "cargo-home/config.toml" in world.sent()
    assert not any("credentials" in name for name in world.sent())


def test_a_second_build_sends_nothing_and_starts_no_sync_container(tmp_path: Path) -> None:
    world = RemoteWorld(tmp_path)
    world.build()
    sent = len(world.runtime.archives)
    # One sync container per volume, each mounting that volume alone: the target dir's, with nothing to send, is
    # listed once, for what a later listing must find there.
    syncs = world.runtime.purposes().count("sync")
    assert (syncs, sent) == (4, 3)
    for request in world.runtime.started:
        if request.labels["org.xpcargo.session"].startswith("sync:"):
            assert len(request.mounts) == 1
    world.build()
    assert len(world.runtime.archives) == sent
    assert world.runtime.purposes().count("sync") == syncs


def test_a_changed_file_is_all_that_is_sent_and_it_gets_the_engines_time(tmp_path: Path) -> None:
    world = RemoteWorld(tmp_path)
    world.build()
    before = len(world.runtime.archives)
    (world.root / "src" / "main.rs").write_text("fn main() { let _ = 1; }\n")
    world.build()
    (archive,) = world.runtime.archives[before:]
    assert archive[0] == world.root.parent
    assert archive[1] == ("app", "app/src/main.rs")
    touches = [call.argv for call in world.runtime.execs if call.argv[:1] == ("touch",)]
    assert touches == [("touch", "-c", "--", str(world.root / "src" / "main.rs"))]


def _tar(files: dict[str, bytes]) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as archive:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), 0o755
            archive.addfile(info, io.BytesIO(data))
    return out.getvalue()


def test_artifacts_and_build_script_output_come_back_and_nothing_outside_the_target_dir(tmp_path: Path) -> None:
    root = tmp_path / "app"
    target = root / "target" / X86 / "debug"
    run_dir = target / "build" / "app-1"
    binary, output, stray = target / "app", run_dir / "output", root / "src" / "main.rs"
    asked: list[tuple[str, ...]] = []

    def script(call: Exec) -> Reply:
        if call.argv[:1] == ("cargo",) and call.command == "build":
            messages = [
                {
                    "reason": "compiler-artifact",
                    "target": {"kind": ["bin"]},
                    "executable": str(binary),
                    "filenames": [str(binary)],
                    "package_id": "app",
                },
                {"reason": "build-finished", "success": True},
            ]
            return Reply(stdout=b"".join(json.dumps(m).encode() + b"\n" for m in messages))
        if call.argv[:1] == ("sh",) and "xpcargo-list" in call.argv:
            listed = [(binary, 3), (output, 4), (stray, 5)]
            return Reply(stdout=b"".join(f"{size} 1700000000.5 {path}\0".encode() for path, size in listed))
        if call.argv[:1] == ("tar",):
            asked.append(call.argv)
            names = {str(binary): b"elf", str(output): b"out\n", str(stray): b"evil!"}
            return Reply(stdout=_tar({name: names[name] for name in call.argv[4:] if name in names}))
        return default_script(call)

    world = RemoteWorld(tmp_path, script)
    assert world.build() == 0
    assert binary.read_bytes() == b"elf"
    assert binary.stat().st_mtime_ns == 1_700_000_000_500_000_000
    # The workspace's sources never come back, whatever the container lists.
    assert stray.read_text() == "fn main() {}\n"
    assert str(stray) not in asked[0]
    # Unchanged on the host: not asked for again.
    world.build()
    assert len(asked) == 1 or str(binary) not in asked[-1]


def test_prune_removes_only_unused_volumes_of_its_own(tmp_path: Path) -> None:
    world = RemoteWorld(tmp_path)
    world.build()
    world.runtime.create_volume("someone-elses", labels={"org.xpcargo.user": str(os.getuid())})
    pruned = volumes.prune(world.runtime, manifests=tmp_path / "cache" / "volumes")
    # The warm build container still mounts three; the CA bundle's is the fetch step's alone.
    assert len(pruned.in_use) == 3
    assert [volume.labels["org.xpcargo.volume-kind"] for volume in pruned.removed] == ["ca"]
    for container in list(world.runtime.running):
        world.runtime.remove(container)
    pruned = volumes.prune(world.runtime, manifests=tmp_path / "cache" / "volumes")
    assert len(pruned.removed) == 3
    assert list(world.runtime.volumes) == ["someone-elses"]


def test_a_fetch_step_may_write_cargo_home(tmp_path: Path) -> None:
    world = RemoteWorld(tmp_path)
    build_plan = plan_in(world.context, "build", X86, [])
    fetch = {m.path: m.read_only for m in build_plan.request(Step.FETCH, "image").mounts}
    assert fetch[world.home] is False
    # The host's CA bundle reaches the fetch step, in a volume of its own, and only the fetch step.
    cainfo = build_plan.request(Step.FETCH, "image").env.get("CARGO_HTTP_CAINFO")
    assert cainfo == "/usr/local/share/xpcargo-ca/ca.pem"
    assert Path(cainfo).parent in fetch
    assert Path(cainfo).parent not in {m.path for m in build_plan.request(Step.BUILD, "image").mounts}


def test_a_path_dependency_holding_the_users_home_or_cargo_home_is_not_sent(tmp_path: Path) -> None:
    """The project's own Cargo.toml names its path dependencies: `path = "../.."` must not carry the user's home
    and CARGO_HOME (its credentials) to another machine."""
    world = RemoteWorld(tmp_path)
    (tmp_path / "Cargo.toml").write_text('[package]\nname = "dep"\nversion = "0.1.0"\nedition = "2021"\n')
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "lib.rs").write_text("")
    manifest = world.root / "Cargo.toml"
    manifest.write_text(manifest.read_text() + f'\n[dependencies]\ndep = {{ path = "{tmp_path}" }}\n')
    # Refused by the trust boundary now, before the remote plan: the directory holds HOME (and its ~/.ssh).
    with pytest.raises(ConfigError, match=r"refusing to mount .*`dependencies\.dep\.path` in .*: it reaches"):
        plan_in(world.context, "build", X86, [])
    assert world.runtime.archives == []


def test_a_file_that_cannot_come_back_is_refused_and_the_rest_comes_back(tmp_path: Path) -> None:
    target = tmp_path / "target"
    (target / "debug" / "app").mkdir(parents=True)  # a directory where the engine has a file
    listed = {
        target / "debug" / "app": sync.Listed(path=target / "debug" / "app", size=2, mtime_ns=0),
        target / "debug" / "lib.rlib": sync.Listed(path=target / "debug" / "lib.rlib", size=2, mtime_ns=0),
    }
    archive = io.BytesIO(_tar({str(target / "debug" / "app"): b"ab", str(target / "debug" / "lib.rlib"): b"cd"}))
    received = sync.unpack(archive, listed, [sync.Destination(path=target, anchor=target)])
    assert received.files == 1
    assert received.refused == [str(target / "debug" / "app")]
    assert (target / "debug" / "lib.rlib").read_bytes() == b"cd"


# --- the volume's own tree: what a command changed in it is found and reset ----------------------------------------


def _listed(tree: sync.Tree) -> dict[str, sync.Signature]:
    """The tree as the script lists it, run here (GNU find, as in the images)."""
    output = subprocess.run(["sh", "-c", sync.tree_script([tree])], capture_output=True, check=True).stdout
    return sync.read_tree(output).get(0, {})


def test_a_listing_names_every_path_but_the_skipped_and_follows_no_link(tmp_path: Path) -> None:
    root = tmp_path / "ws"
    (root / "src").mkdir(parents=True)
    (root / "src" / "main.rs").write_text("fn main() {}\n")
    (root / "target" / "debug").mkdir(parents=True)
    (root / "odd *[name]").write_text("")
    (root / "out").symlink_to(tmp_path)
    # A skipped name is matched as it is, not as a pattern.
    (root / "we*rd" / "in").mkdir(parents=True)
    (root / "weXrd").mkdir()
    listed = _listed(sync.Tree(root=root, skipped=("target", "we*rd")))
    assert sorted(listed) == ["odd *[name]", "out", "src", "src/main.rs", "weXrd"]
    assert listed["out"] == ("l", str(tmp_path))
    assert listed["src"][0] == "d"
    assert listed["src/main.rs"][:2] == ("f", "13")
    only = _listed(sync.Tree(root=root, only=("src/main.rs", "missing.toml")))
    assert sorted(only) == ["src", "src/main.rs"]


def test_a_file_rewritten_with_its_size_and_mtime_kept_is_seen_changed(tmp_path: Path) -> None:
    root = tmp_path / "ws"
    root.mkdir()
    source = root / "message.txt"
    source.write_text("hello\n")
    tree = sync.Tree(root=root)
    before = _listed(tree)
    status = source.stat()
    time.sleep(0.05)
    source.write_text("EVIL!\n")
    os.utime(source, ns=(status.st_atime_ns, status.st_mtime_ns))
    after = _listed(tree)
    assert after["message.txt"][:3] == before["message.txt"][:3]
    assert after != before


def _changes(tmp_path: Path) -> tuple[sync.Changes, dict[str, sync.Signature]]:
    """A first sync of a small tree, and the tree as it was listed after it."""
    selection = _tree(tmp_path / "ws")
    changes = sync.diff(selection, {})
    unchanged = sync.diff(selection, changes.manifest)
    return unchanged, _listed(sync.Tree(root=selection.root, skipped=("target",)))


def test_an_unchanged_volume_needs_nothing(tmp_path: Path) -> None:
    changes, tree = _changes(tmp_path)
    reconciled = sync.reconcile(changes, tree, dict(tree))
    assert (reconciled.send, reconciled.remove, reconciled.reset) == ((), (), ())


def test_what_the_host_does_not_have_is_removed_and_a_changed_file_sent_again(tmp_path: Path) -> None:
    changes, tree = _changes(tmp_path)
    listed = {
        **tree,
        ".cargo": ("d", "755", "1"),
        ".cargo/config.toml": ("f", "9", "1", "1", "2", "644"),
        "src/main.rs": ("f", "13", "1", "2", "3", "644"),
    }
    reconciled = sync.reconcile(changes, tree, listed)
    assert reconciled.remove == (".cargo",)
    assert reconciled.send == ("src/main.rs",)
    assert reconciled.reset == (".cargo", "src/main.rs")


def test_a_changed_directory_is_removed_and_sent_again_with_all_it_holds(tmp_path: Path) -> None:
    changes, tree = _changes(tmp_path)
    # Made unreadable, or replaced by a link: what it holds cannot be trusted (nor even listed).
    for changed in (("d", "0", tree["src"][2]), ("l", "/elsewhere")):
        listed = {name: signature for name, signature in tree.items() if not name.startswith("src/")}
        listed["src"] = changed
        reconciled = sync.reconcile(changes, tree, listed)
        assert reconciled.remove == ("src",)
        assert reconciled.send == ("src", "src/main.rs")


def test_a_volume_never_listed_is_sent_everything_and_cleared_of_the_rest(tmp_path: Path) -> None:
    changes, tree = _changes(tmp_path)
    reconciled = sync.reconcile(changes, None, {**tree, "stray": ("f", "1", "1", "1", "1", "644")})
    assert reconciled.send == tuple(sorted(changes.manifest))
    # Its directories too: what one holds was never seen.
    assert reconciled.remove == ("src", "stray")


def test_a_build_that_changed_the_workspace_volume_has_it_reset_before_the_next_step(tmp_path: Path) -> None:
    """Against the fake: the listing through the build's own container says the volume holds a file the host does
    not; a sync container of the workspace's volume alone removes it before Cargo runs."""
    planted: list[str] = []

    def script(call: Exec) -> Reply:
        if call.argv[:2] != ("sh", "-c") or "printf '@0" not in call.argv[2]:
            return default_script(call)
        # Each tree the script lists, by its index; the workspace's holds what was planted.
        listing = b""
        for part in call.argv[2].split("; "):
            if part.startswith("printf '@"):
                listing += part.removeprefix("printf '").split("\\")[0].encode() + b"\0"
            elif part.startswith(f"find -P {world.root} -mindepth 1"):
                for name in planted:
                    # kind, size, mtime, ctime, inode, mode, name, link: each ended by a NUL.
                    listing += b"".join(f"{field}\0".encode() for field in ("f", 9, 1, 1, 7, 644, name, ""))
        return Reply(stdout=listing)

    world = RemoteWorld(tmp_path, script)
    assert world.build() == 0
    syncs = world.runtime.purposes().count("sync")
    assert world.build() == 0
    # Nothing changed: the listing agrees, and no sync container starts.
    assert world.runtime.purposes().count("sync") == syncs
    planted.append(".cargo-planted")
    assert world.build() == 0
    removals = [call.argv for call in world.runtime.execs if call.argv[:3] == ("sh", "-c", remote._REMOVE_SCRIPT)]
    assert removals == [("sh", "-c", remote._REMOVE_SCRIPT, "xpcargo-remove", str(world.root / ".cargo-planted"))]
    # Before Cargo ran: the removal comes before this build's `cargo build`.
    commands = [call.argv[:3] for call in world.runtime.execs]
    last_build = max(index for index, argv in enumerate(commands) if argv[:2] == ("cargo", "build"))
    assert commands.index(("sh", "-c", remote._REMOVE_SCRIPT)) < last_build


# --- the way back: through no link ---------------------------------------------------------------------------------


def _one_file(path: Path) -> tuple[io.BytesIO, dict[Path, sync.Listed]]:
    return io.BytesIO(_tar({str(path): b"elf"})), {path: sync.Listed(path=path, size=3, mtime_ns=0)}


def test_a_target_dir_that_is_a_link_in_the_workspace_gets_nothing(tmp_path: Path) -> None:
    workspace, outside = tmp_path / "ws", tmp_path / "outside"
    workspace.mkdir()
    outside.mkdir()
    (workspace / "target").symlink_to(outside)
    binary = workspace / "target" / "debug" / "app"
    archive, listed = _one_file(binary)
    received = sync.unpack(archive, listed, [sync.Destination(path=workspace / "target", anchor=workspace)])
    assert (received.files, received.refused) == (0, [str(binary)])
    assert list(outside.iterdir()) == []


def test_a_link_inside_the_target_dir_is_replaced_or_refused_never_followed(tmp_path: Path) -> None:
    workspace, outside = tmp_path / "ws", tmp_path / "outside"
    (workspace / "target" / "debug").mkdir(parents=True)
    outside.mkdir()
    (outside / "keep").write_text("canary")
    (workspace / "target" / "debug" / "app").symlink_to(outside / "keep")
    (workspace / "target" / "debug" / "deps").symlink_to(outside)
    destination = sync.Destination(path=workspace / "target", anchor=workspace)
    binary, library = workspace / "target" / "debug" / "app", workspace / "target" / "debug" / "deps" / "lib.so"
    archive = io.BytesIO(_tar({str(binary): b"elf", str(library): b"so"}))
    listed = {path: sync.Listed(path=path, size=2, mtime_ns=0) for path in (binary, library)}
    received = sync.unpack(archive, listed, [destination])
    assert received.refused == [str(library)]
    assert not binary.is_symlink()
    assert binary.read_bytes() == b"elf"
    assert sorted(path.name for path in outside.iterdir()) == ["keep"]
    assert (outside / "keep").read_text() == "canary"
    # No temporary file is left beside it.
    assert sorted(path.name for path in binary.parent.iterdir()) == ["app", "deps"]


def test_a_target_dir_the_project_ships_as_a_link_is_refused_before_anything_runs(tmp_path: Path) -> None:
    world = RemoteWorld(tmp_path)
    (tmp_path / "outside").mkdir()
    (world.root / "target").symlink_to(tmp_path / "outside")
    with pytest.raises(ProjectError, match=r"is a symbolic link in the project"):
        plan_in(world.context, "build", X86, [])
    assert world.runtime.started == []


@pytest.mark.parametrize("link", ["xpcargo", "xpcargo/build-scripts", "xpcargo/build-scripts/x/debug.json"])
def test_a_link_in_xpcargos_own_directory_of_the_target_dir_is_refused(tmp_path: Path, link: str) -> None:
    """This machine writes reports and state files there: never through a link the project ships."""
    world = RemoteWorld(tmp_path)
    (tmp_path / "outside").mkdir()
    path = world.root / "target" / link
    path.parent.mkdir(parents=True, exist_ok=True)
    path.symlink_to(tmp_path / "outside")
    with pytest.raises(ProjectError, match=r"is a symbolic link in the project"):
        plan_in(world.context, "build", X86, [])


def test_cargo_lock_comes_back_after_a_build_only_when_the_host_has_none(tmp_path: Path) -> None:
    world = RemoteWorld(tmp_path)
    remote_plan = plan_in(world.context, "build", X86, []).workspace
    assert isinstance(remote_plan, RemoteWorkspace)
    lock = world.root / "Cargo.lock"
    lock.unlink(missing_ok=True)
    assert remote_plan.lock_after_build() == (lock,)
    lock.write_text("# the host's\n")
    assert remote_plan.lock_after_build() == ()


def test_a_cargo_home_not_made_yet_is_said_to_be_missing_not_a_file(tmp_path: Path) -> None:
    world = RemoteWorld(tmp_path)
    for name in ("config.toml", "credentials.toml"):
        (world.home / name).unlink()
    world.home.rmdir()
    with pytest.raises(ConfigError, match=r"does not exist") as caught:
        world.build()
    assert str(world.home) in caught.value.message
    assert "is a file" not in caught.value.message
    assert caught.value.hint is not None
    assert f"mkdir -p {world.home}" in caught.value.hint
