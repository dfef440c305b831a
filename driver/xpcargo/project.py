"""The Cargo project as seen from the host: its manifest, workspace, target dir, path dependencies and Cargo config.

Everything here reads files only; nothing runs Cargo. The container has to be set up before Cargo can run, so the
host has to know where the workspace, the target dir and the path dependencies are without asking Cargo.
"""

from __future__ import annotations

import fnmatch
import hashlib
import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

from xpcargo.config import read_toml
from xpcargo.engine import Mount
from xpcargo.errors import ProjectError

_DEPENDENCY_TABLES = (
    "dependencies",
    "dev-dependencies",
    "build-dependencies",
    "dev_dependencies",
    "build_dependencies",
)
# Keys of `[target.<triple>]` in Cargo's config that are settings, not `links` overrides.
_TARGET_CONFIG_KEYS = frozenset({"linker", "runner", "rustflags", "rustdocflags", "ar"})


@dataclass(frozen=True, kw_only=True)
class CargoArgs:
    """What xpcargo has to know of the arguments it passes on to Cargo unchanged."""

    manifest_path: str | None = None
    target_dir: str | None = None
    profile: str = "dev"
    message_format: str | None = None
    offline: bool = False
    locked: bool = False
    has_program_args: bool = False


def parse_cargo_args(args: Sequence[str]) -> CargoArgs:
    """Pick out the options that change where xpcargo mounts things or how it reads Cargo's output."""
    values: dict[str, str] = {}
    flags: set[str] = set()
    with_value = {"--manifest-path", "--target-dir", "--profile", "--message-format"}
    index = 0
    has_program_args = False
    while index < len(args):
        arg = args[index]
        if arg == "--":
            has_program_args = True
            break
        name, equals, inline = arg.partition("=")
        if name in with_value:
            if equals:
                value = inline
            elif index + 1 < len(args):
                index += 1
                value = args[index]
            else:
                value = ""
            # --message-format may be given several times and Cargo joins them.
            if name == "--message-format" and name in values:
                value = f"{values[name]},{value}"
            values[name] = value
        elif arg in ("--release", "-r"):
            values.setdefault("--profile", "release")
        elif arg in ("--offline", "--frozen", "--locked"):
            flags.add(arg)
        index += 1
    return CargoArgs(
        manifest_path=values.get("--manifest-path"),
        target_dir=values.get("--target-dir"),
        profile=values.get("--profile", "dev"),
        message_format=values.get("--message-format"),
        offline="--offline" in flags or "--frozen" in flags,
        locked="--locked" in flags or "--frozen" in flags,
        has_program_args=has_program_args,
    )


def profile_dir_name(profile: str) -> str:
    """The directory Cargo uses for a profile: `dev` and `test` build into `debug`, `bench` into `release`."""
    return {"dev": "debug", "test": "debug", "bench": "release"}.get(profile, profile)


@dataclass(frozen=True, kw_only=True)
class Project:
    cwd: Path
    manifest: Path
    workspace_root: Path
    target_dir: Path
    cargo_home: Path
    # Directories outside the workspace that Cargo reads: path dependencies and patches.
    outside_paths: tuple[Path, ...]
    cargo_config_files: tuple[Path, ...]
    manifests: tuple[Path, ...]

    def fingerprint(self, *extra: str) -> str:
        """Changes whenever the set of packages Cargo needs may change: then xpcargo fetches again."""
        digest = hashlib.sha256()
        for part in extra:
            digest.update(part.encode())
            digest.update(b"\0")
        lock = self.workspace_root / "Cargo.lock"
        for path in sorted({*self.manifests, *self.cargo_config_files, lock}):
            digest.update(str(path).encode())
            digest.update(b"\0")
            try:
                digest.update(path.read_bytes())
            except OSError:
                digest.update(b"<missing>")
        return digest.hexdigest()

    def links_overrides(self, triple: str) -> Mapping[str, Mapping[str, Any]]:
        """`[target.<triple>.<links>]` tables of the project's Cargo config, merged as Cargo merges them."""
        merged: dict[str, dict[str, Any]] = {}
        # Files farther from the working directory have lower precedence, so apply them first.
        for path in reversed(self.cargo_config_files):
            data = read_toml(path)
            target = data.get("target")
            table = target.get(triple) if isinstance(target, dict) else None
            if not isinstance(table, dict):
                continue
            for links, override in table.items():
                if links in _TARGET_CONFIG_KEYS or not isinstance(override, dict):
                    continue
                merged.setdefault(links, {}).update(override)
        return MappingProxyType({name: MappingProxyType(values) for name, values in merged.items()})


