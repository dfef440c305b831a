"""A Cargo command for a target, planned on the host before the engine is touched: what Cargo is asked, what is
mounted where, what environment each step gets, and one container request per step.

Planning is pure apart from reading the project's files, so everything here is tested without an engine.
"""

from __future__ import annotations

import enum
import hashlib
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import MappingProxyType

from xpcargo import resources
from xpcargo.cargo import args as cargo_args
from xpcargo.cargo.args import CargoArgs
from xpcargo.cargo.links import LinksOverrides
from xpcargo.cargo.project import Project, refuse_linked_target_dir
from xpcargo.config import trust
from xpcargo.config.targets import ProjectConfig, TargetSpec, check_triple
from xpcargo.container import sockets
from xpcargo.container.location import EngineAddress
from xpcargo.container.session import invoking_user
from xpcargo.container.spec import TARGET_LABEL, WARM_LIFETIME, WORKSPACE_LABEL, ContainerRequest, Mount
from xpcargo.context import Context
from xpcargo.errors import ConfigError, ProjectError
from xpcargo.image.plan import ImagePlan, plan_image
from xpcargo.image.recipe import load_recipe
from xpcargo.pipeline import environment, floor, git_checkout, reproducible
from xpcargo.pipeline.floor import Sysroot
from xpcargo.pipeline.remote import RemotePlan, plan_remote
from xpcargo.pipeline.reproducible import Reproducibility

# Where HOME points for a user that has no home in the image: writable by anyone, gone with the container.
CONTAINER_HOME = "/tmp"  # noqa: S108 - inside the container, which is private and short-lived


# What Cargo keeps registry tokens in, under CARGO_HOME (the old name without extension, too).
_CREDENTIALS_FILES = ("credentials.toml", "credentials")


class Step(enum.Enum):
    FETCH = "fetch"  # `cargo fetch` and `cargo metadata`, on the host network
    BUILD = "build"  # the Cargo command itself, with no network
    SHELL = "shell"  # `xpcargo shell`: a build's container, with a command of the user's


