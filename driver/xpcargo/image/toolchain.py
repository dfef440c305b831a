"""Which recipe builds a target with the Rust a project asks for (``config.toolchain_file``).

Each recipe has one Rust, read from its ``rust.version`` (Debian's version: ``1.96.0+dfsg1-1~deb13u1+b1`` is Rust
1.96.0). A channel selects the recipes whose Rust it names (``1.85`` and ``1.85.1`` name 1.85.1; ``stable`` names
the newest Rust that can build the target), and of those the ones that can build the target: its std must be there.
Anything else (``1.70``, ``nightly``, ``beta``, a date, a custom toolchain's name) is one error that says what there
is and how to override the file.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import replace
from pathlib import Path

from xpcargo.config.targets import ARCH_INDEPENDENT, STD_DEBIAN, TargetSpec
from xpcargo.config.toolchain_file import CHANNEL, DEFAULT, OVERRIDE, Request
from xpcargo.elf import version_key
from xpcargo.errors import ConfigError
from xpcargo.image.recipe import ImageRecipe, load_recipe

STABLE = "stable"


def rust_of(recipe: ImageRecipe) -> str:
    """The upstream Rust of ``recipe``: ``1.96.0`` of Debian's ``1.96.0+dfsg1-1~deb13u1+b1``."""
    return recipe.rust.version.split("+", 1)[0].split("~", 1)[0]


def load_recipes(directory: Path, *, parsed: Path | None = None) -> dict[str, ImageRecipe]:
    """Every recipe of ``directory``, by name (``parsed``: see ``load_yaml``)."""
    return {
        path.stem: load_recipe(path.stem, directory=directory, parsed=parsed)
        for path in sorted(directory.glob("*.yaml"))
    }


# The Rust target whose std Debian's std package of an architecture (libstd-rust-dev, libstd-rust-web-dev) holds: the
# architecture's own GNU target, as Debian's rustc is built for it (armel's is ARMv5TE, armhf's ARMv7).
DEBIAN_STD_TARGETS = {
    "amd64": "x86_64-unknown-linux-gnu",
    "arm64": "aarch64-unknown-linux-gnu",
    "armel": "armv5te-unknown-linux-gnueabi",
    "armhf": "armv7-unknown-linux-gnueabihf",
    "i386": "i686-unknown-linux-gnu",
    "ppc64el": "powerpc64le-unknown-linux-gnu",
    "riscv64": "riscv64gc-unknown-linux-gnu",
    "s390x": "s390x-unknown-linux-gnu",
}


def packages_std(spec: TargetSpec, recipe: ImageRecipe, *, build_arch: str) -> bool:
    """Whether Debian packages ``spec``'s std for ``recipe``'s Rust: the std package of its architecture, which
    holds that architecture's GNU target only (a musl target of the same architecture is not it), is rustc's own
    (the build machine's) or pinned in the recipe; or the recipe names an arch-independent package of it (wasm32's,
    for 1.85 only)."""
    if spec.debian_arch == ARCH_INDEPENDENT:
        return spec.triple in recipe.rust.std_arch_independent
    if DEBIAN_STD_TARGETS.get(spec.debian_arch) != spec.triple:
        return False
    return spec.debian_arch == build_arch or spec.debian_arch in recipe.rust.std_sha256


def unable(spec: TargetSpec, recipe: ImageRecipe, *, build_arch: str) -> str | None:
    """Why ``recipe`` cannot build ``spec`` (None: it can), from the recipe's data and the target's: where its std
    comes from, and its glibc floor. A target whose std is built from source can also take Debian's package of it
    from a recipe without the sources, where Debian packages it for that Rust (armv5te's for 1.85)."""
    if spec.std_from_source:
        if recipe.rust.source is None and not packages_std(spec, recipe, build_arch=build_arch):
            return f"its std is built from the sources of the image's rustc, which the {recipe.name} recipe lacks"
    elif spec.debian_arch == ARCH_INDEPENDENT:
        # Its std is an arch-independent package of the recipe's Rust, if Debian has one.
        if not packages_std(spec, recipe, build_arch=build_arch):
            return f"Debian packages no std of it for {rust_of(recipe)}"
    elif spec.debian_arch != build_arch and spec.debian_arch not in recipe.rust.std_sha256:
        return f"Debian packages no {recipe.rust.std_package} {rust_of(recipe)} for {spec.debian_arch}"
    if spec.glibc is not None and spec.glibc != recipe.glibc and spec.glibc not in recipe.glibc_floors:
        return f"its glibc floor {spec.glibc} is not one of the {recipe.name} recipe's"
    return None


