"""What a container is created with, from its request, and how messages name a command."""

from __future__ import annotations

from pathlib import Path

import pytest

from xpcargo.container import warm
from xpcargo.container.docker import options
from xpcargo.container.spec import ContainerRequest


def _request(**changes: object) -> ContainerRequest:
    return ContainerRequest(image="i", user="1000:1000", workdir=Path("/w"), **changes)  # type: ignore[arg-type]


def test_hidden_paths_are_empty_and_a_confined_container_has_scratch_and_a_keeper_dir() -> None:
    plain = _request(hidden=(Path("/w/.env"),))
    assert options.tmpfs(plain, podman=False) == {"/w/.env": ""}
    confined = _request(confined=True, scratch=(Path("/tmp"),))
    assert options.tmpfs(confined, podman=False) == {"/tmp": "exec,mode=1777", "/run/xpcargo": "uid=0,gid=0,mode=0755"}
    # Podman refuses `uid=`: the container's own user owns it.
    assert options.tmpfs(confined, podman=True)["/run/xpcargo"] == "U,mode=0755"


def test_every_container_drops_its_capabilities_and_is_removed_when_it_ends() -> None:
    host = options.host_options(_request(), podman=False)
    assert host["cap_drop"] == ["ALL"]
    assert host["cap_add"] is None
    assert host["security_opt"] == ["no-new-privileges"]
    assert (host["network_mode"], host["init"], host["auto_remove"], host["read_only"]) == ("none", True, True, False)
    layer = options.host_options(_request(capabilities=("CHOWN",), network="host", confined=True), podman=False)
    assert (layer["cap_add"], layer["network_mode"], layer["read_only"]) == (["CHOWN"], "host", True)


def test_a_container_without_a_main_process_of_its_own_is_tethered() -> None:
    tethered = options.create_options(_request(labels={"a": "1"}), None)
    assert tethered["command"] == list(options.TETHERED_MAIN)
    assert tethered["stdin_open"] is True
    assert (tethered["user"], tethered["working_dir"], tethered["labels"]) == ("1000:1000", "/w", {"a": "1"})
    warm_main = options.create_options(_request(confined=True), ["sh", "-c", "watch"])
    assert (warm_main["command"], warm_main["stdin_open"]) == (["sh", "-c", "watch"], False)
    # A confined container's main process is its keeper, never the commands' user.
    assert warm_main["user"] == "0:0"


@pytest.mark.parametrize("tether", [True, False])
def test_messages_name_the_user_s_command_not_the_wrapper(tether: bool) -> None:
    argv = ["cargo", "build", "--release"]
    assert options.shown(argv) == "cargo build"
    assert options.shown(warm.wrapped("t0ken", argv, tether=tether)) == "cargo build"
    assert options.shown(warm.retire_argv()) == "sh -c"
