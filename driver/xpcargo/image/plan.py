"""What goes into a target's image, decided on the host without the engine: the plan and its content-hash tags.

A target's image is a chain. The base (the recipe's Debian suite, its common tools and the pinned Rust) is one
root file system that mmdebstrap builds once and every target of the recipe shares. The target adds a thin layer
(its cross compilers, emulator and Rust std), and a project's extra packages add another. Each image of the chain
is tagged with the hash of its own plan and its parent's, so an unchanged plan never rebuilds, a changed one can
never be mistaken for the old image, and a project's extra packages never rebuild the base or the target layer.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, replace
from functools import cached_property
from pathlib import Path

from xpcargo.config.targets import ARCH_INDEPENDENT, GNU_TRIPLES, TargetSpec
from xpcargo.container.spec import MANAGED_LABEL
from xpcargo.emulation import ExecPreload, exec_preload
from xpcargo.errors import ConfigError
from xpcargo.image import lockfile
from xpcargo.image.lockfile import LOCK_FILE, LockedImage
from xpcargo.image.recipe import C_RUNTIME_ROLES, ImageRecipe, load_recipe

# Bump when the way an image is built changes, so that every tag changes with it.
BUILDER_REVISION = 2

LABEL_TARGET = "org.xpcargo.target"
LABEL_PLAN = "org.xpcargo.plan-hash"
LABEL_PARENT = "org.xpcargo.parent-plan-hash"
LABEL_RECIPE = "org.xpcargo.recipe"
LABEL_RUST = "org.xpcargo.rust-version"
LABEL_LOCK = "org.xpcargo.lock-hash"


@dataclass(frozen=True, kw_only=True)
class PoolDeb:
    """One pinned .deb taken straight from the mirror's pool and unpacked as it is (a foreign Rust std)."""

    url: str
    sha256: str

    @property
    def filename(self) -> str:
        return self.url.rsplit("/", 1)[-1]


def _hash(content: Mapping[str, object]) -> str:
    canonical = json.dumps({"builder": BUILDER_REVISION, **content}, sort_keys=True)
    return hashlib.sha256(canonical.encode()).hexdigest()


@dataclass(frozen=True, kw_only=True)
class BasePlan:
    """The root file system every target of a recipe shares: the suite, the common tools and the pinned Rust."""

    recipe: str
    # The architecture of the root file system: the engine's, which runs the image.
    build_arch: str
    suite: str
    mirror: str
    packages: tuple[str, ...]
    dpkg_exclude: tuple[str, ...]
    rust_version: str
    # Locked (the project's xpcargo-images.lock has an entry for the target): the entry's content hash, and the
    # modification time every file is clamped to. ``packages`` then names every package at its version.
    lock: str | None = None
    source_date_epoch: int | None = None

    @property
    def digest(self) -> str:
        return _hash({"stage": "base", **asdict(self)})

    @property
    def reference(self) -> str:
        return f"xpcargo/{self.recipe}:{self.digest[:16]}"


# Where a target's own C runtime is installed (`std-c-runtime`): a directory of its own per target, outside every path
# Debian's packages use.
C_RUNTIME_PREFIX = "/opt/xpcargo"


@dataclass(frozen=True, kw_only=True)
class CRuntimeBuild:
    """A C runtime built in the target's layer from Debian's sources, before its std (``std-c-runtime``): only data,
    like StdBuild. ``sources`` are by role (``image.recipe.C_RUNTIME_ROLES``), each its orig tarball and, where
    Debian patches it, its debian tarball."""

    kind: str
    # Every file of the runtime is compiled with these (the architecture variant), and the wrapper passes them.
    cflags: tuple[str, ...]
    # `<gnu_triple>-gcc`, `-g++` and `-ar` build it: Debian's cross toolchain of the architecture.
    gnu_triple: str
    prefix: str
    # (role, its files), in the order of C_RUNTIME_ROLES.
    sources: tuple[tuple[str, tuple[PoolDeb, ...]], ...]

    def files(self, role: str) -> tuple[PoolDeb, ...]:
        return next((files for name, files in self.sources if name == role), ())


