"""A Cargo command for a target, planned on the host before the engine is touched: what Cargo is asked, what xpcargo
adds to it, what environment each step gets, where the build's files are for the engine (``workspace``), and one
container request per step.

Planning is pure apart from reading the project's files, so everything here is tested without an engine.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import MappingProxyType

from xpcargo import resources
from xpcargo.cargo import args as cargo_args
from xpcargo.cargo.args import CargoArgs
from xpcargo.cargo.project import Project, discover, refuse_linked_target_dir
from xpcargo.config import trust
from xpcargo.config.links import LinksOverrides
from xpcargo.config.targets import (
    ProjectConfig,
    TargetSpec,
    check_triple,
    link_archive_flags,
    load_project_config,
    target_feature_flags,
    wasi_emulated_flags,
)
from xpcargo.container import sockets
from xpcargo.container.location import EngineAddress
from xpcargo.container.session import invoking_user
from xpcargo.container.spec import TARGET_LABEL, WARM_LIFETIME, WORKSPACE_LABEL, ContainerRequest, Mount
from xpcargo.context import Host
from xpcargo.errors import ConfigError, ProjectError
from xpcargo.image import lockfile
from xpcargo.image.plan import ImagePlan, plan_image
from xpcargo.image.recipe import load_recipe
from xpcargo.pipeline import compile_cache, environment, floor, git_checkout, reproducible, workspace
from xpcargo.pipeline.floor import Sysroot
from xpcargo.pipeline.reproducible import Reproducibility
from xpcargo.pipeline.workspace import LocalWorkspace, Step, Workspace

# Where HOME points for a user that has no home in the image: writable by anyone, gone with the container.
CONTAINER_HOME = "/tmp"  # noqa: S108 - inside the container, which is private and short-lived


@dataclass(frozen=True, kw_only=True)
class Invocation:
    """What Cargo is asked, of which project, for which target."""

    command: str
    args: tuple[str, ...]
    parsed: CargoArgs
    spec: TargetSpec
    project: Project
    # The JSON `--message-format` xpcargo adds, when the user chose none (in colour when the terminal has it).
    injected_format: str | None

    @property
    def profile_dir(self) -> str:
        return cargo_args.profile_dir_name(self.parsed.profile)

    @property
    def injects_json(self) -> bool:
        """Whether xpcargo chooses the message format: when the user did not choose one."""
        return self.injected_format is not None

    @property
    def reads_messages(self) -> bool:
        return self.injects_json or "json" in (self.parsed.message_format or "")

    def manifest_args(self) -> list[str]:
        args = ["--manifest-path", self.parsed.manifest_path] if self.parsed.manifest_path else []
        return [*args, "--locked"] if self.parsed.locked else args


@dataclass(frozen=True, kw_only=True)
class Variables:
    """The environment of each step."""

    # The environment of the build's (and the shell's) container.
    env: Mapping[str, str]
    # Registry tokens and proxy settings: given to the fetch step's commands only, never to a container.
    credentials: Mapping[str, str]
    # The fetch step's environment: what Cargo needs to download, none of the project's `env`, and the image's own
    # rustc in place of any the project's Cargo config names; and the `--config` arguments that blank its `[env]`.
    fetch_env: Mapping[str, str]
    fetch_config: tuple[str, ...]
    # The terminal policy, for the steps whose output xpcargo shows.
    terminal_env: Mapping[str, str]


@dataclass(frozen=True, kw_only=True)
class Flags:
    """What xpcargo adds to the user's own settings, and the Cargo config files (in ``state_dir``) that carry it."""

    state_dir: Path
    links: LinksOverrides
    overrides_file: Path | None
    # Reproducible mode (`dist`, `verify`, `--reproducible`), and the Cargo config file that adds rustflags (its
    # remapping, the glibc floor's sysroot).
    reproducible: Reproducibility | None = None
    remaps: tuple[tuple[Path, str], ...] = ()
    rustflags_file: Path | None = None
    rustflags_config: str | None = None
    # The newest glibc the target's artifacts may need, and the older libc that meets it when it is lower than the
    # image's own (downloaded and unpacked by the run, before the first container).
    glibc_floor: str | None = None
    sysroot: Sysroot | None = None

    def config_files(self) -> tuple[Path, ...]:
        """The Cargo config files xpcargo writes for the build."""
        return tuple(path for path in (self.overrides_file, self.rustflags_file) if path is not None)