def find_manifest(cwd: Path, manifest_path: str | None) -> Path:
    if manifest_path is not None:
        path = (cwd / manifest_path).resolve()
        if path.name != "Cargo.toml":
            raise ProjectError(
                f"--manifest-path `{manifest_path}` does not name a Cargo.toml",
                hint="pass the path of the package's Cargo.toml",
            )
        if not path.is_file():
            raise ProjectError(f"manifest path `{manifest_path}` does not exist", hint="check the path and try again")
        return path
    for directory in (cwd, *cwd.parents):
        candidate = directory / "Cargo.toml"
        if candidate.is_file():
            return candidate
    raise ProjectError(
        f"could not find `Cargo.toml` in `{cwd}` or any parent directory",
        hint="run xpcargo inside a Cargo project, or pass --manifest-path path/to/Cargo.toml",
    )


def find_workspace_root(manifest: Path) -> Path:
    data = read_toml(manifest)
    if "workspace" in data:
        return manifest.parent
    package = data.get("package")
    explicit = package.get("workspace") if isinstance(package, dict) else None
    if isinstance(explicit, str):
        return (manifest.parent / explicit).resolve()
    for directory in manifest.parent.parents:
        candidate = directory / "Cargo.toml"
        if not candidate.is_file():
            continue
        workspace = read_toml(candidate).get("workspace")
        if isinstance(workspace, dict) and _is_member(directory, workspace, manifest.parent):
            return directory
    return manifest.parent


def _is_member(root: Path, workspace: Mapping[str, Any], package_dir: Path) -> bool:
    relative = package_dir.relative_to(root).as_posix()
    excluded = workspace.get("exclude", [])
    if any(relative == pattern.rstrip("/") or relative.startswith(pattern.rstrip("/") + "/") for pattern in excluded):
        return False
    return any(fnmatch.fnmatchcase(relative, pattern.rstrip("/")) for pattern in workspace.get("members", []))


def _members(root: Path, workspace: Mapping[str, Any]) -> Iterator[Path]:
    for pattern in workspace.get("members", []) if isinstance(workspace.get("members"), list) else []:
        for directory in sorted(root.glob(pattern)):
            if (directory / "Cargo.toml").is_file() and _is_member(root, workspace, directory.resolve()):
                yield directory.resolve() / "Cargo.toml"


def _path_dependencies(manifest: Path, data: Mapping[str, Any]) -> Iterator[Path]:
    def tables() -> Iterator[Mapping[str, Any]]:
        for name in _DEPENDENCY_TABLES:
            yield data.get(name, {})
        for platform in data.get("target", {}).values():
            if isinstance(platform, dict):
                for name in _DEPENDENCY_TABLES:
                    yield platform.get(name, {})
        workspace = data.get("workspace", {})
        yield workspace.get("dependencies", {}) if isinstance(workspace, dict) else {}
        yield from data.get("patch", {}).values()
        yield data.get("replace", {})

    for table in tables():
        if not isinstance(table, dict):
            continue
        for spec in table.values():
            if isinstance(spec, dict) and isinstance(spec.get("path"), str):
                yield (manifest.parent / spec["path"]).resolve()


def _check_build_command(manifest: Path, data: Mapping[str, Any]) -> None:
    package = data.get("package")
    build = package.get("build") if isinstance(package, dict) else None
    if not isinstance(build, str) or build.endswith(".rs") or (manifest.parent / build).is_file():
        return
    raise ProjectError(
        f'{manifest}: `build = "{build}"` is a build command, which Cargo replaced with build scripts in 2014',
        hint=(
            f'write a build.rs that runs it and tells Cargo what to link, e.g. `Command::new("{build.split()[0]}")'
            '.env("OUT_DIR", &out_dir).status()`, then `println!("cargo:rustc-link-search=native={out_dir}")` and '
            '`println!("cargo:rustc-link-lib=static=NAME")`; set `build = "build.rs"` (see README, "Build scripts")'
        ),
    )


