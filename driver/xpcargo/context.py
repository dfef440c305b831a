"""Where a command starts from, read once: the ``Host`` (this machine as every layer below the commands sees it: the
environment, every ``XPCARGO_*`` knob, the terminal policy, the platform the images run on, the toolchain table and
the engine) and the ``Context`` (the Host and the working directory, with the project found there), which only
``commands/`` and ``cli.py`` take.

Nothing below this module reads ``os.environ`` or the working directory itself.
"""

from __future__ import annotations

import difflib
import math
import os
import shutil
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Literal

from xpcargo import platforms, resources
from xpcargo.container.spec import WARM_LIFETIME
from xpcargo.errors import ConfigError, ProjectError

if TYPE_CHECKING:
    from xpcargo.cargo.args import CargoArgs
    from xpcargo.cargo.project import Project
    from xpcargo.config.targets import ProjectConfig, TargetSpec, Toolchains
    from xpcargo.container.location import EngineAddress
    from xpcargo.container.runtime import ImagesAndContainers
    from xpcargo.image.builder import Builder
    from xpcargo.image.plan import ImagePlan
    from xpcargo.image.recipe import ImageRecipe
    from xpcargo.ui import Reporter

# Every knob of xpcargo's own, with what it does. XPCARGO_BUILD_<FIELD> and XPCARGO_TARGET_<TRIPLE>_<FIELD> set
# a target's settings (config.targets) and are checked there.
KNOBS: Mapping[str, str] = MappingProxyType(
    {
        "XPCARGO_TOOLCHAINS": "another toolchains.yaml instead of the shipped one",
        "XPCARGO_IMAGES": "another directory of image recipes instead of the shipped images/",
        "XPCARGO_CACHE_DIR": "the cache of downloaded .debs, locks and fetch records (default ~/.cache/xpcargo)",
        "XPCARGO_RETRY_WAIT": "the first wait, in seconds, before retrying a mirror that is mid-sync (default 4)",
        "XPCARGO_ENGINE_TIMEOUT": "seconds the engine may leave a request or a ping unanswered before it counts as "
        "hung (default 30)",
        "XPCARGO_KEEP_WARM": "seconds a build's container stays up, idle, for the next command (default 600; 0 "
        "starts a fresh container for every command)",
        "XPCARGO_WARM_LIFETIME": "seconds after which a warm container takes no more commands, however busy it "
        "was kept (default 3600)",
        "XPCARGO_REMOTE": "1: the engine cannot see this machine's files, sync them through volumes; 0: it can "
        "(default: remote when DOCKER_HOST or the docker context is tcp:// or ssh://)",
        "XPCARGO_TOOLCHAIN": "the Rust to build with, over the project's rust-toolchain.toml: a version xpcargo's "
        "images have (`1.85`, `1.96`), `stable` (the newest for each target), or `default` (each target's own, "
        "whatever the file asks)",
        "XPCARGO_TRUST": "1: consent, for this command, to what the checkout's settings reach outside it (CI; see "
        "`xpcargo trust`)",
        "XPCARGO_CACHE": "the compile cache (sccache) of the build step: `on` (default: one per workspace, in the "
        "cache dir), `off`, or an absolute directory: one cache shared by every workspace built with that value",
        "XPCARGO_REPLAY": "0: run every command the usual way; 1 (default): a no-op `build`, `check` or `clippy` "
        "run again unchanged is replayed in its warm container, and `image list` run again with the same images "
        "prints what it printed, without loading the rest of xpcargo (docs/costs.md)",
        "XPCARGO_DEBUG": "show a traceback for an internal error",
    }
)
_SETTING_PREFIXES = ("XPCARGO_BUILD_", "XPCARGO_TARGET_")
# `--target all`
ALL_TARGETS = "all"