@dataclass(frozen=True, kw_only=True)
class Warm:
    """Seconds the build's container stays up for the next command (0: one container per command), at most how
    long it serves, and where the locks of the warm containers' slots are."""

    keep: int = 0
    lifetime: int = WARM_LIFETIME
    locks: Path | None = None


@dataclass(frozen=True, kw_only=True)
class BuildPlan:
    """Everything decided before the engine is touched."""

    invocation: Invocation
    variables: Variables
    flags: Flags
    # The target's image, planned from the same reading of its recipe as the floor; None when the project names an
    # image of its own.
    image_plan: ImagePlan | None
    # The engine the target builds on (``Host.engine_for``), and the build's files as that engine sees them.
    engine: EngineAddress
    workspace: Workspace
    warm: Warm = Warm()
    # sccache in the build step (and the shell), or why not.
    compile_cache: compile_cache.Choice
    user: str = field(default_factory=invoking_user)

    @property
    def triple(self) -> str:
        return self.invocation.spec.triple

    @property
    def spec(self) -> TargetSpec:
        return self.invocation.spec

    @property
    def project(self) -> Project:
        return self.invocation.project

    def cargo_argv(self) -> list[str]:
        invocation, flags = self.invocation, self.flags
        argv = ["cargo", invocation.command, "--target", self.triple]
        if invocation.injected_format is not None:
            argv.append(f"--message-format={invocation.injected_format}")
        argv += [arg for path in flags.config_files() for arg in ("--config", str(path))]
        if flags.reproducible is not None and not cargo_args.parse_cargo_args(invocation.args).locked:
            argv.append("--locked")
        return [*argv, *invocation.args]

    def command_argv(self) -> list[str]:
        """What the build container runs: the Cargo command, under the compile cache's shell (which stops sccache's
        server at the end) when there is one, or under the reproducible umask (which never has one)."""
        if self.flags.reproducible is not None:
            return reproducible.umask_argv(self.cargo_argv(), self.flags.reproducible.variation.umask)
        if isinstance(self.compile_cache, compile_cache.CompileCache):
            return self.compile_cache.wrapped(self.cargo_argv())
        return self.cargo_argv()

    def request(self, step: Step, image: str) -> ContainerRequest:
        """The container for ``step``. Only the fetch step has a network and trusts the host's CAs; what each step
        mounts is the workspace's to say."""
        settings = self.flags.reproducible
        user_home = settings.variation.home if settings is not None else CONTAINER_HOME
        # The fetch step runs none of the project's code, so it gets none of the project's environment either.
        variables = self.variables
        env = {**(variables.fetch_env if step is Step.FETCH else variables.env), "HOME": user_home}
        if step is not Step.FETCH:
            env["CARGO_NET_OFFLINE"] = "true"
        elif self.workspace.ca_bundle is not None:
            env["CARGO_HTTP_CAINFO"] = str(self.workspace.ca_bundle)
        if step is not Step.SHELL:
            env.update(variables.terminal_env)
        mounts = self.workspace.mounts(step)
        cache = self.compile_cache
        # The fetch step runs none of the project's code and never the cache; the build and the shell (which share
        # a warm container, and so its mounts) have it.
        if step is not Step.FETCH and isinstance(cache, compile_cache.CompileCache):
            env.update(cache.environment(env))
            mounts = (*mounts, *cache.mounts())
        # The build and the shell share a warm container; the fetch step, with its network and its credentials,
        # and a reproducible build, which owes nothing to an earlier command, have one of their own.
        warm = step is not Step.FETCH and settings is None
        return ContainerRequest(
            image=image,
            user=self.user,
            workdir=self.project.cwd,
            mounts=mounts,
            env=MappingProxyType(env),
            labels=MappingProxyType({WORKSPACE_LABEL: str(self.project.workspace_root), TARGET_LABEL: self.triple}),
            network="host" if step is Step.FETCH else "none",
            hidden=self.workspace.hidden(),
            keep_warm=self.warm.keep if warm else 0,
            warm_lifetime=self.warm.lifetime,
            # The project's code runs here: nothing of a command outlives it, and the image cannot be changed.
            confined=True,
            scratch=tuple(dict.fromkeys((Path(CONTAINER_HOME), Path(user_home)))),
        )


