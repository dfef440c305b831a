"""The Cargo project as seen from the host: its manifest, workspace, target dir, path dependencies and Cargo config.

Everything here reads files only; nothing runs Cargo. The container has to be set up before Cargo can run, so the
host has to know where the workspace, the target dir and the path dependencies are without asking Cargo.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from xpcargo.cargo import links
from xpcargo.cargo.args import CargoArgs
from xpcargo.config import trust
from xpcargo.config.links import LinksOverrides
from xpcargo.config.schema import read_toml
from xpcargo.errors import ProjectError

_DEPENDENCY_TABLES = (
    "dependencies",
    "dev-dependencies",
    "build-dependencies",
    "dev_dependencies",
    "build_dependencies",
)


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
    # The git work tree that holds the manifest (else the workspace root): what is inside is the project's own.
    checkout: Path
    # What the manifests and Cargo config files inside the checkout ask of the host (paths outside the workspace, a
    # configured target dir, a `links` override path); ``config.trust`` decides which reach outside the checkout.
    asks: tuple[trust.Ask, ...] = ()

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

    def links_overrides(self, triple: str) -> LinksOverrides:
        """`[target.<triple>.<links>]` tables of the project's Cargo config, merged as Cargo merges them."""
        merged = LinksOverrides()
        # Files farther from the working directory have lower precedence, so apply them first.
        for path in reversed(self.cargo_config_files):
            merged = links.from_cargo_config(read_toml(path), triple).over(merged)
        return merged


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
    return _enclosing_workspace(manifest) or manifest.parent


def _enclosing_workspace(manifest: Path) -> Path | None:
    """The nearest directory above ``manifest`` whose Cargo.toml is a workspace that counts it as a member."""
    for directory in manifest.parent.parents:
        candidate = directory / "Cargo.toml"
        if not candidate.is_file():
            continue
        root_data = read_toml(candidate)
        if isinstance(root_data.get("workspace"), dict) and manifest in _members(directory, root_data):
            return directory
    return None


def _patterns(workspace: Mapping[str, Any], key: str) -> list[str]:
    values = workspace.get(key)
    return [str(pattern).rstrip("/") for pattern in values] if isinstance(values, list) else []


def _members(root: Path, root_data: Mapping[str, Any]) -> set[Path]:
    """The manifests of a workspace's members, as Cargo counts them: those its `members` globs name, and the path
    dependencies (of the root package and of members) that live under the root, unless `exclude`d."""
    workspace = root_data["workspace"]
    excluded = _patterns(workspace, "exclude")
    listed = _patterns(workspace, "members")

    def relative(manifest: Path) -> str:
        return manifest.parent.relative_to(root).as_posix()

    def under(path: str, patterns: list[str]) -> bool:
        return any(path == pattern or path.startswith(f"{pattern}/") for pattern in patterns)

    def is_member(manifest: Path) -> bool:
        # Cargo's rule: excluded unless listed in `members` by its own path (a glob does not count as that).
        return under(relative(manifest), listed) or not under(relative(manifest), excluded)

    globbed = {
        directory.resolve() / "Cargo.toml"
        for pattern in listed
        for directory in root.glob(pattern)
        if (directory / "Cargo.toml").is_file()
    }
    members = {manifest for manifest in globbed if is_member(manifest)}
    pending = [*members, root / "Cargo.toml"]
    while pending:
        current = pending.pop()
        data = root_data if current == root / "Cargo.toml" else read_toml(current)
        for dependency in _path_dependencies(current, data):
            candidate = dependency / "Cargo.toml"
            if candidate in members or not candidate.is_file() or not dependency.is_relative_to(root):
                continue
            if is_member(candidate):
                members.add(candidate)
                pending.append(candidate)
    return members