@dataclass(frozen=True, kw_only=True)
class Settings:
    """xpcargo's own knobs, each read from the environment here and nowhere else."""

    toolchains_file: Path
    recipes_dir: Path
    cache_dir: Path
    retry_wait: float
    engine_timeout: float
    keep_warm: int
    warm_lifetime: int
    # XPCARGO_CACHE: whether builds use a compile cache, and the directory the user shares between workspaces (None:
    # one per workspace, in ``cache_dir``).
    compile_cache: bool = True
    shared_compile_cache: Path | None = None
    # XPCARGO_REPLAY: whether a no-op build and `image list` leave a record for ``xpcargo.replay``.
    replay: bool = True

    @property
    def parsed_dir(self) -> Path:
        """Where the parses of the toolchain table and the recipes are kept (``schema.load_yaml``)."""
        return self.cache_dir / "parsed"

    @classmethod
    def from_environment(cls, environ: Mapping[str, str]) -> Settings:
        for name in environ:
            if name.startswith("XPCARGO_") and name not in KNOBS and not name.startswith(_SETTING_PREFIXES):
                close = difflib.get_close_matches(name, [*KNOBS, "XPCARGO_BUILD_", "XPCARGO_TARGET_"], n=1)
                raise ConfigError(
                    f"unknown environment variable {name}",
                    hint=(f"did you mean {close[0]}? " if close else "") + f"xpcargo reads {', '.join(KNOBS)}, "
                    "XPCARGO_BUILD_<FIELD> and XPCARGO_TARGET_<TRIPLE>_<FIELD>",
                )
        _check_setting_variables([name for name in environ if name.startswith(_SETTING_PREFIXES)])
        if environ.get("XPCARGO_REMOTE", "") not in ("", "0", "1"):
            raise ConfigError(
                f"XPCARGO_REMOTE={environ['XPCARGO_REMOTE']!r} is neither 1 nor 0",
                hint="1 syncs the build's files to the engine through volumes, 0 bind-mounts them; unset, xpcargo "
                "decides from DOCKER_HOST (or the docker context)",
            )
        # Read by xpcargo.replay too, before this: it replays only what a build with the same environment recorded.
        if environ.get("XPCARGO_REPLAY", "") not in ("", "0", "1"):
            raise ConfigError(
                f"XPCARGO_REPLAY={environ['XPCARGO_REPLAY']!r} is neither 1 nor 0",
                hint="0 runs every command the usual way; 1 (the default) replays a no-op build or `image list` run "
                "again unchanged",
            )
        compile_cache, shared = _compile_cache(environ.get("XPCARGO_CACHE", ""))
        return cls(
            toolchains_file=_path(environ, "XPCARGO_TOOLCHAINS") or resources.toolchains_file(),
            recipes_dir=_path(environ, "XPCARGO_IMAGES") or resources.images_dir(),
            cache_dir=_path(environ, "XPCARGO_CACHE_DIR") or resources.default_cache_dir(environ),
            retry_wait=_seconds(environ, "XPCARGO_RETRY_WAIT", default=4, low=0, high=600),
            engine_timeout=_seconds(environ, "XPCARGO_ENGINE_TIMEOUT", default=30, low=1, high=3600),
            keep_warm=math.ceil(_seconds(environ, "XPCARGO_KEEP_WARM", default=600, low=0, high=86400)),
            warm_lifetime=math.ceil(
                _seconds(environ, "XPCARGO_WARM_LIFETIME", default=WARM_LIFETIME, low=1, high=7 * 86400)
            ),
            compile_cache=compile_cache,
            shared_compile_cache=shared,
            replay=environ.get("XPCARGO_REPLAY", "") != "0",
        )


def _compile_cache(value: str) -> tuple[bool, Path | None]:
    """XPCARGO_CACHE: `on` (or unset), `off`, or an absolute directory shared by every workspace built with it."""
    if value in ("", "on", "1"):
        return True, None
    if value in ("off", "0"):
        return False, None
    if Path(value).is_absolute():
        return True, Path(os.path.normpath(value))
    scheme, separator, _ = value.partition("://")
    if separator:
        # Only the scheme is repeated: the rest of a cache's URL may hold its password.
        raise ConfigError(
            f"XPCARGO_CACHE names a {scheme}:// cache: the compile cache has no remote backend",
            hint="the images' sccache (Debian's 0.10) is built without any (Redis, S3, GitHub Actions, ...); an "
            "absolute directory is one cache shared by every workspace built with it",
        )
    raise ConfigError(
        f"XPCARGO_CACHE={value!r} is neither on, off nor an absolute directory",
        hint="`off` builds without the compile cache; `on` keeps one per workspace; an absolute directory is one "
        "cache shared by every workspace built with it",
    )


def _check_setting_variables(names: list[str]) -> None:
    """An XPCARGO_BUILD_ or XPCARGO_TARGET_ variable must end in a setting's name: a typo is an error, not a no-op."""
    if not names:
        return
    from xpcargo.config.targets import Source, environment_settings  # noqa: PLC0415

    for name in names:
        source = Source.BUILD if name.startswith("XPCARGO_BUILD_") else Source.TARGET
        suffixes = environment_settings(source)
        if source is Source.BUILD and name.removeprefix("XPCARGO_BUILD_") in suffixes:
            continue
        if source is Source.TARGET and any(name.endswith(f"_{suffix}") for suffix in suffixes):
            continue
        raise ConfigError(
            f"environment variable {name} names no setting",
            hint=f"{'XPCARGO_BUILD_' if source is Source.BUILD else 'XPCARGO_TARGET_<TRIPLE>_'}<FIELD> takes one of "
            f"{', '.join(suffixes)}",
        )