def project_at(host: Host, cwd: Path, args: Sequence[str]) -> Project:
    """The project that ``args`` name, from ``cwd`` (a --manifest-path is relative to it)."""
    return discover(cwd, cargo_args.parse_cargo_args(args), environ=host.environ)


def find_project(host: Host, cwd: Path, triple: str, args: Sequence[str]) -> Project:
    """The project that ``args`` name, from ``cwd``, for ``triple``. Outside a project only the shipped table can
    know the target: a typo in it is the first thing to say."""
    check_triple(triple)
    try:
        return project_at(host, cwd, args)
    except ProjectError:
        host.toolchains.target(triple)
        raise


def plan(
    host: Host,
    project: Project,
    command: str,
    triple: str,
    args: Sequence[str],
    *,
    reproducible_settings: Reproducibility | None = None,
) -> BuildPlan:
    check_triple(triple)
    project_config = load_project_config(project.workspace_root)
    # Read with the project's configuration, as one: a broken lock file is an error whatever the target uses.
    lock = lockfile.load(project.workspace_root).targets.get(triple)
    # Before anything is mounted or any engine named: what the checkout's settings reach outside it.
    boundary = trust.require(trust_boundary(host, project, project_config), triple)
    # A `target` the project ships as a link would lead the output (and the report this machine writes) elsewhere.
    refuse_linked_target_dir(project.workspace_root, project.target_dir)
    spec = host.target(triple, project_config)
    build_host = host.host_target(project_config)
    # Cargo merges the `--config` file xpcargo writes into the project's own config key by key; so does this.
    links = spec.links.over(project.links_overrides(triple))
    asked = _asked_mounts(spec, links)
    passed = environment.passthrough_environment(host.environ, spec)
    host_env = {name: value for name, value in passed.items() if not environment.is_credential(name)}
    places = _places(host, project)
    env = {**host_env, **environment.toolchain_environment(spec, build_host), **places}
    glibc, image_plan = _floor_and_image(host, spec, lock)
    flags, env = _flags(project, spec, links, glibc, env, settings=reproducible_settings)
    if glibc.sysroot is not None:
        asked.append((glibc.sysroot.directory, f"the glibc {glibc.version} floor"))
    engine = host.engine_for(spec)
    binds = _mounts(project, spec, asked, engine=engine, never=boundary.never)
    chosen = _workspace(host, project, triple, binds, engine=engine, state_files=flags.config_files())
    cache = _compile_cache(
        host,
        project,
        spec,
        args,
        env=env,
        flags=flags,
        remote=engine.remote,
        never=boundary.never,
        kept=(*host_env, *spec.env),
    )
    return BuildPlan(
        invocation=_invocation(host, project, spec, command, args, locked=reproducible_settings is not None),
        variables=Variables(
            env=MappingProxyType(env),
            credentials=MappingProxyType({n: v for n, v in passed.items() if environment.is_credential(n)}),
            fetch_env=_fetch_env({**host_env, **places}, own_image=not spec.image),
            fetch_config=_fetch_config(project),
            terminal_env=MappingProxyType(host.terminal.cargo_env()),
        ),
        flags=flags,
        image_plan=image_plan,
        engine=engine,
        workspace=chosen,
        warm=Warm(
            keep=host.settings.keep_warm, lifetime=host.settings.warm_lifetime, locks=host.settings.cache_dir / "warm"
        ),
        compile_cache=cache,
    )


def _workspace(
    host: Host,
    project: Project,
    triple: str,
    binds: tuple[Mount, ...],
    *,
    engine: EngineAddress,
    state_files: Iterable[Path],
) -> Workspace:
    """The side of the seam for ``engine``: volumes when it cannot see this machine's files, else ``binds`` as they
    are, with the checkout's git dirs read-only (a remote engine builds in its own copy of the workspace, whose
    `.git` the host's git never reads). One fetch record per workspace, target dir and target: two checkouts, or two
    target dirs, never share one."""
    ca_bundle = environment.host_ca_bundle(host.environ)
    identity = f"{project.workspace_root}\0{project.target_dir}\0{triple}"
    if not engine.remote:
        return LocalWorkspace(
            binds=git_checkout.read_only_git(binds, project.workspace_root),
            cargo_home=project.cargo_home,
            ca_bundle=ca_bundle,
            fetch_record=workspace.fetch_record(host.settings.cache_dir, identity),
        )
    # Volumes, the sync and the image send are a remote engine's only: a local build does not import them.
    from xpcargo.pipeline.remote import plan_remote  # noqa: PLC0415

    home = host.environ.get("HOME")
    return plan_remote(
        project,
        binds,
        engine=engine.url,
        cache_dir=host.settings.cache_dir,
        state_files=state_files,
        ca_bundle=ca_bundle,
        # A remote engine's CARGO_HOME is a volume of its own, which a local fetch did not fill.
        fetch_record=workspace.fetch_record(host.settings.cache_dir, f"{identity}\0{engine.url}"),
        user_home=Path(home).resolve() if home else None,
    )