@dataclass(frozen=True, kw_only=True)
class CompilerRtBuild:
    """compiler-rt's C builtins compiled into the std's compiler_builtins (``std-cc``, ``std-ar``): only data."""

    # LLVM's upstream tarball (the recipe's c-runtime-sources `llvm`), of which compiler-rt/lib/builtins is unpacked.
    source: PoolDeb
    cc: str
    ar: str


@dataclass(frozen=True, kw_only=True)
class StdBuild:
    """A Rust std built from Debian's sources in the target's layer and installed as the target's sysroot, so that
    a project builds with a plain `cargo build --target`. Only data: the layer's fixed script (``image.layers``)
    does the work, with the image's own tools; nothing here is a command."""

    triple: str
    # The sources' .deb (the recipe's `rust.source`), unpacked for the build only: it is not in the layer.
    source: PoolDeb
    # Files of the image linked into the target's `self-contained` directory under their own names.
    self_contained: tuple[str, ...] = ()
    # A static libunwind of the image, installed as `self-contained/libunwind.a` with the fortify functions added,
    # which `<gnu_triple>-gcc` compiles.
    unwinder: str | None = None
    gnu_triple: str | None = None
    c_runtime: CRuntimeBuild | None = None
    compiler_rt: CompilerRtBuild | None = None
    # The target's `target-features`, which the std is compiled with as every build of the target is.
    target_features: tuple[str, ...] = ()
    # What links the std's dylib (``std-linker``); None: rustc's default for the target.
    linker: str | None = None
    # The dist profile's one codegen unit makes `core` and `std` one LLVM module each, optimized on one core: with 16
    # (and rustc's crate-local ThinLTO across them) x86_64's std built in 112 s against 323 s on two busy cores, and
    # a fresh machine, CI's included, builds every std layer on its first run (docs/costs.md).
    codegen_units: int = 16

    @property
    def source_files(self) -> tuple[PoolDeb, ...]:
        """The sources' tarballs the build unpacks besides the std's .deb, each once (both may take LLVM's)."""
        files = [file for _, files in self.c_runtime.sources for file in files] if self.c_runtime else []
        if self.compiler_rt is not None:
            files.append(self.compiler_rt.source)
        return tuple(dict.fromkeys(files))


@dataclass(frozen=True, kw_only=True)
class Layer:
    """What one thin layer installs on its parent: Debian packages through apt, pinned pool .debs unpacked as they
    are, and of qemu-user's emulators only ``emulator`` (the package ships one per architecture, ~450 MB)."""

    # "target" (cross compilers, emulator, std), "extra-packages" (the project's), or "locked" (both, pinned).
    purpose: str
    packages: tuple[str, ...]
    pool_debs: tuple[PoolDeb, ...] = ()
    emulator: str | None = None
    std_build: StdBuild | None = None
    # xpcargo's exec preload, compiled once the layer's cross gcc is installed (a foreign glibc target's).
    exec_preload: ExecPreload | None = None


def _layer_content(layer: Layer) -> dict[str, object]:
    """What a layer's digest hashes: every field, but a std build (and its C runtime) and an exec preload only where
    there is one, so that adding the field left every other layer's tag as it was."""
    content = asdict(layer)
    if layer.exec_preload is None:
        del content["exec_preload"]
    if layer.std_build is None:
        del content["std_build"]
        return content
    for optional in ("c_runtime", "compiler_rt", "target_features", "linker"):
        if not getattr(layer.std_build, optional):
            del content["std_build"][optional]
    return content


@dataclass(frozen=True, kw_only=True)
class Stage:
    """One image of a chain: the base, or a layer on the image before it."""

    reference: str
    digest: str
    labels: Mapping[str, str]
    # None for the base.
    layer: Layer | None = None
    parent: Stage | None = None

    @property
    def repository(self) -> str:
        return self.reference.rsplit(":", 1)[0]

    @property
    def tag(self) -> str:
        return self.reference.rsplit(":", 1)[1]


