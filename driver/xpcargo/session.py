"""A container session: one container per xpcargo command, with the project mounted at its own paths, running as
the invoking user, removed on exit, Ctrl-C or SIGTERM (which the CLI turns into an exception for that reason).

Every command of one xpcargo invocation (fetch, metadata, the Cargo command itself) runs through ``docker exec`` in
the same container, because starting a container costs several times what an exec does.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from xpcargo.engine import ContainerSpec, Engine, Mount
from xpcargo.ui import binary_writer

SESSION_LABEL = "org.xpcargo.session"
# Where HOME points for a user that has no home in the image: writable by anyone, gone with the container.
CONTAINER_HOME = "/tmp"  # noqa: S108 - inside the container, which is private and short-lived


def invoking_user() -> str:
    return f"{os.getuid()}:{os.getgid()}"


@dataclass(frozen=True, kw_only=True)
class SessionPlan:
    image: str
    mounts: tuple[Mount, ...]
    workdir: Path
    env: Mapping[str, str]
    user: str = field(default_factory=invoking_user)
    network: str = "none"
    purpose: str = "build"
    hidden: tuple[Path, ...] = ()

    def container_spec(self) -> ContainerSpec:
        return ContainerSpec(
            image=self.image,
            user=self.user,
            workdir=self.workdir,
            mounts=self.mounts,
            env={"HOME": CONTAINER_HOME, "USER": os.environ.get("USER", "xpcargo"), **self.env},
            labels={SESSION_LABEL: f"{self.purpose}:{os.getpid()}"},
            network=self.network,
            hidden=self.hidden,
        )


class Session:
    def __init__(self, engine: Engine, container_id: str) -> None:
        self._engine = engine
        self.container_id = container_id

    def run(
        self,
        argv: Sequence[str],
        *,
        env: Mapping[str, str] | None = None,
        on_stdout: Callable[[bytes], None] | None = None,
        on_stderr: Callable[[bytes], None] | None = None,
    ) -> int:
        return self._engine.exec(
            self.container_id,
            argv,
            env=env,
            on_stdout=on_stdout or binary_writer(sys.stdout),
            on_stderr=on_stderr or binary_writer(sys.stderr),
        )

    def run_interactive(self, argv: Sequence[str], *, env: Mapping[str, str] | None = None) -> int:
        return self._engine.exec_interactive(self.container_id, argv, env=env or {})


@contextmanager
def open_session(engine: Engine, plan: SessionPlan) -> Iterator[Session]:
    for mount in plan.mounts:
        # Created here, as the invoking user: the engine would create a missing bind source as root.
        if not mount.read_only:
            mount.path.mkdir(parents=True, exist_ok=True)
    with engine.container(plan.container_spec()) as container_id:
        yield Session(engine, container_id)