def _compile_cache(
    host: Host,
    project: Project,
    spec: TargetSpec,
    args: Sequence[str],
    *,
    env: Mapping[str, str],
    flags: Flags,
    remote: bool,
    never: trust.NeverMounted,
    kept: Iterable[str],
) -> compile_cache.Choice:
    """The build's compile cache (``compile_cache.choose``), a directory that may be mounted."""
    cache = compile_cache.choose(
        enabled=host.settings.compile_cache,
        cache_dir=host.settings.cache_dir,
        shared=host.settings.shared_compile_cache,
        workspace_root=project.workspace_root,
        spec=spec,
        state_dir=flags.state_dir,
        env=env,
        config_files=project.cargo_config_files,
        args=args,
        reproducible=flags.reproducible is not None,
        remote=remote,
        kept_variables=kept,
    )
    if isinstance(cache, compile_cache.CompileCache):
        trust.check_mount(cache.directory, "the compile cache (XPCARGO_CACHE)", never=never, own=True)
    return cache


def _invocation(
    host: Host, project: Project, spec: TargetSpec, command: str, args: Sequence[str], *, locked: bool
) -> Invocation:
    parsed = cargo_args.parse_cargo_args(args)
    # A reproducible build is `--locked` (``BuildPlan.cargo_argv``), its fetch step too.
    parsed = replace(parsed, locked=True) if locked else parsed
    injected = None
    if parsed.message_format is None:
        injected = "json-diagnostic-rendered-ansi" if host.terminal.color else "json"
    return Invocation(
        command=command, args=tuple(args), parsed=parsed, spec=spec, project=project, injected_format=injected
    )


def _floor_and_image(
    host: Host, spec: TargetSpec, lock: lockfile.LockedImage | None
) -> tuple[floor.Floor, ImagePlan | None]:
    """The target's glibc floor and its image plan (locked as the project's lock file says), from one reading of its
    recipe."""
    recipe = load_recipe(
        spec.recipe,
        directory=host.settings.recipes_dir,
        referenced_from=f"target {spec.triple}",
        parsed=host.settings.parsed_dir,
    )
    glibc = floor.floor_of(spec, recipe, cache_dir=host.settings.cache_dir)
    if spec.image:
        return glibc, None
    return glibc, plan_image(spec, recipe, build_arch=host.build_platform.debian_arch, lock=lock)


def _flags(
    project: Project,
    spec: TargetSpec,
    links: LinksOverrides,
    glibc: floor.Floor,
    env: Mapping[str, str],
    *,
    settings: Reproducibility | None,
) -> tuple[Flags, dict[str, str]]:
    """The flags added to the user's own (the reproducible mode's path remapping, the target's `target-features`,
    `wasi-emulated` and `link-archives`, the glibc floor's sysroot), and ``env`` with them merged in."""
    merged = dict(env)
    remaps = remapping(project) if settings is not None else ()
    rust_flags = reproducible.rustc_remap_flags(remaps)
    rust_flags += target_feature_flags(spec.target_features)
    c_flags = reproducible.c_remap_flags(remaps)
    emulated_c, emulated_rust = wasi_emulated_flags(spec.wasi_emulated)
    rust_flags += emulated_rust
    rust_flags += link_archive_flags(spec.link_archives)
    c_flags += emulated_c
    if glibc.sysroot is not None:
        rust_flags += glibc.sysroot.rust_flags()
        c_flags += glibc.sysroot.c_flags()
    rustflags = None
    if rust_flags:
        rustflags = reproducible.merge_rustflags(
            rust_flags, environ=merged, config_files=project.cargo_config_files, triple=spec.triple
        )
        for name in rustflags.removed:
            merged.pop(name, None)
        merged.update(rustflags.env)
    if c_flags:
        # Not for target features alone: a CFLAGS_<target> set here would hide one of the target's `env` table.
        merged.update(reproducible.merge_c_flags(c_flags, environ=merged, triple=spec.triple))
    if settings is not None:
        merged.update(reproducible.environment(settings))
    state_dir = project.target_dir / "xpcargo" / spec.triple
    flags = Flags(
        state_dir=state_dir,
        links=links,
        overrides_file=state_dir / "links-overrides.toml" if spec.links else None,
        reproducible=settings,
        remaps=remaps,
        rustflags_file=state_dir / "rustflags.toml" if rustflags is not None and rustflags.config else None,
        rustflags_config=rustflags.config if rustflags is not None else None,
        glibc_floor=glibc.version,
        sysroot=glibc.sysroot,
    )
    return flags, merged