def _seconds(environ: Mapping[str, str], name: str, *, default: float, low: float, high: float) -> float:
    text = environ.get(name, "")
    try:
        value = float(text) if text else default
    except ValueError:
        value = low - 1
    if not low <= value <= high:
        raise ConfigError(f"{name}={text!r} is not a number of seconds", hint=f"use a number from {low:g} to {high:g}")
    return value


def _path(environ: Mapping[str, str], name: str) -> Path | None:
    value = environ.get(name)
    return Path(value) if value else None


@dataclass(frozen=True, kw_only=True)
class Terminal:
    """The one colour and progress policy, for xpcargo's own lines and for Cargo's."""

    color: bool
    # Cargo's progress bar, as wide as the terminal, when stderr is one (Cargo in the container sees a pipe).
    progress_width: int | None

    @classmethod
    def detect(cls, environ: Mapping[str, str], *, stderr_is_terminal: bool, columns: int) -> Terminal:
        forced = environ.get("CARGO_TERM_COLOR")
        if environ.get("NO_COLOR"):
            color = False
        elif forced in ("always", "never"):
            color = forced == "always"
        else:
            color = stderr_is_terminal
        progress = stderr_is_terminal and "CARGO_TERM_PROGRESS_WHEN" not in environ
        return cls(color=color, progress_width=columns if progress else None)

    def cargo_env(self) -> dict[str, str]:
        """What Cargo in the container must be told, since it does not see the user's terminal."""
        env = {"CARGO_TERM_COLOR": "always" if self.color else "never"}
        if self.progress_width is not None:
            env["CARGO_TERM_PROGRESS_WHEN"] = "always"
            env["CARGO_TERM_PROGRESS_WIDTH"] = str(self.progress_width)
        return env


@dataclass(frozen=True, kw_only=True)
class Host:
    """This machine as a command sees it, whatever the project: the environment, xpcargo's knobs, the terminal
    policy and the platform; the toolchain table and the engine, read on first use. What the layers below the
    commands take (never the whole ``Context``)."""

    environ: Mapping[str, str]
    settings: Settings
    terminal: Terminal
    platform: platforms.Platform | None
    # xpcargo's arguments as the user typed them: what a replayed build is found by (``xpcargo.replay``).
    command_line: tuple[str, ...] = ()

    @cached_property
    def toolchains(self) -> Toolchains:
        from xpcargo.config.targets import load_toolchains  # noqa: PLC0415 - PyYAML is not for `--help`

        return load_toolchains(self.settings.toolchains_file, parsed=self.settings.parsed_dir)

    @property
    def build_platform(self) -> platforms.Platform:
        """The platform of the images: a local engine's is this machine's."""
        if self.platform is None:
            raise ConfigError(
                f"xpcargo's images are built for x86_64 and aarch64 machines, and this one is {os.uname().machine}",
                hint="run xpcargo on an x86_64 or aarch64 machine",
            )
        return self.platform

    def target(self, triple: str, project_config: ProjectConfig) -> TargetSpec:
        """``triple``'s settings in ``project_config``, with the recipe that has the Rust the project asks for."""
        from xpcargo.config.targets import resolve_target  # noqa: PLC0415

        return self.with_rust(
            resolve_target(triple, self.toolchains, project_config, environ=self.environ), project_config
        )

    def with_rust(self, spec: TargetSpec, project_config: ProjectConfig) -> TargetSpec:
        """``spec`` built with the Rust that XPCARGO_TOOLCHAIN, else the project's toolchain file, asks for."""
        from xpcargo.config import toolchain_file  # noqa: PLC0415

        request = toolchain_file.requested(self.environ, project_config.toolchain)
        if request is None:
            return spec
        from xpcargo.image import toolchain  # noqa: PLC0415

        return toolchain.choose(spec, request, self.recipes, build_arch=self.build_platform.debian_arch)

    @cached_property
    def recipes(self) -> Mapping[str, ImageRecipe]:
        """Every image recipe, by name: what Rusts there are to choose from."""
        from xpcargo.image.toolchain import load_recipes  # noqa: PLC0415

        return MappingProxyType(load_recipes(self.settings.recipes_dir, parsed=self.settings.parsed_dir))

    def host_target(self, project_config: ProjectConfig) -> TargetSpec | None:
        """The entry for the images' own triple: build scripts and proc-macros are built with its tools."""
        triple = self.build_platform.rust_triple
        return self.target(triple, project_config) if triple in self.toolchains.targets else None

    def image_plan(self, spec: TargetSpec, project: ProjectConfig | None = None) -> ImagePlan:
        """``spec``'s image plan: locked when the lock file of ``project`` has an entry for it (without a project, or
        outside one, the unlocked plan)."""
        from xpcargo.image.plan import plan_for  # noqa: PLC0415

        return plan_for(
            spec,
            recipes=self.settings.recipes_dir,
            parsed=self.settings.parsed_dir,
            build_arch=self.build_platform.debian_arch,
            project_root=project.root if project is not None else None,
        )

    @cached_property
    def engine(self) -> EngineAddress:
        """Where the engine is, and whether its containers can bind-mount this machine's files."""
        from xpcargo.container.location import locate  # noqa: PLC0415

        return locate(self.environ)

    def engine_for(self, spec: TargetSpec) -> EngineAddress:
        """The engine ``spec`` builds on: its own `engine`, else the one the environment names."""
        if spec.engine is None:
            return self.engine
        from xpcargo.container.location import at  # noqa: PLC0415

        return at(spec.engine, self.environ, source=f"the `engine` of {spec.triple}")

    def reporter(self) -> Reporter:
        from xpcargo.ui import Reporter  # noqa: PLC0415

        return Reporter(color=self.terminal.color)

    def image_builder(self, runtime: ImagesAndContainers, reporter: Reporter | None = None) -> Builder:
        """A builder of images on ``runtime`` with this machine's cache and mirror settings."""
        from xpcargo.image.builder import Builder  # noqa: PLC0415

        return Builder(
            runtime=runtime,
            cache=self.settings.cache_dir,
            reporter=reporter or self.reporter(),
            retry_wait=self.settings.retry_wait,
        )

    def image_for(
        self,
        spec: TargetSpec,
        runtime: ImagesAndContainers,
        reporter: Reporter | None = None,
        *,
        project: ProjectConfig | None = None,
    ) -> str:
        """The image reference to run ``spec`` in (locked as ``project``'s lock file says), built first if need
        be."""
        plan = None if spec.image else self.image_plan(spec, project)
        return self.image_builder(runtime, reporter).image_for(spec, plan)


