"""ssh:// engines: the Docker SDK reaches them through paramiko, which connects, checks the host's key against
``~/.ssh/known_hosts`` (a host it does not find there is refused), authenticates with the ssh agent's keys, the
``IdentityFile`` of ``~/.ssh/config`` or ``~/.ssh/id_*``, and then runs ``docker system dial-stdio`` on the host for
each connection to the engine. What fails on the way, as one line whose hint fits the step that failed: the SDK's
own words come with a hint to start Docker on this machine, which mends none of them. And what the SDK does slowly
over ssh: each of its clients logs in on its own, and it pools channels per request URL; a command here logs in
once (``over_login``) and keeps one pool of channels (``one_pool``).
"""

from __future__ import annotations

import logging
import urllib.parse
from typing import Any

from xpcargo.container.docker.errors import describe
from xpcargo.errors import EngineUnavailableError

_CONFIG_HONOURED = "xpcargo reads HostName, Port, User, IdentityFile and ProxyCommand of ~/.ssh/config"
# The key of the one pool of an ssh:// client's connections (see ``one_pool``): the SDK's base URL for ssh.
_ONE_POOL = "http+docker://ssh"
# The address a client that goes ``over_login`` is made for: it is never connected to.
PLACEHOLDER = "tcp://127.0.0.1:9"
# Idle channels kept for reuse on one login: more than the clients of a command hold at once (the SDK's 10 would
# discard channels with a warning of urllib3's when a multi-target build's watches and streams come back).
_POOL_SIZE = 64
# How long the question put to the host after the engine gave no answer may take (see ``why_no_engine``).
_ASK_SECONDS = 10


def one_pool(client: Any) -> None:
    """The SDK's ssh adapter keeps a pool of connections per request URL, path and query included, so that nearly
    every request opens a channel of its own, for which the host starts `docker system dial-stdio` (a docker CLI)
    again: about 0.2 s a request here. One pool for all the requests of ``client`` (an APIClient) reuses them; it
    keeps as many idle channels as the clients that share the login (``over_login``) may hold at once."""
    adapter = getattr(client, "_custom_adapter", None)
    get_connection = getattr(adapter, "get_connection", None)
    if get_connection is None:
        return
    adapter.max_pool_size = _POOL_SIZE  # type: ignore[union-attr]

    def pooled(url: str, proxies: Any = None) -> Any:
        return get_connection(_ONE_POOL, proxies)

    adapter.get_connection = pooled  # type: ignore[union-attr]


def over_login(login: Any, client: Any) -> None:
    """``client``, an APIClient made for ``PLACEHOLDER`` (which connects to nothing), sends its requests through the
    ssh login of ``login`` (the APIClient whose making logged in): each new client of the SDK's own would log in
    again (a key exchange and an authentication, 9 in a no-op build). Each request still has a channel of its own
    on that login, so a watch or a health check does not queue behind a stream."""
    adapter = login._custom_adapter
    client.mount(_ONE_POOL, adapter)
    client._custom_adapter = adapter
    client.base_url = _ONE_POOL


def silence_paramiko_log() -> None:
    """paramiko's transport thread logs a failed handshake (a port where no ssh server answers) with its traceback;
    with no handler of its own, Python's last resort prints it on stderr above xpcargo's one line. The exception the
    connection raises says the same, and is what the user sees."""
    logger = logging.getLogger("paramiko")
    if not any(isinstance(handler, logging.NullHandler) for handler in logger.handlers):
        logger.addHandler(logging.NullHandler())
    logger.propagate = False


class _Host:
    """The host of an ssh:// address, as messages and the commands of hints name it."""

    def __init__(self, url: str) -> None:
        parsed = urllib.parse.urlsplit(url)
        self.url = url
        self.name = parsed.hostname or url
        try:
            port = parsed.port
        except ValueError:
            port = None
        self.port = port or 22
        self.login = f"{parsed.username}@{self.name}" if parsed.username else self.name
        # As known_hosts and ssh-keygen -R spell a host on another port.
        self.known_as = self.name if self.port == 22 else f"[{self.name}]:{self.port}"
        self.ssh = f"ssh -p {self.port} {self.login}" if self.port != 22 else f"ssh {self.login}"