def _places(host: Host, project: Project) -> dict[str, str]:
    """Where Cargo's files are, and the user's registries where the user's config put them (a variable the user
    set wins, as it does for Cargo)."""
    pinned = environment.pinned_registries(project.cargo_config_files, project.cargo_home)
    return {
        **{name: index for name, index in pinned.items() if name not in host.environ},
        "USER": host.environ.get("USER", "xpcargo"),
        "CARGO_HOME": str(project.cargo_home),
        "CARGO_TARGET_DIR": str(project.target_dir),
    }


def _fetch_env(cargo_env: Mapping[str, str], *, own_image: bool) -> Mapping[str, str]:
    """The fetch step's environment: the user's variables and where Cargo's files are (none of the `env` tables),
    and the image's rustc with no wrapper and no flags in place of what the project's Cargo config names."""
    # xpcargo's images all have Debian's bundle; an image of the user's may not (the host's, when there is one,
    # is mounted over this by ``request``).
    bundle = {"CARGO_HTTP_CAINFO": environment.IMAGE_CA_BUNDLE} if own_image else {}
    return MappingProxyType({**cargo_env, **bundle, **environment.FETCH_OVERRIDES})


def _fetch_config(project: Project) -> tuple[str, ...]:
    """The fetch step's `--config` arguments, which blank the project's `[env]`; refused first when the project's
    Cargo config names a credential provider, which that step would run with the user's tokens."""
    project_config = environment.project_config_files(
        project.cargo_config_files, cargo_home=project.cargo_home, checkout=project.checkout
    )
    environment.check_credential_providers(project_config)
    return tuple(environment.fetch_config_args(project_config))


def _asked_mounts(spec: TargetSpec, links: LinksOverrides) -> list[tuple[Path, str]]:
    """The host paths the target's `mounts` and its `links` overrides ask for, with what asked for each."""
    extra: list[tuple[Path, str]] = []
    for configured in spec.mounts:
        path = Path(os.path.normpath(configured))
        if not path.exists():
            raise ConfigError(
                f"the mount `{path}` configured for {spec.triple} does not exist on this machine",
                hint="create it or remove it from `mounts` in xpcargo.toml",
            )
        extra.append((path, "`mounts`"))
    extra += [(path, "a `links` override") for path in links.host_paths() if path.exists()]
    return extra


def _mounts(
    project: Project,
    spec: TargetSpec,
    extra: Iterable[tuple[Path, str]],
    *,
    engine: EngineAddress,
    never: trust.NeverMounted,
) -> tuple[Mount, ...]:
    return (
        *mounts_for(project, extra, engine_socket=sockets.engine_socket(engine.url), never=never),
        *_tool_mounts(spec),
    )


def _tool_mounts(spec: TargetSpec) -> tuple[Mount, ...]:
    """xpcargo's own files that a foreign target's tools read (its runner, the CMake toolchain file), or that a
    target names as a tool (a musl target's C++ compiler, which says there is none), read-only."""
    tools = (spec.cc, spec.cxx, spec.ar, spec.linker)
    if not spec.runner and not spec.sysroot and not any(environment.SHARE_DIR in tool for tool in tools):
        return ()
    return (Mount(path=Path(environment.SHARE_DIR), source=resources.share_dir(), read_only=True),)


def remapping(project: Project) -> tuple[tuple[Path, str], ...]:
    """The host paths of ``project`` a reproducible build maps to fixed names: one list for the build's flags and
    for what the provenance says of them."""
    return reproducible.remapping(
        workspace_root=project.workspace_root,
        target_dir=project.target_dir,
        cargo_home=project.cargo_home,
        outside=project.outside_paths,
    )


