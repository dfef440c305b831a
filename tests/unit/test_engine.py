"""Which engine xpcargo talks to: the kind and version it reads, the floor it keeps."""

from __future__ import annotations

import pytest

from xpcargo.container.engine import EngineKind, check_supported, identify
from xpcargo.errors import EngineTooOldError


def test_the_ping_names_the_engine() -> None:
    docker = identify(server="Docker/20.10.24+dfsg1 (linux)", api_version="1.41", host="h")
    podman = identify(server="Libpod/4.3.1 (linux)", api_version="1.41", host="h")
    other = identify(server="", api_version="1.43", host="h")
    assert (docker.kind, docker.version, docker.name, docker.cli) == (
        EngineKind.DOCKER,
        "20.10.24+dfsg1",
        "the Docker engine",
        "docker",
    )
    assert (podman.kind, podman.version, podman.cli) == (EngineKind.PODMAN, "4.3.1", "podman")
    assert (other.kind, other.version) == (EngineKind.OTHER, "")
    for engine in (docker, podman, other):
        check_supported(engine)


@pytest.mark.parametrize(
    ("server", "api", "said"),
    [
        ("Docker/19.03.15 (linux)", "1.40", "speaks API 1.40; xpcargo needs API 1.41 (Docker 20.10)"),
        ("Libpod/4.2.0 (linux)", "1.41", "is version 4.2.0; xpcargo needs Podman 4.3 or newer"),
        ("Libpod/3.4.4 (linux)", "1.40", "speaks API 1.40; xpcargo needs API 1.41 (Podman 4.3)"),
        ("", "", "speaks API (none said)"),
    ],
)
def test_an_engine_below_the_floor_is_refused_with_a_hint(server: str, api: str, said: str) -> None:
    with pytest.raises(EngineTooOldError) as caught:
        check_supported(identify(server=server, api_version=api, host="unix:///e.sock"))
    assert said in caught.value.message
    assert caught.value.exit_code == 7
    assert caught.value.hint is not None
    assert "upgrade" in caught.value.hint