def _table(data: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    value = data.get(key)
    return value if isinstance(value, dict) else {}


def _path_dependencies(manifest: Path, data: Mapping[str, Any]) -> Iterator[Path]:
    for _, _, path in _labelled_path_dependencies(manifest, data):
        yield path


def _labelled_path_dependencies(manifest: Path, data: Mapping[str, Any]) -> Iterator[tuple[str, str, Path]]:
    """Each `path` of a dependency, patch or replacement: its key (`workspace.dependencies.x.path`), the path as
    written, and the directory it names."""

    # A manifest of the wrong shape (`target = "x"`) is Cargo's to report; here it just names no path.
    def tables() -> Iterator[tuple[str, object]]:
        for name in _DEPENDENCY_TABLES:
            yield name, data.get(name)
        for triple, platform in _table(data, "target").items():
            if isinstance(platform, dict):
                for name in _DEPENDENCY_TABLES:
                    yield f"target.{triple}.{name}", platform.get(name)
        yield "workspace.dependencies", _table(data, "workspace").get("dependencies")
        for registry, table in _table(data, "patch").items():
            yield f"patch.{registry}", table
        yield "replace", data.get("replace")

    for key, table in tables():
        if not isinstance(table, dict):
            continue
        for name, spec in table.items():
            if isinstance(spec, dict) and isinstance(spec.get("path"), str):
                yield f"{key}.{name}.path", spec["path"], (manifest.parent / spec["path"]).resolve()


def _check_build_command(manifest: Path, data: Mapping[str, Any]) -> None:
    package = data.get("package")
    build = package.get("build") if isinstance(package, dict) else None
    if not isinstance(build, str) or build.endswith(".rs") or (manifest.parent / build).is_file():
        return
    program = (build.split() or ["make"])[0]
    raise ProjectError(
        f'{manifest}: `build = "{build}"` is a build command, which Cargo replaced with build scripts in 2014',
        hint=(
            f'write a build.rs that runs it and tells Cargo what to link, e.g. `Command::new("{program}")'
            '.env("OUT_DIR", &out_dir).status()`, then `println!("cargo:rustc-link-search=native={out_dir}")` and '
            '`println!("cargo:rustc-link-lib=static=NAME")`; set `build = "build.rs"` (see docs/build-scripts.md)'
        ),
    )


def _cargo_config_files(cwd: Path, cargo_home: Path) -> tuple[Path, ...]:
    """Cargo's config files in precedence order, highest first: from the working directory up, then CARGO_HOME."""
    found: list[Path] = []
    # Where both exist, Cargo reads the old extension-less `config` (and warns); so must xpcargo.
    for directory in (cwd, *cwd.parents):
        for name in ("config", "config.toml"):
            candidate = directory / ".cargo" / name
            if candidate.is_file():
                found.append(candidate)
                break
    for name in ("config", "config.toml"):
        candidate = cargo_home / name
        if candidate.is_file() and candidate not in found:
            found.append(candidate)
            break
    return tuple(found)


def _configured_target_dir(config_files: Iterable[Path]) -> tuple[Path, trust.Ask] | None:
    """The target dir the highest config file that sets one names, and the ask that names the setting's file."""
    for path in config_files:
        build = read_toml(path).get("build")
        value = build.get("target-dir") if isinstance(build, dict) else None
        if isinstance(value, str):
            # Cargo resolves a relative path against the directory that holds `.cargo/`.
            target_dir = (path.parent.parent / value).resolve()
            return target_dir, trust.Ask(setting="`build.target-dir`", file=path, value=value, path=target_dir)
    return None


def _linked_config_asks(config_files: Iterable[Path], checkout: Path) -> Iterator[trust.Ask]:
    """A Cargo config file of the checkout that leads outside it (a link, or in a linked `.cargo`): the file it
    leads to is what gets mounted."""
    for path in config_files:
        leads_to = path.resolve()
        if path.is_relative_to(checkout) and not leads_to.is_relative_to(checkout):
            yield trust.Ask(setting=f"the link `{path.name}`", file=path.parent, value=str(leads_to), path=leads_to)


def _cargo_config_asks(config_files: Iterable[Path]) -> Iterator[trust.Ask]:
    """The `links` override paths of Cargo config files, for every target they name."""
    for path in config_files:
        data = read_toml(path)
        targets = data.get("target")
        for triple in targets if isinstance(targets, dict) else {}:
            overrides = links.from_cargo_config(data, str(triple))
            yield from trust.links_asks(
                overrides, setting=f"a `links` override `[target.{triple}", file=path, triple=str(triple)
            )


def _checkout(manifest: Path, root: Path, environ: Mapping[str, str]) -> Path:
    """The git work tree that holds the manifest the user named; without one, the workspace root, unless the
    manifest's own `package.workspace` put the root somewhere else: a project's file cannot widen its checkout."""
    home = environ.get("HOME")
    found = trust.find_checkout(manifest.parent, home=Path(home).resolve() if home else None)
    if found is not None:
        return found
    package = read_toml(manifest).get("package")
    if not (isinstance(package, dict) and isinstance(package.get("workspace"), str)) or root == manifest.parent:
        return root
    # `package.workspace` names the root: it is the checkout only where Cargo's own search finds the same root, from a
    # file that lists this package as a member (a file outside the project's files, which it cannot write).
    return root if _enclosing_workspace(manifest) == root else manifest.parent


def cargo_home(environ: Mapping[str, str]) -> Path:
    configured = environ.get("CARGO_HOME")
    if configured:
        return Path(configured).resolve()
    return Path(environ.get("HOME") or Path.home()) / ".cargo"


def _check_names_carry(*paths: Path) -> None:
    """Every path xpcargo hands the engine must be UTF-8: the engine's API is JSON, which cannot carry a name's raw
    bytes, so a mount, a label or the fetch record's key of such a directory would name another one, or none."""
    for path in paths:
        try:
            str(path).encode("utf-8")
        except UnicodeEncodeError:
            shown = str(path).encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
            raise ProjectError(
                f"the directory `{shown}` has a name that is not UTF-8, which the container engine cannot be given",
                hint="rename it (or move the project) so that every directory on its path has a UTF-8 name",
            ) from None


def discover(cwd: Path, args: CargoArgs, *, environ: Mapping[str, str] = os.environ) -> Project:
    cwd = cwd.resolve()
    manifest = find_manifest(cwd, args.manifest_path)
    root = find_workspace_root(manifest)
    home = cargo_home(environ)

    manifests: list[Path] = []
    outside: list[Path] = []
    asks: list[trust.Ask] = []
    checkout = _checkout(manifest, root, environ)
    if not root.is_relative_to(checkout):
        asks.append(trust.Ask(setting="`package.workspace`", file=manifest, value=_workspace_key(manifest), path=root))
    pending = [manifest, root / "Cargo.toml"]
    root_data = read_toml(root / "Cargo.toml") if (root / "Cargo.toml").is_file() else {}
    if isinstance(root_data.get("workspace"), dict):
        pending.extend(sorted(_members(root, root_data)))
    while pending:
        current = pending.pop()
        if current in manifests or not current.is_file():
            continue
        manifests.append(current)
        data = read_toml(current)
        _check_build_command(current, data)
        for key, written, dependency in _labelled_path_dependencies(current, data):
            if not dependency.is_relative_to(root):
                asks.append(trust.Ask(setting=f"`{key}`", file=current, value=written, path=dependency))
                if not any(dependency.is_relative_to(p) for p in outside):
                    outside.append(dependency)
            pending.append(dependency / "Cargo.toml")

    config_files = _cargo_config_files(cwd, home)
    # Cargo config files inside the checkout are the project's; those outside it (the user's own) are trusted. Inside
    # by where the file is as well as where it leads: a link the project ships to a file outside is still the
    # project's, and it reaches that file (which is mounted at the link's place).
    project_files = [
        path for path in config_files if path.is_relative_to(checkout) or path.resolve().is_relative_to(checkout)
    ]
    asks += _linked_config_asks(project_files, checkout)
    asks += _cargo_config_asks(project_files)
    if args.target_dir:
        target_dir = (cwd / args.target_dir).resolve()
    elif environ.get("CARGO_TARGET_DIR") or environ.get("CARGO_BUILD_TARGET_DIR"):
        target_dir = (cwd / (environ.get("CARGO_TARGET_DIR") or environ["CARGO_BUILD_TARGET_DIR"])).resolve()
    else:
        configured = _configured_target_dir(config_files)
        target_dir = configured[0] if configured is not None else root / "target"
        if configured is not None and configured[1].file in project_files:
            asks.append(configured[1])

    _check_names_carry(cwd, root, target_dir, home, *outside, *(path.parent for path in config_files))
    return Project(
        cwd=cwd,
        manifest=manifest,
        workspace_root=root,
        target_dir=target_dir,
        cargo_home=home,
        outside_paths=tuple(outside),
        cargo_config_files=config_files,
        manifests=tuple(sorted(manifests)),
        checkout=checkout,
        asks=tuple(asks),
    )


def _workspace_key(manifest: Path) -> str:
    package = read_toml(manifest).get("package")
    value = package.get("workspace") if isinstance(package, dict) else None
    return value if isinstance(value, str) else str(manifest.parent)


def refuse_linked_target_dir(workspace: Path, target: Path) -> None:
    """Refuses a target dir in the workspace that is (or lies under) a symbolic link there: the project's own link
    (Cargo's default place, or the project's Cargo config), which the build's output (a remote engine's copy-back,
    the report this machine writes) would go through, to wherever it points. A target dir the user names
    (CARGO_TARGET_DIR, --target-dir) is resolved before it gets here. And a link anywhere in xpcargo's own directory
    of the target dir, which this machine writes (reports, state files)."""
    inside = target.relative_to(workspace).parts if target.is_relative_to(workspace) else ()
    for depth in range(1, len(inside) + 1):
        _refuse_link(workspace.joinpath(*inside[:depth]), target)
    _refuse_link(target / "xpcargo", target)
    pending = [target / "xpcargo"]
    while pending:
        directory = pending.pop()
        try:
            with os.scandir(directory) as entries:
                children = [Path(entry.path) for entry in entries]
        except OSError:
            continue
        for child in children:
            _refuse_link(child, target)
            if child.is_dir():
                pending.append(child)


def _refuse_link(path: Path, target: Path) -> None:
    if path.is_symlink():
        raise ProjectError(
            f"`{path}` is a symbolic link in the project (to `{path.readlink()}`): refusing to write the build's "
            f"output (the target dir `{target}`) through it",
            hint="remove the link, or choose where the output goes yourself (CARGO_TARGET_DIR=DIR or --target-dir DIR)",
        )