@dataclass(frozen=True, kw_only=True)
class ImagePlan:
    """A target's image: the base and the layers on it, lowest first."""

    target: str
    base: BasePlan
    layers: tuple[Layer, ...]
    # Locked: the lock entry's content hash and its date (the base carries the same).
    lock: str | None = None
    source_date_epoch: int | None = None

    # Computed once per plan (every digest hashes its parent's), though digest, reference and final all read it.
    @cached_property
    def stages(self) -> tuple[Stage, ...]:
        base_labels = {
            MANAGED_LABEL: "true",
            LABEL_PLAN: self.base.digest,
            LABEL_RECIPE: self.base.recipe,
            LABEL_RUST: self.base.rust_version,
            **({LABEL_LOCK: self.lock} if self.lock else {}),
        }
        stage = Stage(reference=self.base.reference, digest=self.base.digest, labels=base_labels)
        chain = [stage]
        for layer in self.layers:
            digest = _hash(
                {
                    "stage": "layer",
                    "parent": stage.digest,
                    "target": self.target,
                    "layer": _layer_content(layer),
                    "lock": self.lock,
                    "source_date_epoch": self.source_date_epoch,
                }
            )
            labels = {**base_labels, LABEL_PLAN: digest, LABEL_PARENT: stage.digest, LABEL_TARGET: self.target}
            reference = f"xpcargo/{self.target}:{digest[:16]}"
            stage = Stage(reference=reference, digest=digest, labels=labels, layer=layer, parent=stage)
            chain.append(stage)
        return tuple(chain)

    @property
    def final(self) -> Stage:
        return self.stages[-1]

    @property
    def digest(self) -> str:
        return self.final.digest

    @property
    def reference(self) -> str:
        return self.final.reference

    @property
    def build_arch(self) -> str:
        return self.base.build_arch

    @property
    def suite(self) -> str:
        return self.base.suite

    @property
    def mirror(self) -> str:
        return self.base.mirror

    @property
    def rust_version(self) -> str:
        return self.base.rust_version

    @property
    def emulator(self) -> str | None:
        return next((layer.emulator for layer in self.layers if layer.emulator), None)

    @property
    def std_deb(self) -> PoolDeb | None:
        return next((deb for layer in self.layers for deb in layer.pool_debs), None)

    @property
    def std_build(self) -> StdBuild | None:
        return next((layer.std_build for layer in self.layers if layer.std_build), None)

    @property
    def exec_preload(self) -> ExecPreload | None:
        return next((layer.exec_preload for layer in self.layers if layer.exec_preload), None)


def plan_image(spec: TargetSpec, recipe: ImageRecipe, *, build_arch: str, lock: LockedImage | None = None) -> ImagePlan:
    """The image for ``spec``: from the recipe and the target's settings, or, with ``lock``, from exactly the
    packages that the lock recorded of that same plan."""
    unlocked = _unlocked_plan(spec, recipe, build_arch=build_arch)
    if lock is None:
        return unlocked
    if lock.plan != unlocked.digest:
        raise ConfigError(
            f"{LOCK_FILE} locks {spec.triple} for another image plan than today's: the recipe, the target's packages "
            "or the project's extra-packages changed since it was written"
            + (f", or it was written on a {lock.build_arch} machine" if lock.build_arch != build_arch else ""),
            hint=f"run `xpcargo image lock {spec.triple}` and commit {LOCK_FILE}",
        )
    # Locked, the base installs exactly the base's recorded packages, and one layer exactly the rest: apt has
    # nothing left to choose in either.
    base = replace(
        unlocked.base,
        packages=lock.base_specs(),
        lock=lock.digest,
        source_date_epoch=lock.source_date_epoch,
    )
    layer = Layer(
        purpose="locked",
        packages=lock.layer_specs(),
        pool_debs=tuple(deb for layer in unlocked.layers for deb in layer.pool_debs),
        emulator=unlocked.emulator,
        # Pinned by the recipe already: the sources' hash, and what the script links.
        std_build=unlocked.std_build,
        exec_preload=unlocked.exec_preload,
    )
    return ImagePlan(
        target=spec.triple,
        base=base,
        layers=(layer,),
        lock=lock.digest,
        source_date_epoch=lock.source_date_epoch,
    )


