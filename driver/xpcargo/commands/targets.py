"""What xpcargo knows about each target, for people and for CI: `xpcargo targets` as a table, as JSON, or as a
GitHub Actions matrix."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from xpcargo.artifacts import links_glibc
from xpcargo.config.targets import ProjectConfig, TargetSpec
from xpcargo.context import Context, Host
from xpcargo.image.recipe import load_recipe


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
    recipe = load_recipe(spec.recipe, directory=host.settings.recipes_dir)
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
    )


def rows(infos: Sequence[TargetInfo]) -> list[tuple[str, ...]]:
    table: list[tuple[str, ...]] = [("TARGET", "DEBIAN ARCH", "RUNS WITH", "GLIBC", "IMAGE", "ENGINE")]
    for info in infos:
        runs = _runs_with(info.runner)
        floor = info.glibc or ("?" if links_glibc(info.target) else "none")
        engine = f"{info.engine} (remote)" if info.remote else info.engine
        table.append((info.target, info.debian_arch, runs, floor, info.image, engine))
    return table


def _runs_with(runner: tuple[str, ...]) -> str:
    """What runs the target's programs, in a word: the emulator, or the script a shell runs (Windows' `wine-run`)."""
    if not runner:
        return "native"
    if runner[0] in ("sh", "bash") and len(runner) > 1:
        return Path(runner[1]).name
    return runner[0]


def as_json(infos: Sequence[TargetInfo]) -> str:
    return json.dumps([asdict(info) for info in infos], indent=2)


def github_matrix(infos: Sequence[TargetInfo]) -> str:
    """For `strategy.matrix: ${{ fromJSON(needs.<job>.outputs.matrix) }}`: one line, as `$GITHUB_OUTPUT` wants."""
    return json.dumps({"include": [{"target": info.target} for info in infos]}, separators=(",", ":"))