def _cargo_config_files(cwd: Path, cargo_home: Path) -> tuple[Path, ...]:
    """Cargo's config files in precedence order, highest first: from the working directory up, then CARGO_HOME."""
    found: list[Path] = []
    for directory in (cwd, *cwd.parents):
        for name in ("config.toml", "config"):
            candidate = directory / ".cargo" / name
            if candidate.is_file():
                found.append(candidate)
                break
    for name in ("config.toml", "config"):
        candidate = cargo_home / name
        if candidate.is_file() and candidate not in found:
            found.append(candidate)
            break
    return tuple(found)


def _configured_target_dir(config_files: Iterable[Path]) -> Path | None:
    for path in config_files:
        build = read_toml(path).get("build")
        value = build.get("target-dir") if isinstance(build, dict) else None
        if isinstance(value, str):
            # Cargo resolves a relative path against the directory that holds `.cargo/`.
            return (path.parent.parent / value).resolve()
    return None


def cargo_home(environ: Mapping[str, str]) -> Path:
    configured = environ.get("CARGO_HOME")
    if configured:
        return Path(configured).resolve()
    return Path(environ.get("HOME") or Path.home()) / ".cargo"


def discover(cwd: Path, args: CargoArgs, *, environ: Mapping[str, str] = os.environ) -> Project:
    cwd = cwd.resolve()
    manifest = find_manifest(cwd, args.manifest_path)
    root = find_workspace_root(manifest)
    home = cargo_home(environ)

    manifests: list[Path] = []
    outside: list[Path] = []
    pending = [manifest, root / "Cargo.toml"]
    root_data = read_toml(root / "Cargo.toml") if (root / "Cargo.toml").is_file() else {}
    if isinstance(root_data.get("workspace"), dict):
        pending.extend(_members(root, root_data["workspace"]))
    while pending:
        current = pending.pop()
        if current in manifests or not current.is_file():
            continue
        manifests.append(current)
        data = read_toml(current)
        _check_build_command(current, data)
        for dependency in _path_dependencies(current, data):
            if not dependency.is_relative_to(root) and not any(dependency.is_relative_to(p) for p in outside):
                outside.append(dependency)
            pending.append(dependency / "Cargo.toml")

    config_files = _cargo_config_files(cwd, home)
    if args.target_dir:
        target_dir = (cwd / args.target_dir).resolve()
    elif environ.get("CARGO_TARGET_DIR") or environ.get("CARGO_BUILD_TARGET_DIR"):
        target_dir = (cwd / (environ.get("CARGO_TARGET_DIR") or environ["CARGO_BUILD_TARGET_DIR"])).resolve()
    else:
        target_dir = _configured_target_dir(config_files) or root / "target"

    return Project(
        cwd=cwd,
        manifest=manifest,
        workspace_root=root,
        target_dir=target_dir,
        cargo_home=home,
        outside_paths=tuple(outside),
        cargo_config_files=config_files,
        manifests=tuple(sorted(manifests)),
    )


def mounts_for(project: Project, extra_read_only: Iterable[Path] = ()) -> tuple[Mount, ...]:
    """The host directories the container needs, each at its own absolute path, nested ones folded away."""
    wanted: list[Mount] = [
        Mount(path=project.workspace_root),
        Mount(path=project.target_dir),
        Mount(path=project.cargo_home),
        *(Mount(path=path) for path in project.outside_paths),
        *(Mount(path=path.parent, read_only=True) for path in project.cargo_config_files),
        *(Mount(path=Path(path), read_only=True) for path in extra_read_only),
    ]
    # The working directory is where relative arguments (a --manifest-path, say) are resolved.
    if not any(project.cwd.is_relative_to(mount.path) for mount in wanted):
        wanted.append(Mount(path=project.cwd, read_only=True))
    chosen: list[Mount] = []
    # A writable mount wins over a read-only one of the same tree; a parent mount covers its children.
    for mount in sorted(wanted, key=lambda m: (len(m.path.parts), m.read_only)):
        if any(mount.path.is_relative_to(kept.path) and (kept.read_only <= mount.read_only) for kept in chosen):
            continue
        chosen.append(mount)
    return tuple(chosen)