def _unlocked_plan(spec: TargetSpec, recipe: ImageRecipe, *, build_arch: str) -> ImagePlan:
    rust = recipe.rust
    pool_debs: tuple[PoolDeb, ...] = ()
    std_build = _std_build(spec, recipe) if spec.std_from_source else None
    if spec.std_c_runtime is not None and std_build is None:
        raise ConfigError(
            f"target {spec.triple} sets std-c-runtime, which only a std built from source links",
            hint=f'add `std = "source"` to [target.{spec.triple}], or remove std-c-runtime',
        )
    # The build architecture's std is a dependency of rustc; an arch-independent one (`all`: wasm32's) is in the
    # target's packages. Only a foreign architecture's std comes from the pool.
    if std_build is None and spec.debian_arch not in (build_arch, ARCH_INDEPENDENT):
        digest = rust.std_sha256.get(spec.debian_arch)
        if digest is None:
            raise ConfigError(
                f"{recipe.source}: rust.std.sha256: has no entry for `{spec.debian_arch}`, "
                f"the debian-arch of target {spec.triple}",
                hint=f"add the sha256 of {rust.std_package}_{rust.version}_{spec.debian_arch}.deb (images/README.md)",
            )
        filename = f"{rust.std_package}_{rust.version}_{spec.debian_arch}.deb"
        pool_debs = (PoolDeb(url=f"{recipe.mirror}/{rust.std_pool}/{filename}", sha256=digest),)
    # An arch-independent std (wasm32's) is a package of the recipe's Rust, pinned to it, in the target's layer.
    std_packages: tuple[str, ...] = ()
    if std_build is None and spec.debian_arch == ARCH_INDEPENDENT:
        package = rust.std_arch_independent.get(spec.triple)
        if package is None:
            raise ConfigError(
                f"{recipe.source}: rust.std.arch-independent: has no package of the std of target {spec.triple}",
                hint=f'build the std from the recipe\'s sources (`std = "source"` in [target.{spec.triple}]), or '
                "name Debian's package of it there",
            )
        std_packages = (f"{package}={rust.version}",)
    pinned = tuple(f"{name}={rust.version}" for name in rust.packages)
    # apt does not care about order, and neither must the hash.
    base = BasePlan(
        recipe=recipe.name,
        build_arch=build_arch,
        suite=recipe.suite,
        mirror=recipe.mirror,
        packages=tuple(sorted({*recipe.packages, *pinned})),
        dpkg_exclude=recipe.dpkg_exclude,
        rust_version=rust.version,
    )
    # The std's C builtins are compiled with the `cc` crate, which the std's sources do not vendor.
    build_packages = rust.source.build_packages if std_build and std_build.compiler_rt and rust.source else ()
    layers = [
        Layer(
            purpose="target",
            packages=tuple(sorted({*spec.packages, *build_packages, *std_packages})),
            pool_debs=pool_debs,
            emulator=spec.emulator,
            std_build=std_build,
            exec_preload=exec_preload(spec),
        )
    ]
    # A package the layers below install already is installed once.
    extra = set(spec.extra_packages) - set(spec.packages) - set(base.packages)
    if extra:
        layers.append(Layer(purpose="extra-packages", packages=tuple(sorted(extra))))
    return ImagePlan(target=spec.triple, base=base, layers=tuple(layers))


def _std_build(spec: TargetSpec, recipe: ImageRecipe) -> StdBuild:
    source = recipe.rust.source
    if source is None:
        raise ConfigError(
            f"target {spec.triple} builds its std from source, and the recipe {recipe.source} has no rust.source",
            hint="add the std's source package (rust-web-src for rustc-web) to the recipe (images/README.md)",
        )
    gnu_triple = GNU_TRIPLES.get(spec.debian_arch)
    if spec.std_unwinder is not None and gnu_triple is None:
        raise ConfigError(
            f"target {spec.triple} names a std-unwinder, and debian-arch `{spec.debian_arch}` has no C compiler "
            "xpcargo knows to complete it with",
            hint=f"xpcargo knows {', '.join(sorted(GNU_TRIPLES))}",
        )
    return StdBuild(
        triple=spec.triple,
        source=PoolDeb(url=f"{recipe.mirror}/{recipe.rust.std_pool}/{source.filename}", sha256=source.sha256),
        self_contained=spec.std_self_contained,
        unwinder=spec.std_unwinder,
        gnu_triple=gnu_triple if spec.std_unwinder is not None else None,
        c_runtime=_c_runtime(spec, recipe, gnu_triple),
        compiler_rt=_compiler_rt(spec, recipe),
        target_features=spec.target_features,
        linker=spec.std_linker,
    )