@dataclass(frozen=True, kw_only=True)
class BuildPlan:
    """Everything decided before the engine is touched."""

    command: str
    spec: TargetSpec
    project: Project
    args: tuple[str, ...]
    parsed: CargoArgs
    mounts: tuple[Mount, ...]
    # The environment of every step's container.
    env: Mapping[str, str]
    # Registry tokens and proxy settings: given to the fetch step's commands only, never to a container.
    credentials: Mapping[str, str]
    # The fetch step's environment: what Cargo needs to download, none of the project's `env`, and the image's own
    # rustc in place of any the project's Cargo config names; and the `--config` arguments that blank its `[env]`.
    fetch_env: Mapping[str, str]
    fetch_config: tuple[str, ...]
    terminal_env: Mapping[str, str]
    color: bool
    links: LinksOverrides
    overrides_file: Path | None
    state_dir: Path
    # What the last fetch saw: in xpcargo's cache, not the target dir, so that `cargo clean` does not forget it.
    fetch_record: Path
    ca_bundle: Path | None
    # Seconds the build's container stays up for the next command (0: one container per command), and where the
    # locks of the warm containers' slots are.
    keep_warm: int = 0
    warm_lifetime: int = WARM_LIFETIME
    warm_locks: Path | None = None
    user: str = field(default_factory=invoking_user)
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
    # The target's image, planned from the same reading of its recipe as the floor; None when the project names an
    # image of its own.
    image_plan: ImagePlan | None = None
    # The engine the target builds on (``Context.engine_for``), and, when it cannot see this machine's files, the
    # volumes that stand in for the mounts.
    engine: EngineAddress
    remote: RemotePlan | None = None

    @property
    def triple(self) -> str:
        return self.spec.triple

    @property
    def profile_dir(self) -> str:
        return cargo_args.profile_dir_name(self.parsed.profile)

    @property
    def injects_json(self) -> bool:
        """Whether xpcargo chooses the message format: when the user did not choose one."""
        return self.parsed.message_format is None

    @property
    def reads_messages(self) -> bool:
        return self.injects_json or "json" in (self.parsed.message_format or "")

    @property
    def hidden(self) -> tuple[Path, ...]:
        # CARGO_HOME/bin holds rustup's proxies and host-built tools; Cargo looks there first for `cargo-clippy`
        # and other subcommands, and would run the host's rustup instead of the image's clippy.
        bin_dir = self.project.cargo_home / "bin"
        return (bin_dir,) if bin_dir.is_dir() else ()

    def cargo_argv(self) -> list[str]:
        argv = ["cargo", self.command, "--target", self.triple]
        if self.injects_json:
            argv.append("--message-format=json-diagnostic-rendered-ansi" if self.color else "--message-format=json")
        if self.overrides_file is not None:
            argv += ["--config", str(self.overrides_file)]
        if self.rustflags_file is not None:
            argv += ["--config", str(self.rustflags_file)]
        if self.reproducible is not None and not cargo_args.parse_cargo_args(self.args).locked:
            argv.append("--locked")
        return [*argv, *self.args]

    def command_argv(self) -> list[str]:
        """What the build container runs: the Cargo command, under the reproducible umask when there is one."""
        if self.reproducible is None:
            return self.cargo_argv()
        return reproducible.umask_argv(self.cargo_argv(), self.reproducible.variation.umask)

    def manifest_args(self) -> list[str]:
        args = ["--manifest-path", self.parsed.manifest_path] if self.parsed.manifest_path else []
        return [*args, "--locked"] if self.parsed.locked else args

    def request(self, step: Step, image: str) -> ContainerRequest:
        """The container for ``step``. Only the fetch step has a network, trusts the host's CAs, may write to
        CARGO_HOME and sees its credentials files; the build reads the crates it fetched and nothing else there."""
        user_home = self.reproducible.variation.home if self.reproducible is not None else CONTAINER_HOME
        # The fetch step runs none of the project's code, so it gets none of the project's environment either.
        mounts, env = self.mounts, {**(self.fetch_env if step is Step.FETCH else self.env), "HOME": user_home}
        if self.remote is not None:
            # Volumes at the mounts' paths; CARGO_HOME's credentials and the host's CA bundle are not in them.
            mounts = self.remote.mounts(fetch=step is Step.FETCH)
            if step is not Step.FETCH:
                env["CARGO_NET_OFFLINE"] = "true"
            elif self.remote.ca_bundle is not None:
                env["CARGO_HTTP_CAINFO"] = str(self.remote.ca_bundle)
        elif step is Step.FETCH:
            if self.ca_bundle is not None:
                mounts = (*mounts, Mount(path=self.ca_bundle, read_only=True))
                env["CARGO_HTTP_CAINFO"] = str(self.ca_bundle)
        else:
            env["CARGO_NET_OFFLINE"] = "true"
            home = self.project.cargo_home
            if home.is_dir():
                mounts = tuple(replace(m, read_only=True) if m.path == home else m for m in mounts)
                if not any(m.path == home for m in mounts):
                    # Folded into a writable mount above it (a CARGO_HOME inside the workspace): read-only all the same.
                    mounts = (*mounts, Mount(path=home, read_only=True))
            # An empty file over each credentials file: a build script must not read the user's registry tokens.
            mounts += tuple(
                Mount(path=home / name, source=Path("/dev/null"), read_only=True)
                for name in _CREDENTIALS_FILES
                if (home / name).is_file()
            )
        if step is not Step.SHELL:
            env.update(self.terminal_env)
        # The build and the shell share a warm container; the fetch step, with its network and its credentials,
        # and a reproducible build, which owes nothing to an earlier command, have one of their own.
        warm = step is not Step.FETCH and self.reproducible is None
        return ContainerRequest(
            image=image,
            user=self.user,
            workdir=self.project.cwd,
            mounts=mounts,
            env=MappingProxyType(env),
            labels=MappingProxyType({WORKSPACE_LABEL: str(self.project.workspace_root), TARGET_LABEL: self.triple}),
            network="host" if step is Step.FETCH else "none",
            # A remote CARGO_HOME holds no bin directory to hide.
            hidden=self.hidden if self.remote is None else (),
            keep_warm=self.keep_warm if warm else 0,
            warm_lifetime=self.warm_lifetime,
            # The project's code runs here: nothing of a command outlives it, and the image cannot be changed.
            confined=True,
            scratch=tuple(dict.fromkeys((Path(CONTAINER_HOME), Path(user_home)))),
        )