def trust_boundary(host: Host, project: Project, project_config: ProjectConfig) -> trust.Boundary:
    """The project's checkout and what its manifests, Cargo config files and xpcargo settings ask of the host
    beyond it: one reading, for `plan` and for `xpcargo trust`, so that both digest the same settings."""
    return trust.Boundary.of(
        checkout=project.checkout,
        asks=(*project.asks, *trust.settings_asks(project_config)),
        environ=host.environ,
        cargo_home=project.cargo_home,
        cache_dir=host.settings.cache_dir,
    )


def reproducibility(host: Host, project: Project, triple: str) -> Reproducibility:
    """The settings of a reproducible build of ``project``: its SOURCE_DATE_EPOCH above all. ``triple`` (one of the
    targets built) is for the hint when the project has no lock file."""
    epoch, source = reproducible.source_date_epoch(host.environ, project.workspace_root)
    lock = project.workspace_root / "Cargo.lock"
    # The build adds --locked, with which Cargo refuses to write a missing lock file; its message blames a flag the
    # user never passed, and would come from inside a copy of the workspace (verify, dist).
    if not lock.is_file():
        raise ProjectError(
            f"release builds (dist, verify, --reproducible) are locked (Cargo's --locked, added by xpcargo), and "
            f"{project.workspace_root} has no Cargo.lock",
            hint=f"create it with `xpcargo shell --target {triple} -- cargo generate-lockfile` (or `cargo "
            "generate-lockfile` on the host), commit it, and run again",
        )
    return Reproducibility(source_date_epoch=epoch, epoch_source=source)


def mounts_for(
    project: Project,
    extra_read_only: Iterable[tuple[Path, str]] = (),
    *,
    engine_socket: Path,
    never: trust.NeverMounted | None = None,
) -> tuple[Mount, ...]:
    """The host directories the container needs, each at its own absolute path, nested ones folded away; none that
    ``never`` (the boundary's places never mounted) or the engine's socket forbids."""
    never = never or trust.NeverMounted.of({}, cargo_home=project.cargo_home, checkout=project.checkout)
    never = replace(never, sockets=(*never.sockets, Path(os.path.normpath(engine_socket)).resolve()))
    # Lexically normalised (not resolved: a symlink must stay visible at its own path), so that `a/../b` is
    # recognised as `b` when mounts are folded into each other.
    # Each with what asked for it, and whether it is xpcargo's own (the user's choice, not the project's: no search
    # for sockets in it, and it may hold CARGO_HOME).
    wanted: list[tuple[Mount, str, bool]] = [
        (Mount(path=project.workspace_root), "the workspace", True),
        (Mount(path=project.target_dir), "the target dir", True),
        (Mount(path=project.cargo_home), "CARGO_HOME", True),
        # Outside the workspace, nothing is Cargo's to write: read-only.
        *((Mount(path=path, read_only=True), "a path dependency", False) for path in project.outside_paths),
        # The file alone, not its directory: `~/.cargo` holds the registry tokens too.
        *((Mount(path=path, read_only=True), "Cargo's config", True) for path in project.cargo_config_files),
        *((Mount(path=Path(os.path.normpath(path)), read_only=True), why, False) for path, why in extra_read_only),
    ]
    # The working directory is where relative arguments (a --manifest-path, say) are resolved. Not one never mounted
    # (HOME, with --manifest-path): the engine makes it as the parent of the mounts below it, which is enough for
    # arguments that lead into them.
    outside_every_mount = not any(project.cwd.is_relative_to(mount.path) for mount, _, _ in wanted)
    if outside_every_mount and never.refusal(project.cwd, own=True) is None:
        wanted.append((Mount(path=project.cwd, read_only=True), "the working directory", True))
    for mount, why, own in wanted:
        trust.check_mount(mount.path, why, never=never, own=own)
    chosen: list[Mount] = []
    # A writable mount wins over a read-only one of the same tree; a parent mount covers its children.
    for mount, _, _ in sorted(wanted, key=lambda item: (len(item[0].path.parts), item[0].read_only)):
        if any(mount.path.is_relative_to(kept.path) and (kept.read_only <= mount.read_only) for kept in chosen):
            continue
        chosen.append(mount)
    return tuple(chosen)