def _short(version: str) -> str:
    """``1.85`` of ``1.85.1``: how people name a Rust release."""
    return ".".join(version.split(".")[:2])


def _names(version: str, channel: str) -> bool:
    return channel in (version, _short(version))


def available(recipes: Iterable[ImageRecipe]) -> str:
    """``1.85 and 1.96 (stable)``: the Rusts xpcargo's recipes have."""
    versions = sorted({rust_of(recipe) for recipe in recipes}, key=version_key)
    if not versions:
        return "none"
    named = [_short(version) for version in versions]
    named[-1] += f" ({STABLE})"
    return named[0] if len(named) == 1 else f"{', '.join(named[:-1])} and {named[-1]}"


def choose(spec: TargetSpec, request: Request, recipes: Mapping[str, ImageRecipe], *, build_arch: str) -> TargetSpec:
    """``spec`` with the recipe that gives it the Rust ``request`` asks for; an error when none does. A target with
    an image of the user's keeps it (the image has what it has), and so does every target with the override
    ``XPCARGO_TOOLCHAIN=default``."""
    if spec.image or request.wants_default:
        return spec
    what = request.origin
    versions = available(recipes.values())
    if request.origin == OVERRIDE:
        hint = f"xpcargo provides {versions}; set {OVERRIDE} to one of them, or to `{DEFAULT}` (each target's own)"
    else:
        hint = (
            f"xpcargo provides {versions}; change the channel, or override it with {OVERRIDE}=<version> "
            f"({OVERRIDE}={DEFAULT}: each target's own Rust)"
        )
    channel = request.channel
    if CHANNEL.match(channel) is None or channel.startswith(("beta", "nightly")) or "-" in channel:
        raise ConfigError(f"{what} asks for Rust {request.shown}, which no xpcargo image provides", hint=hint)
    offered = [recipe for recipe in recipes.values() if channel == STABLE or _names(rust_of(recipe), channel)]
    if not offered:
        raise ConfigError(f"{what} asks for Rust {request.shown}, which no xpcargo image provides", hint=hint)
    able = [recipe for recipe in offered if unable(spec, recipe, build_arch=build_arch) is None]
    if not able:
        reasons = "; ".join(
            f"{rust_of(recipe)}: {unable(spec, recipe, build_arch=build_arch)}"
            for recipe in sorted(offered, key=lambda recipe: version_key(rust_of(recipe)))
        )
        own = recipes.get(spec.recipe)
        own_rust = f" ({_short(rust_of(own))})" if own is not None else ""
        raise ConfigError(
            f"{what} asks for Rust {request.shown}, and xpcargo cannot build {spec.triple} with it ({reasons})",
            hint=f"build it with its own Rust{own_rust}: {OVERRIDE}={DEFAULT}"
            + ("" if request.origin == OVERRIDE else ", or change the channel"),
        )
    newest = max(version_key(rust_of(recipe)) for recipe in able)
    best = [recipe for recipe in able if version_key(rust_of(recipe)) == newest]
    # The target's own recipe when it is among the best: no other image for the same Rust.
    chosen = next((recipe for recipe in best if recipe.name == spec.recipe), best[0])
    if chosen.name == spec.recipe:
        return spec
    if spec.std_from_source and chosen.rust.source is None:
        # A recipe without the std's sources can build the target only with Debian's package of its std (unable).
        return replace(spec, recipe=chosen.name, std=STD_DEBIAN)
    return replace(spec, recipe=chosen.name)