def plan(
    context: Context,
    command: str,
    triple: str,
    args: Sequence[str],
    *,
    reproducible_settings: Reproducibility | None = None,
) -> BuildPlan:
    check_triple(triple)
    parsed = cargo_args.parse_cargo_args(args)
    if reproducible_settings is not None:
        parsed = replace(parsed, locked=True)
    try:
        project = context.project(parsed)
    except ProjectError:
        # Outside a project, only the shipped table can know the target: a typo in it is the first thing to say.
        context.host.toolchains.target(triple)
        raise
    project_config = context.project_config(project.workspace_root)
    # Before anything is mounted or any engine named: what the checkout's settings reach outside it.
    boundary = trust.require(trust_boundary(context, project, project_config), triple)
    # A `target` the project ships as a link would lead the output (and the report this machine writes) elsewhere.
    refuse_linked_target_dir(project.workspace_root, project.target_dir)
    spec = context.host.target(triple, project_config)
    host = context.host.host_target(project_config)
    state_dir = project.target_dir / "xpcargo" / triple

    # Cargo merges the `--config` file xpcargo writes into the project's own config key by key; so does this.
    links = spec.links.over(project.links_overrides(triple))
    extra = _asked_mounts(spec, links)

    passed = environment.passthrough_environment(context.host.environ, spec)
    host_env = {name: value for name, value in passed.items() if not environment.is_credential(name)}
    places = _places(context, project)
    env = {**host_env, **environment.toolchain_environment(spec, host), **places}
    # Flags added to the user's own: the reproducible mode's path remapping, and the glibc floor's sysroot.
    remaps: tuple[tuple[Path, str], ...] = ()
    rust_flags: list[str] = []
    c_flags: list[str] = []
    if reproducible_settings is not None:
        remaps = remapping(project)
        rust_flags += reproducible.rustc_remap_flags(remaps)
        c_flags += reproducible.c_remap_flags(remaps)
    recipe = load_recipe(
        spec.recipe, directory=context.host.settings.recipes_dir, referenced_from=f"target {spec.triple}"
    )
    glibc = floor.floor_of(spec, recipe, cache_dir=context.host.settings.cache_dir)
    image_plan = (
        None
        if spec.image
        else plan_image(spec, recipe, build_arch=context.host.build_platform.debian_arch, lock=spec.image_lock)
    )
    if glibc.sysroot is not None:
        rust_flags += glibc.sysroot.rust_flags()
        c_flags += glibc.sysroot.c_flags()
        extra.append((glibc.sysroot.directory, f"the glibc {glibc.version} floor"))
    rustflags = None
    if rust_flags:
        rustflags = reproducible.merge_rustflags(
            rust_flags, environ=env, config_files=project.cargo_config_files, triple=triple
        )
        for name in rustflags.removed:
            env.pop(name, None)
        env.update(rustflags.env)
        env.update(reproducible.merge_c_flags(c_flags, environ=env, triple=triple))
    if reproducible_settings is not None:
        env.update(reproducible.environment(reproducible_settings))
    engine = context.host.engine_for(spec)
    mounts = _mounts(project, spec, extra, engine=engine, never=boundary.never)
    overrides_file = state_dir / "links-overrides.toml" if spec.links else None
    rustflags_file = state_dir / "rustflags.toml" if rustflags is not None and rustflags.config else None
    remote = (
        plan_remote(
            project,
            mounts,
            engine=engine.url,
            cache_dir=context.host.settings.cache_dir,
            state_files=[path for path in (overrides_file, rustflags_file) if path is not None],
            ca_bundle=environment.host_ca_bundle(context.host.environ),
            user_home=Path(context.host.environ["HOME"]).resolve() if context.host.environ.get("HOME") else None,
        )
        if engine.remote
        else None
    )
    return BuildPlan(
        command=command,
        spec=spec,
        project=project,
        args=tuple(args),
        parsed=parsed,
        mounts=mounts,
        engine=engine,
        remote=remote,
        env=MappingProxyType(env),
        credentials=MappingProxyType({n: v for n, v in passed.items() if environment.is_credential(n)}),
        fetch_env=_fetch_env({**host_env, **places}, own_image=not spec.image),
        fetch_config=_fetch_config(project),
        terminal_env=MappingProxyType(context.host.terminal.cargo_env()),
        color=context.host.terminal.color,
        links=links,
        overrides_file=overrides_file,
        state_dir=state_dir,
        fetch_record=_fetch_record(context, project, triple, engine),
        ca_bundle=environment.host_ca_bundle(context.host.environ),
        keep_warm=context.host.settings.keep_warm,
        warm_lifetime=context.host.settings.warm_lifetime,
        warm_locks=context.host.settings.cache_dir / "warm",
        reproducible=reproducible_settings,
        remaps=remaps,
        rustflags_file=rustflags_file,
        rustflags_config=rustflags.config if rustflags is not None else None,
        glibc_floor=glibc.version,
        sysroot=glibc.sysroot,
        image_plan=image_plan,
    )


