"""An ssh:// engine that cannot be reached: paramiko's own exceptions (real ones, raised by paramiko where it can)
as one line whose hint fits what failed, never the hint to start Docker on this machine, and no traceback of
paramiko's transport thread on stderr (tests/integration/test_ssh_engine.py meets each against a real sshd)."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from types import SimpleNamespace
from typing import cast

import paramiko
import pytest

from xpcargo.container.docker import ssh
from xpcargo.container.docker.runtime import DockerRuntime
from xpcargo.errors import EngineUnavailableError

URL = "ssh://builder@build.example:2222"
START_DOCKER = "sudo systemctl start docker"


@pytest.fixture(scope="module")
def key() -> paramiko.PKey:
    return paramiko.ECDSAKey.generate()


def _raised(operation: object) -> BaseException:
    assert callable(operation)
    with pytest.raises(Exception) as caught:  # noqa: PT011 - whatever paramiko raises is what is under test
        operation()
    return caught.value


def test_a_host_missing_from_known_hosts_says_how_to_check_and_accept_its_key(key: paramiko.PKey) -> None:
    # The policy the SDK sets, raising its own words (it logs through the client first).
    client = cast(paramiko.SSHClient, SimpleNamespace(_log=lambda *_: None))
    refused = _raised(lambda: paramiko.RejectPolicy().missing_host_key(client, "[build.example]:2222", key))
    error = ssh.unreachable(URL, refused)
    assert "[build.example]:2222 is not in ~/.ssh/known_hosts" in error.message
    assert error.hint is not None
    assert "`ssh -p 2222 builder@build.example`" in error.hint
    assert START_DOCKER not in error.hint
    assert error.exit_code == 6


def test_a_changed_host_key_is_refused_with_a_warning_not_a_way_around(key: paramiko.PKey) -> None:
    other = paramiko.ECDSAKey.generate()
    error = ssh.unreachable(URL, paramiko.BadHostKeyException("build.example", key, other))
    assert "is not the one ~/.ssh/known_hosts holds" in error.message
    assert key.fingerprint in error.message
    assert error.hint is not None
    assert "someone may be between you and the host" in error.hint
    assert "ssh-keygen -R '[build.example]:2222'" in error.hint


def test_a_refused_key_names_the_keys_offered() -> None:
    error = ssh.unreachable(URL, paramiko.AuthenticationException("Authentication failed."))
    assert "builder@build.example accepted none of the keys" in error.message
    assert error.hint is not None
    assert "IdentityFile" in error.hint
    assert "`ssh -p 2222 builder@build.example docker version`" in error.hint


def test_a_key_with_a_passphrase_points_at_the_agent() -> None:
    error = ssh.unreachable("ssh://build.example", paramiko.PasswordRequiredException("Private key file is encrypted"))
    assert error.hint is not None
    assert "ssh-add" in error.hint


def test_no_server_on_the_port_names_host_and_port() -> None:
    refused = paramiko.ssh_exception.NoValidConnectionsError({("127.0.0.1", 1): ConnectionRefusedError(111, "no")})
    error = ssh.unreachable("ssh://127.0.0.1:1", refused)
    assert "no ssh server answered at [127.0.0.1]:1" in error.message
    assert error.hint is not None
    assert "ssh://[USER@]HOST[:PORT]" in error.hint
    assert START_DOCKER not in error.hint


def test_an_engine_missing_behind_the_login_quotes_the_host_when_it_cannot_be_asked() -> None:
    error = ssh.no_engine(URL, ConnectionError("Remote end closed connection without response"), client=None)
    assert "logged in to builder@build.example" in error.message
    assert "Remote end closed connection" in error.message
    assert error.hint is not None
    assert "docker CLI must be on the PATH" in error.hint


@pytest.fixture
def port_without_ssh() -> Iterator[int]:
    """A loopback port that accepts a connection and closes it without a word: no ssh banner."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    listener.settimeout(0.2)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                connection, _ = listener.accept()
            except TimeoutError:
                continue
            connection.close()

    server = threading.Thread(target=serve, daemon=True)
    server.start()
    yield int(listener.getsockname()[1])
    stop.set()
    server.join()
    listener.close()


def test_a_port_that_is_no_ssh_server_fails_in_one_line_without_paramikos_traceback(
    port_without_ssh: int, capfd: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    """paramiko's transport thread logged the failed handshake with a traceback, which Python printed on stderr
    (here pytest's handler on the root logger would take it: no record of paramiko's may reach the root)."""
    with pytest.raises(EngineUnavailableError) as caught:
        DockerRuntime.connect({"DOCKER_HOST": f"ssh://me@127.0.0.1:{port_without_ssh}"}, engine_timeout=5)
    assert f"no ssh server answered at [127.0.0.1]:{port_without_ssh}" in caught.value.message
    assert caught.value.hint is not None
    assert START_DOCKER not in caught.value.hint
    assert [record.getMessage() for record in caplog.records if record.name.startswith("paramiko")] == []
    _, stderr = capfd.readouterr()
    assert "Traceback" not in stderr
    assert stderr == ""


def test_every_request_of_a_client_shares_one_pool_of_ssh_channels() -> None:
    """The SDK keys its ssh pools by the request's URL: each new path opened a channel (a `docker system dial-stdio`
    on the host) of its own."""
    asked: list[str] = []

    class Adapter:
        def get_connection(self, url: str, proxies: object = None) -> str:
            asked.append(url)
            return f"pool for {url}"

    client = SimpleNamespace(_custom_adapter=Adapter())
    ssh.one_pool(client)
    first = client._custom_adapter.get_connection("http+docker://ssh/v1.41/containers/abc/json")
    second = client._custom_adapter.get_connection("http+docker://ssh/v1.41/exec/def/start", None)
    assert first == second
    assert asked == ["http+docker://ssh", "http+docker://ssh"]
    # A client of another transport is left as it is.
    ssh.one_pool(SimpleNamespace())


def test_a_client_over_the_login_sends_every_request_through_its_adapter() -> None:
    """Each client the SDK makes for an ssh:// address logs in again; one made for the placeholder (which connects
    to nothing) and put over the login sends its requests through the login's adapter instead."""
    import docker  # noqa: PLC0415
    import requests.adapters  # noqa: PLC0415

    shared = requests.adapters.HTTPAdapter()
    login = SimpleNamespace(_custom_adapter=shared)
    client = docker.APIClient(base_url=ssh.PLACEHOLDER, version="1.41", timeout=5)
    ssh.over_login(login, client)
    assert client.base_url == "http+docker://ssh"
    assert client.get_adapter(f"{client.base_url}/v1.41/containers/abc/json") is shared
    assert client.get_adapter(f"{client.base_url}/_ping") is shared
