"""The trust boundary: what a project may ask of the host, and the user's consent to what reaches past its checkout.

**Trusted** is what the user chose: the environment (``CARGO_TARGET_DIR``, ``CARGO_HOME``, ``XPCARGO_*``, the
``XPCARGO_TARGET_<T>_MOUNTS`` forms of the settings), the command line (``--target-dir``, ``--manifest-path``) and
Cargo config files outside the checkout (``~/.cargo/config.toml``, CARGO_HOME's). **Untrusted** is everything inside
the checkout (the git work tree, else the workspace root): its manifests, the ``.cargo/config.toml`` files found in
it, ``xpcargo.toml`` and ``[workspace.metadata.xpcargo]``.

An untrusted setting that reaches outside the checkout (an ``Ask``) takes effect only with the user's consent:
``xpcargo trust`` records the checkout and a digest of exactly those settings in the user's config dir (changing any of
them withdraws the consent), or ``XPCARGO_TRUST=1`` consents for one command. A path inside the checkout needs
nothing. Whatever the consent, some places are never mounted (``NeverMounted``).

This module reads files and the environment it is given; it runs nothing (no git) and talks to no engine.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import stat
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType

from xpcargo.config.links import LinksOverrides
from xpcargo.config.schema import read_toml
from xpcargo.config.targets import Layer, ProjectConfig, setting_key
from xpcargo.errors import ConfigError, UntrustedError
from xpcargo.files import toml_key, toml_string, toml_table, write_atomically

CONSENT_VARIABLE = "XPCARGO_TRUST"
STORE_NAME = "trusted.toml"
# How many directory entries the search for a socket inside a mounted directory looks at, at most: enough for an SDK
# or a crate's sources, bounded so that a huge directory does not stall every build (see `_sockets_within`).
SOCKET_WALK_LIMIT = 10_000
# The settings of xpcargo.toml that reach the host whatever their value: the environment's secrets, another engine
# (which receives the workspace, the CA bundle and the tokens), an image the project picks.
_ALWAYS_REACHING = ("passthrough", "engine", "image")
# What Cargo keeps registry tokens in, under CARGO_HOME (the old name without extension, too).
CREDENTIALS_FILES = ("credentials.toml", "credentials")
# Kernel, runtime and engine places: neither mounted, nor a directory inside them, nor one that holds them.
_HOST_PLACES = (
    "/etc",
    "/proc",
    "/sys",
    "/dev",
    "/run",
    "/var/run",
    "/boot",
    "/var/lib/docker",
    "/var/lib/containers",
)
# Shared directories full of other programs' sockets and files: not mounted themselves, nor anything above them.
_SHARED_TOPS = ("/", "/tmp", "/var/tmp")  # noqa: S108 - names of places refused, not files used
# The user's secrets under HOME: neither mounted, nor inside, nor above.
_HOME_SECRETS = (".ssh", ".gnupg", ".docker", ".aws", ".kube", ".local/share/containers", ".config/containers")


# --- What a project asks for ---------------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class Ask:
    """One setting of the checkout that reaches the host: where it is set, and what it asks for."""

    setting: str  # as the user would look for it: "`mounts` of [build]", "`workspace.dependencies.keys.path`"
    file: Path
    value: str  # what it asks for, as shown and as digested: the path as written, the variables, the URL
    # The host path it makes xpcargo mount; None for a setting that is no path (passthrough, engine, image).
    path: Path | None = None
    # The target whose builds use it; None: every build.
    triple: str | None = None

    def names(self) -> str:
        return f"{self.setting} in {self.file}"


def find_checkout(start: Path, *, home: Path | None) -> Path | None:
    """The top of the git work tree holding ``start``, found by looking for ``.git`` (a directory, or the file of a
    worktree), without running git; None outside one. A submodule counts as part of its superproject's work tree.

    A ``.git`` at the home directory, above it or at ``/`` is no checkout (a home directory kept in git, say): it
    would make everything under HOME "inside the checkout"."""
    start = start.resolve()
    for directory in (start, *start.parents):
        marker = directory / ".git"
        if not (marker.is_dir() or marker.is_file()):
            continue
        if directory == Path(directory.anchor) or (home is not None and home.is_relative_to(directory)):
            return None
        if marker.is_file() and _is_submodule(marker) and directory.parent != directory:
            above = find_checkout(directory.parent, home=home)
            return above if above is not None else directory
        return directory
    return None


def _is_submodule(marker: Path) -> bool:
    """Whether a ``.git`` file points into a superproject's ``.git/modules/`` (a submodule), not a worktree's."""
    try:
        text = marker.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return False
    target = text.partition("gitdir:")[2].strip()
    return "/modules/" in f"/{target.replace(os.sep, '/')}/" and ".git/" in target.replace(os.sep, "/")


def _inside(path: Path, checkout: Path) -> bool:
    # Resolved: a link inside the checkout that points out of it reaches out of it.
    return path.resolve().is_relative_to(checkout)


def links_asks(links: LinksOverrides, *, setting: str, file: Path, triple: str) -> tuple[Ask, ...]:
    """The host paths of ``links`` overrides that exist (only those are mounted), one ask each."""
    return tuple(
        Ask(setting=f"{setting}.{name}]`", file=file, value=str(path), path=path, triple=triple)
        for name in links
        for path in LinksOverrides({name: links.tables[name]}).host_paths()
        if path.exists()
    )


def settings_asks(config: ProjectConfig) -> tuple[Ask, ...]:
    """What the project's own xpcargo settings (``xpcargo.toml`` or ``[workspace.metadata.xpcargo]``) ask of the
    host: `mounts`, `links` paths, and `passthrough`, `engine`, `image` whatever their value."""
    if config.source is None:
        return ()
    asks: list[Ask] = []
    for triple, layer in [(None, config.build), *config.targets.items()]:
        asks += _layer_asks(layer, config.source, triple)
    return tuple(asks)


def _layer_asks(layer: Layer, source: Path, triple: str | None) -> Iterator[Ask]:
    where = layer.origin.partition(": ")[2] or ("build" if triple is None else f"target.{triple}")

    def label(name: str) -> str:
        return f"`{setting_key(name)}` of [{where}]"

    for configured in _strings(layer.values.get("mounts")):
        path = Path(os.path.normpath(configured))
        yield Ask(setting=label("mounts"), file=source, value=configured, path=path, triple=triple)
    links = layer.values.get("links")
    if isinstance(links, LinksOverrides) and triple is not None:
        yield from links_asks(links, setting=f"a `links` override `[{where}.links", file=source, triple=triple)
    for name in _ALWAYS_REACHING:
        value = layer.values.get(name)
        if value:
            shown = " ".join(_strings(value)) if isinstance(value, tuple) else str(value)
            yield Ask(setting=label(name), file=source, value=shown, triple=triple)


def _strings(value: object) -> tuple[str, ...]:
    return tuple(str(item) for item in value) if isinstance(value, tuple) else ()


# --- Never mounted ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class NeverMounted:
    """What no mount may be, hold or sit inside, whatever asked for it and whatever the consent."""

    # Neither mounted, nor anything inside them, nor anything that holds them.
    around: tuple[Path, ...]
    # Neither mounted nor anything that holds them; a directory inside them may be (a project under /tmp).
    above: tuple[Path, ...]
    # Sockets a mount must not hold: the engine's, the ssh agent's.
    sockets: tuple[Path, ...] = ()
    # CARGO_HOME: only xpcargo's own mounts (the workspace, CARGO_HOME itself) may hold it, for its credentials;
    # the credentials files themselves are never mounted (the build step gets an empty file over each).
    cargo_home: Path | None = None
    # Directories a mount outside them is searched for sockets: the checkout; and xpcargo's cache, whose sysroots
    # are xpcargo's own.
    unsearched: tuple[Path, ...] = ()

    @classmethod
    def of(
        cls,
        environ: Mapping[str, str],
        *,
        cargo_home: Path | None = None,
        cache_dir: Path | None = None,
        checkout: Path | None = None,
        engine_socket: Path | None = None,
    ) -> NeverMounted:
        home = _home(environ)
        around = [Path(place) for place in _HOST_PLACES]
        above = [Path(place) for place in _SHARED_TOPS]
        if home is not None:
            around += [home / secret for secret in _HOME_SECRETS]
            # The home directory and every directory above it (`/home`, `/`).
            above.append(home)
        runtime_dir = environ.get("XDG_RUNTIME_DIR")
        if runtime_dir:
            around.append(Path(runtime_dir))
        # The consent store: a build that could write it could grant itself consent.
        around.append(store_path(environ).parent)
        if cache_dir is not None:
            above.append(cache_dir)
        sockets = [path for path in (engine_socket, _agent_socket(environ)) if path is not None]
        return cls(
            around=tuple(_resolved(path) for path in around),
            above=tuple(_resolved(path) for path in above),
            sockets=tuple(_resolved(path) for path in sockets),
            cargo_home=_resolved(cargo_home) if cargo_home is not None else None,
            unsearched=tuple(_resolved(path) for path in (checkout, cache_dir) if path is not None),
        )

    def refusal(self, path: Path, *, own: bool = False) -> str | None:
        """Why ``path`` must not be mounted (``own``: one of xpcargo's own mounts), or None."""
        resolved = _resolved(path)
        return self._place_reached(resolved, own=own) or _kind_refused(
            resolved, search=not own and not any(resolved.is_relative_to(place) for place in self.unsearched)
        )

    def _place_reached(self, resolved: Path, *, own: bool) -> str | None:
        place = next((place for place in self.around if place.is_relative_to(resolved)), None)
        place = place or next((place for place in self.around if resolved.is_relative_to(place)), None)
        place = place or next((place for place in (*self.above, *self.sockets) if place.is_relative_to(resolved)), None)
        if place is not None:
            return f"reaches {place}"
        if self.cargo_home is None:
            return None
        if resolved.parent == self.cargo_home and resolved.name in CREDENTIALS_FILES:
            return "is CARGO_HOME's credentials file"
        if not own and self.cargo_home.is_relative_to(resolved):
            return f"holds CARGO_HOME ({self.cargo_home}), whose credentials no build may see"
        return None


def _kind_refused(resolved: Path, *, search: bool) -> str | None:
    """Only directories and regular files are mounted; with ``search``, a directory that holds no socket or device
    within its first entries."""
    try:
        mode = resolved.stat().st_mode
    except OSError:
        return None  # nothing there to mount: the caller says so, or the engine does
    if not (stat.S_ISDIR(mode) or stat.S_ISREG(mode)):
        return "is not a directory or a regular file"
    found = next(_sockets_within(resolved, limit=SOCKET_WALK_LIMIT), None) if search and stat.S_ISDIR(mode) else None
    return f"holds the socket or device `{found}`" if found is not None else None


def check_mount(path: Path, why: str, *, never: NeverMounted, own: bool = False) -> None:
    """Refuse to mount ``path`` (asked for by ``why``) if it is, holds, or sits in a place never mounted."""
    problem = never.refusal(path, own=own)
    if problem is not None:
        raise ConfigError(
            f"refusing to mount `{path}` (asked for by {why}): it {problem}",
            hint="mount only the directories and files a build needs; sockets, devices, /etc, /proc, /sys, /dev, "
            "/run, the engine's data, HOME itself and CARGO_HOME's credentials are never mounted, whatever the "
            "consent",
        )


def _sockets_within(directory: Path, *, limit: int) -> Iterator[Path]:
    """Sockets and devices under ``directory`` among its first ``limit`` entries (breadth first, links not
    followed): a bind mount exposes a socket inside a mounted directory (an ssh agent's) to the build."""
    pending = [directory]
    seen = 0
    while pending and seen < limit:
        current = pending.pop(0)
        try:
            entries = list(os.scandir(current))
        except OSError:
            continue
        for entry in entries:
            seen += 1
            try:
                mode = entry.stat(follow_symlinks=False).st_mode
            except OSError:
                continue
            if stat.S_ISSOCK(mode) or stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
                yield Path(entry.path)
            elif stat.S_ISDIR(mode):
                pending.append(Path(entry.path))


def _resolved(path: Path) -> Path:
    return Path(os.path.normpath(path)).resolve()


def _home(environ: Mapping[str, str]) -> Path | None:
    home = environ.get("HOME")
    return _resolved(Path(home)) if home else None


def _agent_socket(environ: Mapping[str, str]) -> Path | None:
    agent = environ.get("SSH_AUTH_SOCK")
    return Path(agent) if agent and Path(agent).is_absolute() else None


# --- The boundary of one checkout ------------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class Boundary:
    """A checkout, what its settings ask of the host beyond it, and where the user's consent is kept."""

    checkout: Path
    # Only the asks that reach outside the checkout, in the order found.
    asks: tuple[Ask, ...]
    never: NeverMounted
    store: Path
    # XPCARGO_TRUST=1: the user consents for this command.
    consented_by_environment: bool

    @classmethod
    def of(
        cls,
        *,
        checkout: Path,
        asks: Iterable[Ask],
        environ: Mapping[str, str],
        cargo_home: Path | None = None,
        cache_dir: Path | None = None,
    ) -> Boundary:
        consent = environ.get(CONSENT_VARIABLE, "")
        if consent not in ("", "0", "1"):
            raise ConfigError(
                f"{CONSENT_VARIABLE}={consent!r} is neither 1 nor 0",
                hint="1 consents, for this command, to what the checkout's settings reach outside it",
            )
        reaching: list[Ask] = []
        for ask in asks:
            if (ask.path is None or not _inside(ask.path, checkout)) and ask not in reaching:
                reaching.append(ask)
        return cls(
            checkout=checkout,
            asks=tuple(reaching),
            never=NeverMounted.of(environ, cargo_home=cargo_home, cache_dir=cache_dir, checkout=checkout),
            store=store_path(environ),
            consented_by_environment=consent == "1",
        )

    @property
    def digest(self) -> str:
        """Changes with any of the settings that reach outside the checkout, and with nothing else. A path counts by
        where it leads too: a link the project ships (`vendor/x`, say) keeps its text when its target changes."""
        items = sorted(
            [ask.setting, str(ask.file), ask.value, ask.triple or "", str(_resolved(ask.path)) if ask.path else ""]
            for ask in self.asks
        )
        return hashlib.sha256(json.dumps(items, ensure_ascii=True).encode()).hexdigest()


def require(boundary: Boundary, triple: str) -> Boundary:
    """Refuse what a build for ``triple`` would take from the checkout's settings beyond it: a place never mounted,
    whatever the consent; anything else outside the checkout, without the user's consent to exactly these settings.
    Returns ``boundary``, crossed."""
    relevant = [ask for ask in boundary.asks if ask.triple in (None, triple)]
    for ask in relevant:
        if ask.path is not None:
            check_mount(ask.path, ask.names(), never=boundary.never)
    if not relevant or boundary.consented_by_environment:
        return boundary
    recorded = _load(boundary.store).get(_key(boundary.checkout))
    if recorded is not None and recorded.digest == boundary.digest:
        return boundary
    first = relevant[0]
    changed = "; the checkout's settings changed since you ran `xpcargo trust`" if recorded is not None else ""
    raise UntrustedError(
        f"{first.names()} reaches outside the checkout ({first.value}){changed}",
        hint=f"if you trust this project, `xpcargo trust` in {boundary.checkout} shows what its settings reach and "
        f"consents to exactly that, or {CONSENT_VARIABLE}=1 to one command, as in CI",
    )


# --- The consent store -----------------------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class Consent:
    path: str  # the checkout, as shown
    digest: str


def store_path(environ: Mapping[str, str]) -> Path:
    """``$XDG_CONFIG_HOME/xpcargo/trusted.toml``, else ``~/.config/xpcargo/trusted.toml``."""
    base = environ.get("XDG_CONFIG_HOME") or str(Path(environ.get("HOME") or Path.home()) / ".config")
    return Path(base) / "xpcargo" / STORE_NAME


def _key(checkout: Path) -> str:
    # By the bytes of the path: a checkout whose name is not UTF-8 has a key too.
    return hashlib.sha256(os.fsencode(checkout)).hexdigest()[:32]


def _shown(checkout: Path) -> str:
    return os.fsencode(checkout).decode("utf-8", "backslashreplace")


def _load(store: Path) -> Mapping[str, Consent]:
    if not store.is_file():
        return MappingProxyType({})
    data = read_toml(store)
    checkouts = data.get("checkout", {})
    consents: dict[str, Consent] = {}
    for key, entry in checkouts.items() if isinstance(checkouts, dict) else [(None, None)]:
        if not (
            isinstance(entry, dict) and isinstance(entry.get("path"), str) and isinstance(entry.get("digest"), str)
        ):
            raise ConfigError(
                f"{store}: not a record of `xpcargo trust` (`checkout.{key}` needs a path and a digest)",
                hint=f"remove {store} and run `xpcargo trust` again in the checkouts you trust",
            )
        consents[str(key)] = Consent(path=entry["path"], digest=entry["digest"])
    return MappingProxyType(consents)


def _save(store: Path, consents: Mapping[str, Consent]) -> None:
    lines = ["# The checkouts whose settings you consented to with `xpcargo trust`: a path and a digest of the", ""]
    lines[0] += " settings that reach outside it. `xpcargo trust --revoke` removes one."
    for key, consent in sorted(consents.items()):
        header = toml_table(toml_key("checkout"), toml_key(key))
        lines += [header, f"path = {toml_string(consent.path)}", f"digest = {toml_string(consent.digest)}", ""]
    # 0600: the record is the user's alone.
    write_atomically(store, "\n".join(lines), mode=0o600)


def _update(store: Path, checkout: Path, consent: Consent | None) -> None:
    """Record (or, with None, remove) the consent for ``checkout``, one writer at a time."""
    store.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    lock = os.open(store.parent / f".{store.name}.lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX)
        consents = dict(_load(store))
        if consent is None:
            consents.pop(_key(checkout), None)
        else:
            consents[_key(checkout)] = consent
        _save(store, consents)
    finally:
        os.close(lock)


# --- `xpcargo trust` -------------------------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class Status:
    boundary: Boundary
    consented: bool
    # Consent was given once, to other settings than today's.
    changed: bool

    def lines(self) -> list[str]:
        """What the checkout's settings reach outside it, one line each, with where a path leads when its text does
        not say it (a relative path, a link)."""
        return [
            f"{ask.names()}: {ask.value}"
            + (f" (leads to {_resolved(ask.path)})" if ask.path and str(_resolved(ask.path)) != ask.value else "")
            + (f" (for {ask.triple})" if ask.triple else "")
            for ask in self.boundary.asks
        ]


def status(boundary: Boundary) -> Status:
    recorded = _load(boundary.store).get(_key(boundary.checkout))
    return Status(
        boundary=boundary,
        consented=recorded is not None and recorded.digest == boundary.digest,
        changed=recorded is not None and recorded.digest != boundary.digest,
    )


def consent(boundary: Boundary) -> Status:
    """Consent to what the checkout's settings reach today (nothing is recorded when they reach nothing). A place
    never mounted stays refused: consent cannot open it, so it is refused here already."""
    for ask in boundary.asks:
        if ask.path is not None:
            check_mount(ask.path, ask.names(), never=boundary.never)
    if boundary.asks:
        _update(boundary.store, boundary.checkout, Consent(path=_shown(boundary.checkout), digest=boundary.digest))
    return status(boundary)


def revoke(boundary: Boundary) -> bool:
    """Withdraw the consent for the checkout; whether there was one."""
    if _key(boundary.checkout) not in _load(boundary.store):
        return False
    _update(boundary.store, boundary.checkout, None)
    return True