def _compiler_rt(spec: TargetSpec, recipe: ImageRecipe) -> CompilerRtBuild | None:
    if spec.std_cc is None and spec.std_ar is None:
        return None
    if spec.std_cc is None or spec.std_ar is None:
        missing = "std-ar" if spec.std_ar is None else "std-cc"
        raise ConfigError(
            f"target {spec.triple} sets one of std-cc and std-ar: compiler-rt's builtins need both",
            hint=f"add {missing} to [target.{spec.triple}] (the image's C compiler and archiver for the target)",
        )
    llvm = recipe.c_runtime_sources.get("llvm")
    if llvm is None:
        raise ConfigError(
            f"target {spec.triple} compiles compiler-rt into its std, and the recipe {recipe.source} has no "
            "c-runtime-sources for llvm",
            hint="pin LLVM's orig tarball in the recipe's c-runtime-sources (images/README.md)",
        )
    return CompilerRtBuild(
        source=PoolDeb(url=f"{recipe.mirror}/{llvm.orig.path}", sha256=llvm.orig.sha256),
        cc=spec.std_cc,
        ar=spec.std_ar,
    )


def _c_runtime(spec: TargetSpec, recipe: ImageRecipe, gnu_triple: str | None) -> CRuntimeBuild | None:
    if spec.std_c_runtime is None:
        if spec.std_c_flags:
            raise ConfigError(
                f"target {spec.triple} sets std-c-flags and no std-c-runtime to build with them",
                hint=f'add `std-c-runtime = "musl"` to [target.{spec.triple}], or remove std-c-flags',
            )
        return None
    if gnu_triple is None:
        raise ConfigError(
            f"target {spec.triple} builds its C runtime, and debian-arch `{spec.debian_arch}` has no C compiler "
            "xpcargo knows to build it with",
            hint=f"xpcargo knows {', '.join(sorted(GNU_TRIPLES))}",
        )
    missing = [role for role in C_RUNTIME_ROLES if role not in recipe.c_runtime_sources]
    if missing:
        raise ConfigError(
            f"target {spec.triple} builds its C runtime ({spec.std_c_runtime}), and the recipe {recipe.source} has "
            f"no c-runtime-sources for {', '.join(missing)}",
            hint="pin the Debian source packages in the recipe's c-runtime-sources (images/README.md)",
        )
    sources = tuple(
        (
            role,
            tuple(
                PoolDeb(url=f"{recipe.mirror}/{file.path}", sha256=file.sha256)
                for file in (recipe.c_runtime_sources[role].orig, recipe.c_runtime_sources[role].debian)
                if file is not None
            ),
        )
        for role in C_RUNTIME_ROLES
    )
    return CRuntimeBuild(
        kind=spec.std_c_runtime,
        cflags=spec.std_c_flags,
        gnu_triple=gnu_triple,
        prefix=f"{C_RUNTIME_PREFIX}/{spec.triple}",
        sources=sources,
    )


def plan_for(
    spec: TargetSpec, *, recipes: Path, build_arch: str, project_root: Path | None, parsed: Path | None = None
) -> ImagePlan:
    """``spec``'s image plan: locked when the lock file of the project at ``project_root`` has an entry for it (None:
    no project, or the unlocked plan is asked for; ``parsed``: see ``load_yaml``)."""
    return plan_image(
        spec,
        load_recipe(spec.recipe, directory=recipes, referenced_from=f"target {spec.triple}", parsed=parsed),
        build_arch=build_arch,
        lock=lockfile.entry(project_root, spec.triple),
    )