@dataclass(frozen=True, kw_only=True)
class Context:
    """Where a command starts: the working directory and this machine. Taken by ``commands/`` only, which find the
    project and its configuration here and pass the layers below just what they need."""

    cwd: Path
    host: Host

    @classmethod
    def create(
        cls,
        *,
        cwd: Path,
        environ: Mapping[str, str],
        stderr_is_terminal: bool = False,
        columns: int = 80,
        command_line: tuple[str, ...] = (),
    ) -> Context:
        environ = MappingProxyType(dict(environ))
        host = Host(
            environ=environ,
            settings=Settings.from_environment(environ),
            terminal=Terminal.detect(environ, stderr_is_terminal=stderr_is_terminal, columns=columns),
            platform=platforms.this_machine(),
            command_line=command_line,
        )
        return cls(cwd=cwd, host=host)

    @classmethod
    def of_this_process(cls, *, command_line: tuple[str, ...] = ()) -> Context:
        return cls.create(
            cwd=Path.cwd(),
            environ=os.environ,
            stderr_is_terminal=sys.stderr.isatty(),
            columns=shutil.get_terminal_size().columns,
            command_line=command_line,
        )

    def project(self, args: CargoArgs) -> Project:
        from xpcargo.cargo.project import discover  # noqa: PLC0415

        return discover(self.cwd, args, environ=self.host.environ)

    def project_config(self, workspace_root: Path) -> ProjectConfig:
        from xpcargo.config.targets import load_project_config  # noqa: PLC0415

        return load_project_config(workspace_root)

    def project_config_here(self) -> ProjectConfig:
        """The configuration of the project in the working directory, or none outside a project."""
        from xpcargo.cargo.project import find_manifest, find_workspace_root  # noqa: PLC0415
        from xpcargo.config.targets import ProjectConfig  # noqa: PLC0415

        try:
            root = find_workspace_root(find_manifest(self.cwd, None))
        except ProjectError:
            return ProjectConfig(source=None)
        return self.project_config(root)

    def named_targets(self, names: Sequence[str], *, default: Literal["all", "shipped"] = "all") -> list[str]:
        """The targets a command names, in order, each once; `all` is every target the shipped table and the working
        directory's project define. Naming none means ``default``: `all`, or the shipped table's targets alone (the
        project is not read: what a command does then does not depend on the working directory)."""
        if not names and default == "shipped":
            return sorted(self.host.toolchains.targets)
        wanted: list[str] = []
        for name in names or [ALL_TARGETS]:
            if name == ALL_TARGETS:
                project = self.project_config_here()
                expanded = sorted({*self.host.toolchains.targets, *project.targets})
            else:
                expanded = [name]
            wanted += [triple for triple in expanded if triple not in wanted]
        return wanted
