"""Sending an image from this machine's engine to a remote one (there is no registry between them): `docker save`
on one side streamed into `docker load` on the other, under the same content-hash tags, stage by stage of the
image's chain, and only the layers the remote engine lacks.

The chain is sent from its lowest missing stage up, each stage on its own, so that the remote engine gets every
stage's tag (the next target of the same recipe then finds the base there). A stage's archive carries the tar of
each of its layers but those the remote engine already holds: the engine's load skips a layer it holds without
reading it (``container.docker_archive`` leaves those out of the stream on its way).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, replace
from pathlib import Path

from xpcargo.container import docker_archive
from xpcargo.container.runtime import Images
from xpcargo.errors import EngineError, ImageBuildError
from xpcargo.image import lock
from xpcargo.image.plan import ImagePlan, Stage
from xpcargo.ui import Reporter, Stopwatch


@dataclass(frozen=True, kw_only=True)
class Sent:
    stages: tuple[str, ...] = ()
    # What went to the remote engine: the archives' bytes, and how many layers' tars of how many.
    bytes: int = 0
    layers_sent: int = 0
    layers_held: int = 0


def missing_stages(plan: ImagePlan, remote: Images) -> tuple[Stage, ...]:
    """The stages of ``plan``'s chain the remote engine lacks, lowest first; none when it has the image itself (one
    question to the engine)."""
    stages = plan.stages
    if remote.image_exists(stages[-1].reference):
        return ()
    missing: list[Stage] = [stages[-1]]
    for stage in reversed(stages[:-1]):
        if remote.image_exists(stage.reference):
            break
        missing.insert(0, stage)
    return tuple(missing)


def send(plan: ImagePlan, *, local: Images, remote: Images, cache: Path, reporter: Reporter) -> Sent:
    """Send the stages of ``plan``'s chain that ``remote`` lacks from ``local``, which has them all; ``cache`` holds
    the locks that keep two senders of one stage to one engine apart."""
    stages = missing_stages(plan, remote)
    if not stages:
        return Sent()
    # An image runs on the machine it was planned for: this one's architecture.
    here, there = local.architecture(), remote.architecture()
    if here != there:
        raise ImageBuildError(
            f"the engine at {remote.host} runs `{there}`, and xpcargo's images are built for this machine's `{here}`",
            hint="build on an engine of this machine's architecture (a target's `engine`, or DOCKER_HOST)",
        )
    clock = Stopwatch()
    total = Sent()
    for stage in stages:
        # One sender per stage and engine: targets side by side (or two commands) that share a base wait for the
        # one that sends it, then find it there.
        name = hashlib.sha256(f"send\0{remote.host}\0{stage.digest}".encode()).hexdigest()
        what = f"{stage.reference} (sending it to {remote.host})"
        with lock.held(cache, name, reference=what, reporter=reporter) as progress:
            if remote.image_exists(stage.reference):
                continue
            counter = _send_stage(stage, local=local, remote=remote, reporter=replace(reporter, copy=progress))
        total = Sent(
            stages=(*total.stages, stage.reference),
            bytes=total.bytes + counter.bytes,
            layers_sent=total.layers_sent + counter.sent,
            layers_held=total.layers_held + counter.held,
        )
    if not total.stages:
        return total
    reporter.status(
        "Sent",
        f"{len(total.stages)} image(s), {total.bytes / 2**20:.1f} MiB ({total.layers_sent} layer(s); "
        f"{total.layers_held} the engine held) to the engine at {remote.host} in {clock}",
    )
    return total


def _send_stage(stage: Stage, *, local: Images, remote: Images, reporter: Reporter) -> docker_archive.Tally:
    parent = stage.parent
    below = remote.inspect_image(parent.reference) if parent is not None else None
    held = frozenset(below.layers) if below is not None else frozenset()
    reporter.status(
        "Sending",
        f"image {stage.reference} from {local.host} to the engine at {remote.host}"
        + (f" (it holds {len(held)} of its layers)" if held else ""),
    )
    tally = docker_archive.Tally()
    loaded = remote.load_chunks(docker_archive.without_layers(local.save_chunks(stage.reference), held, tally))
    if stage.reference not in loaded and not remote.image_exists(stage.reference):
        raise EngineError(
            f"the engine at {remote.host} loaded the archive of {stage.reference} but does not name it "
            f"(it named {', '.join(loaded) or 'nothing'})",
            hint="run the command again; if it repeats, send it by hand with `xpcargo image save` and `image load`",
        )
    return tally