def unreachable(url: str, exc: BaseException) -> EngineUnavailableError:
    """``exc``, raised while the ssh connection to the engine at ``url`` was being made, as one line with a hint."""
    import paramiko  # noqa: PLC0415 - only an ssh:// engine needs it, and it is there (checked before connecting)

    host = _Host(url)
    where = f"cannot reach the engine at {url}"
    if isinstance(exc, paramiko.BadHostKeyException):
        return EngineUnavailableError(
            f"{where}: the host key of {host.known_as} is not the one ~/.ssh/known_hosts holds for it "
            f"(got {exc.key.get_name()} {exc.key.fingerprint})",
            hint="someone may be between you and the host; only if you know it was given a new key, remove the old "
            f"line (`ssh-keygen -R '{host.known_as}'`) and connect once with `{host.ssh}` to check and accept the new",
        )
    if isinstance(exc, paramiko.PasswordRequiredException):
        return EngineUnavailableError(
            f"{where}: the key it would log in with needs a passphrase",
            hint="add the key to your ssh agent (`ssh-add`): xpcargo asks for no passphrase",
        )
    if isinstance(exc, paramiko.AuthenticationException):
        return EngineUnavailableError(
            f"{where}: {host.login} accepted none of the keys xpcargo offered ({describe(exc)})",
            hint=f"xpcargo offers the ssh agent's keys, the IdentityFile of ~/.ssh/config's entry for {host.name} and "
            f"~/.ssh/id_rsa, id_ecdsa and id_ed25519, no password: `{host.ssh} docker version` must work without one",
        )
    if isinstance(exc, paramiko.SSHException) and "not found in known_hosts" in str(exc):
        return EngineUnavailableError(
            f"{where}: the host {host.known_as} is not in ~/.ssh/known_hosts, and xpcargo connects to no host it "
            "does not know",
            hint=f"connect once with `{host.ssh}` and accept the key once you have checked its fingerprint (xpcargo "
            "reads ~/.ssh/known_hosts only, not /etc/ssh/ssh_known_hosts or a UserKnownHostsFile)",
        )
    if isinstance(exc, paramiko.SSHException | OSError | EOFError):
        return EngineUnavailableError(
            f"{where}: no ssh server answered at {host.known_as}: {describe(exc)}",
            hint=f"check the host and port in the address (ssh://[USER@]HOST[:PORT]) and that sshd runs there; "
            f"{_CONFIG_HONOURED}",
        )
    return EngineUnavailableError(f"{where}: {describe(exc)}", hint=_CONFIG_HONOURED)


def no_engine(url: str, exc: BaseException, client: Any) -> EngineUnavailableError:
    """The ssh connection to ``url`` was made, but no engine answered through it (``exc``): say why, in the host's
    own words when it gives them (``why_no_engine``)."""
    host = _Host(url)
    said = why_no_engine(client)
    return EngineUnavailableError(
        f"cannot reach the engine at {url}: logged in to {host.login}, but `docker system dial-stdio` there gave no "
        f"engine ({said or describe(exc)})",
        hint=f"the docker CLI must be on the PATH of a non-interactive ssh session of {host.login}, and its engine "
        f"running: `{host.ssh} docker version` must work",
    )


def why_no_engine(client: Any) -> str | None:
    """The last line the host's `docker version` prints on stderr, through the SDK's ssh connection of ``client``
    (an APIClient), or None when that cannot be asked."""
    ssh_client = getattr(getattr(client, "_custom_adapter", None), "ssh_client", None)
    if ssh_client is None:
        return None
    try:
        _, stdout, stderr = ssh_client.exec_command("docker version", timeout=_ASK_SECONDS)
        stdout.read()
        lines = stderr.read().decode("utf-8", errors="replace").strip().splitlines()
    except Exception:  # noqa: BLE001 - a question for the message: whatever failed, the message goes without it
        return None
    return lines[-1].strip() if lines else None
