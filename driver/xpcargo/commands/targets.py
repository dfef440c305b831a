"""What xpcargo knows about each target, for people and for CI: `xpcargo targets` as a table, as JSON, or as a
GitHub Actions matrix.

Per target: its C library, how its programs run, whether they are static, and its Rust. Each follows from the
target's settings and its triple, as Rust reads a triple (the environment `gnu`, `musl`, the OS `windows`,
`wasi`...), not from a table of triples here: a target added to toolchains.yaml or xpcargo.toml shows right."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from xpcargo.artifacts import libc_of, links_glibc
from xpcargo.config.targets import ProjectConfig, TargetSpec
from xpcargo.context import Context, Host
from xpcargo.image.recipe import load_recipe
from xpcargo.image.toolchain import rust_of

# How programs of each C library are linked by default: Rust's musl targets default to crt-static; a WASI module is
# not linked against a C library of the machine at all.
_LINKING = {"glibc": "dynamic", "musl": "static", "mingw": "dynamic", "wasi": "n/a"}


@dataclass(frozen=True, kw_only=True)
class TargetInfo:
    target: str
    image: str
    # The content hash of the image's plan (the image's tag is its first 16 digits); None for a configured image.
    plan: str | None
    debian_arch: str
    runner: tuple[str, ...]
    # The newest GLIBC_x.y symbol version a binary built for the target may need: the image's own glibc, or the
    # lower floor the project asks for (`glibc = "2.36"`); None for a target that links no glibc (wasm32-wasip1).
    glibc: str | None
    # A binary for this target runs here without an emulator; every target's binaries run under `xpcargo run`.
    native: bool
    # Its C library (`glibc`, `musl`, `mingw`, `wasi`; `unknown` for a triple xpcargo cannot tell), how its programs
    # run (`native`, or the runner's program: `qemu-aarch64`, `wine`, `node`), and how they are linked by default
    # (`static`, `dynamic`, `n/a` for WebAssembly).
    libc: str = "unknown"
    runs: str = "native"
    linking: str = "unknown"
    # The Rust it builds with (upstream's version of the recipe's rustc: `1.96.0`) and the recipe that has it; with
    # a project's rust-toolchain.toml, the one it asks for. Empty for an image of the user's.
    rust: str = ""
    recipe: str = ""
    # The engine the target builds on (its own `engine`, else the environment's), and whether it is remote.
    engine: str = ""
    remote: bool = False


def describe(context: Context, names: Sequence[str] = ()) -> list[TargetInfo]:
    """The shipped targets as shipped (or those ``names``, `all` included, as the working directory's project sees
    them)."""
    triples = context.named_targets(names, default="shipped")
    project = context.project_config_here() if names else None
    if project is not None:
        specs = [context.host.target(triple, project) for triple in triples]
    else:
        specs = [context.host.toolchains.target(triple) for triple in triples]
    return [_info(context.host, spec, project) for spec in specs]


def _info(host: Host, spec: TargetSpec, project: ProjectConfig | None) -> TargetInfo:
    from xpcargo.pipeline.floor import floor_of  # noqa: PLC0415

    engine = host.engine_for(spec)
    plan = None if spec.image else host.image_plan(spec, project)
    recipe = load_recipe(spec.recipe, directory=host.settings.recipes_dir, parsed=host.settings.parsed_dir)
    libc = libc_of(spec.triple)
    return TargetInfo(
        target=spec.triple,
        image=spec.image or (plan.reference if plan else ""),
        plan=plan.digest if plan else None,
        debian_arch=spec.debian_arch,
        runner=spec.runner,
        glibc=floor_of(spec, recipe, cache_dir=host.settings.cache_dir).version,
        native=host.platform is not None and spec.triple == host.platform.rust_triple,
        engine=engine.url,
        remote=engine.remote,
        libc=libc,
        runs=_runs_with(spec.runner),
        linking=_linking(libc, spec.target_features),
        rust="" if spec.image else rust_of(recipe),
        recipe="" if spec.image else spec.recipe,
    )


def _linking(libc: str, target_features: tuple[str, ...]) -> str:
    """How the target's programs are linked: its C library's default, unless its `target-features` say otherwise
    (the last `crt-static` wins, as in rustc)."""
    crt_static = [feature for feature in target_features if feature[1:] == "crt-static"]
    if crt_static and libc != "wasi":
        return "static" if crt_static[-1].startswith("+") else "dynamic"
    return _LINKING.get(libc, "unknown")


def rows(infos: Sequence[TargetInfo]) -> list[tuple[str, ...]]:
    table: list[tuple[str, ...]] = [
        ("TARGET", "LIBC", "LINKING", "RUNS WITH", "RUST", "DEBIAN ARCH", "IMAGE", "ENGINE")
    ]
    for info in infos:
        libc = info.libc
        if libc == "glibc":
            # The floor: the newest glibc its programs may need.
            libc = f"glibc {info.glibc or ('?' if links_glibc(info.target) else 'none')}"
        engine = f"{info.engine} (remote)" if info.remote else info.engine
        rust = info.rust or "(its image's)"
        table.append((info.target, libc, info.linking, info.runs, rust, info.debian_arch, info.image, engine))
    return table


def _runs_with(runner: tuple[str, ...]) -> str:
    """What runs the target's programs, in a word: the emulator, or what the script a shell runs wraps (Windows'
    `wine-run`: wine)."""
    if not runner:
        return "native"
    if runner[0] in ("sh", "bash") and len(runner) > 1:
        return Path(runner[1]).name.removesuffix("-run")
    return Path(runner[0]).name


def as_json(infos: Sequence[TargetInfo]) -> str:
    return json.dumps([asdict(info) for info in infos], indent=2)


def github_matrix(infos: Sequence[TargetInfo]) -> str:
    """For `strategy.matrix: ${{ fromJSON(needs.<job>.outputs.matrix) }}`: one line, as `$GITHUB_OUTPUT` wants. The
    target alone: every key of an entry becomes part of its job's name, and the rest is `--json`'s."""
    return json.dumps({"include": [{"target": info.target} for info in infos]}, separators=(",", ":"))