def _places(context: Context, project: Project) -> dict[str, str]:
    """Where Cargo's files are, and the user's registries where the user's config put them (a variable the user
    set wins, as it does for Cargo)."""
    pinned = environment.pinned_registries(project.cargo_config_files, project.cargo_home)
    return {
        **{name: index for name, index in pinned.items() if name not in context.host.environ},
        "USER": context.host.environ.get("USER", "xpcargo"),
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
    mounts = (*mounts_for(project, extra, engine_socket=_engine_socket(engine), never=never), *_tool_mounts(spec))
    # A remote engine builds in its own copy of the workspace, whose `.git` the host's git never reads.
    return mounts if engine.remote else git_checkout.read_only_git(mounts, project.workspace_root)


def _tool_mounts(spec: TargetSpec) -> tuple[Mount, ...]:
    """xpcargo's own files that a foreign target's tools read (its runner, the CMake toolchain file), read-only."""
    if not spec.runner and not spec.sysroot:
        return ()
    return (Mount(path=Path(environment.SHARE_DIR), source=resources.share_dir(), read_only=True),)


def _fetch_record(context: Context, project: Project, triple: str, engine: EngineAddress) -> Path:
    """One record per workspace, target dir and target: two checkouts, or two target dirs, never share one."""
    identity = f"{project.workspace_root}\0{project.target_dir}\0{triple}"
    if engine.remote:
        # A remote engine's CARGO_HOME is a volume of its own, which a local fetch did not fill.
        identity += f"\0{engine.url}"
    key = hashlib.sha256(identity.encode()).hexdigest()
    return context.host.settings.cache_dir / "fetched" / f"{key[:32]}.json"


def remapping(project: Project) -> tuple[tuple[Path, str], ...]:
    """The host paths of ``project`` a reproducible build maps to fixed names: one list for the build's flags and
    for what the provenance says of them."""
    return reproducible.remapping(
        workspace_root=project.workspace_root,
        target_dir=project.target_dir,
        cargo_home=project.cargo_home,
        outside=project.outside_paths,
    )


def trust_boundary(context: Context, project: Project, project_config: ProjectConfig) -> trust.Boundary:
    """The project's checkout and what its manifests, Cargo config files and xpcargo settings ask of the host
    beyond it: one reading, for `plan` and for `xpcargo trust`, so that both digest the same settings."""
    return trust.Boundary.of(
        checkout=project.checkout,
        asks=(*project.asks, *trust.settings_asks(project_config)),
        environ=context.host.environ,
        cargo_home=project.cargo_home,
        cache_dir=context.host.settings.cache_dir,
    )


def reproducibility(context: Context, args: Sequence[str]) -> Reproducibility:
    """The settings of a reproducible build of the project that ``args`` name: its SOURCE_DATE_EPOCH above all."""
    project = context.project(cargo_args.parse_cargo_args(args))
    epoch, source = reproducible.source_date_epoch(context.host.environ, project.workspace_root)
    return Reproducibility(source_date_epoch=epoch, epoch_source=source)


def _engine_socket(engine: EngineAddress) -> Path:
    """The socket of the target's engine (its own `engine`, or DOCKER_HOST's), which no mount may reach."""
    return sockets.engine_socket(engine.url)


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
