"""An sshd of the test's own on a loopback port, in front of this machine's engine, for `DOCKER_HOST=ssh://...`.

Everything it uses is its own, in a temporary directory: its host key, its config (listening on 127.0.0.1 on a free
port, key logins only, root allowed), its authorized_keys with a key the test generates, and a HOME for xpcargo
with that key (``~/.ssh/id_ed25519``) and a known_hosts that knows the host key: the Docker SDK reaches the engine
through paramiko, which reads ``~/.ssh`` from HOME (OpenSSH's own client does not, and the tests do not use it). On
the far side, a login of root runs `docker system dial-stdio` (the SDK's way to the engine), which finds this
machine's engine at its default socket. Neither the machine's sshd, its /etc/ssh nor root's ~/.ssh is touched; the
one thing outside the directory is /run/sshd, sshd's privilege separation directory, made if missing and removed
at the end if it was made here.

Needs root (sshd logs a user in only as root) and Debian's openssh-server (`XPCARGO_INSTALL_SSH=1 scripts/install`
installs it; CI's .ci/run does); ``missing`` says what is missing, for a skip.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

SSHD = Path("/usr/sbin/sshd")
_PRIVSEP = Path("/run/sshd")
_READY_WITHIN = 20.0


def missing() -> str | None:
    """Why an sshd of the test's own cannot start here, or None."""
    if os.geteuid() != 0:
        return "an sshd that logs a user in needs root"
    if not SSHD.is_file():
        return f"no {SSHD} (Debian's openssh-server: XPCARGO_INSTALL_SSH=1 scripts/install installs it)"
    for tool in ("ssh-keygen", "docker"):
        if shutil.which(tool) is None:
            return f"an ssh:// engine needs `{tool}` on PATH"
    return None


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def keygen(path: Path, comment: str) -> str:
    """A new ed25519 key pair at ``path`` (no passphrase); its public line."""
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)], check=True, timeout=30
    )
    return path.with_suffix(".pub").read_text(encoding="utf-8").strip()


class SshServer:
    def __init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="xpc-sshd-"))
        self.port = free_port()
        self.url = f"ssh://root@127.0.0.1:{self.port}"
        # As known_hosts spells a host on a port other than 22.
        self.known_as = f"[127.0.0.1]:{self.port}"
        self.home = self.root / "home"
        self._process: subprocess.Popen[bytes] | None = None
        self._made_privsep = False
        self.host_key = ""

    def start(self) -> None:
        host_key = self.root / "host_ed25519"
        self.host_key = keygen(host_key, "xpcargo-test-host")
        user_key = self.make_home(self.home)
        self.authorize(user_key)
        config = self.root / "sshd_config"
        config.write_text(
            f"ListenAddress 127.0.0.1:{self.port}\n"
            f"HostKey {host_key}\n"
            f"AuthorizedKeysFile {self.root / 'authorized_keys'}\n"
            f"PidFile {self.root / 'sshd.pid'}\n"
            "PermitRootLogin prohibit-password\n"
            "AllowUsers root\n"
            "PasswordAuthentication no\n"
            "KbdInteractiveAuthentication no\n"
            "UsePAM no\n"
            # The keys live under /tmp, which is world-writable: sshd's check of the path would refuse them.
            "StrictModes no\n"
            "PermitUserEnvironment no\n"
            "X11Forwarding no\n"
            "LogLevel VERBOSE\n",
            encoding="utf-8",
        )
        if not _PRIVSEP.is_dir():
            _PRIVSEP.mkdir(mode=0o755)
            self._made_privsep = True
        log = (self.root / "sshd.log").open("wb")
        self._process = subprocess.Popen(
            [str(SSHD), "-D", "-e", "-f", str(config)], stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        log.close()
        deadline = time.monotonic() + _READY_WITHIN
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RuntimeError(f"the test's sshd exited at start:\n{self.log()}")
            if "Server listening" in self.log():
                return
            time.sleep(0.1)
        raise RuntimeError(f"the test's sshd did not listen within {_READY_WITHIN:.0f}s:\n{self.log()}")

    def make_home(self, home: Path, *, known: bool = True) -> str:
        """A HOME for xpcargo: a key of its own in ``~/.ssh/id_ed25519`` and, when ``known``, a known_hosts with
        the server's host key. Returns the key's public line (not yet authorized)."""
        dot_ssh = home / ".ssh"
        dot_ssh.mkdir(parents=True, mode=0o700)
        public = keygen(dot_ssh / "id_ed25519", "xpcargo-test-client")
        if known:
            self.know(home, self.host_key)
        return public

    def know(self, home: Path, host_key: str) -> None:
        """``home``'s known_hosts holds ``host_key`` (a public key line) for the server, and nothing else."""
        kind, blob, *_ = host_key.split()
        (home / ".ssh" / "known_hosts").write_text(f"{self.known_as} {kind} {blob}\n", encoding="utf-8")

    def authorize(self, public_key: str, *, options: str = "") -> None:
        """The server lets root in with ``public_key``, with authorized_keys ``options`` (a forced command...)."""
        line = f"{options} {public_key}".strip()
        with (self.root / "authorized_keys").open("a", encoding="utf-8") as keys:
            keys.write(line + "\n")

    def env(self, home: Path | None = None) -> dict[str, str]:
        """What xpcargo is run with to reach this machine's engine through the server."""
        return {"HOME": str(home or self.home), "DOCKER_HOST": self.url}

    def log(self) -> str:
        path = self.root / "sshd.log"
        return path.read_text(errors="replace") if path.is_file() else ""

    def logins(self) -> int:
        """How many logins the server has let in so far."""
        return self.log().count("Accepted publickey")

    def sessions(self) -> int:
        """How many channels with a command (`docker system dial-stdio`) the server has started so far."""
        return self.log().count("Starting session")

    def connections(self) -> int:
        """How many connections reached the server so far, let in or not."""
        return self.log().count("Connection from")

    def _sessions(self) -> list[int]:
        """The server's session processes (each in a session of its own, as sshd makes them)."""
        process = self._process
        if process is None:
            return []
        found = []
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rpartition(")")[2].split()
            except OSError:
                continue
            if fields and int(fields[1]) == process.pid:
                found.append(int(stat.parent.name))
        return found

    def stop(self) -> None:
        """Stop the server (the listener, and any session still open), remove its files."""
        process = self._process
        if process is not None and process.poll() is None:
            for session in self._sessions():
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(session, signal.SIGTERM)
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=10)
        shutil.rmtree(self.root, ignore_errors=True)
        if self._made_privsep:
            # Not when someone else's sshd put something there meanwhile: theirs now.
            with contextlib.suppress(OSError):
                _PRIVSEP.rmdir()
