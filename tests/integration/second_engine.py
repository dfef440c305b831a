"""A second Docker engine on this machine that cannot see the host's files, reached over tcp:// on a loopback port.

It is the machine's own dockerd binary, started with a root, an exec root, a pid file, a containerd and a socket of
its own, a bridge of its own and no iptables rules (its containers use `--network none`, or the host's network for a
fetch), inside ``unshare --mount``: a private mount namespace in which /tmp (every test's project and CARGO_HOME),
/work, /root and /home are empty tmpfs. A bind mount of a host path there finds an empty directory, as on another
machine. It starts with no image.

Needs root, `unshare`, `ip` and `dockerd` (Debian's docker.io); ``start`` says what is missing, for a skip.

Not `--bridge=none`: a dockerd started so deletes the network interface `docker0` it finds, which is the host
engine's, and every later container of the host engine on its default network then fails to start.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

# What the engine's mount namespace hides behind empty tmpfs.
HIDDEN = ("/tmp", "/work", "/root", "/home")
# Not under a hidden directory, and short: containerd's socket path lives under the exec root (108 bytes at most).
_PARENT = Path("/var/tmp")
_READY_WITHIN = 60.0


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def missing() -> str | None:
    """Why a second engine cannot start here, or None."""
    if os.geteuid() != 0:
        return "a second dockerd needs root"
    for tool in ("unshare", "ip", "dockerd", "docker"):
        if shutil.which(tool) is None:
            return f"a second engine needs `{tool}` on PATH"
    return None


def host_bridge_exists() -> bool:
    """Whether the host engine's default network interface, docker0, is there."""
    return subprocess.run(["ip", "link", "show", "docker0"], capture_output=True, check=False).returncode == 0


class SecondEngine:
    def __init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="xpc-engine-", dir=_PARENT))
        self.port = _free_port()
        self.url = f"tcp://127.0.0.1:{self.port}"
        # Its default network's interface: a bridge of its own name (at most 15 characters), not the host's docker0.
        self.bridge = f"xpce{self.port}"
        self._process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        (self.root / "daemon.json").write_text("{}\n", encoding="utf-8")
        subprocess.run(["ip", "link", "add", "name", self.bridge, "type", "bridge"], check=True)
        address = f"10.213.{self.port % 250}.1/24"
        subprocess.run(["ip", "address", "add", address, "dev", self.bridge], check=True)
        hide = "".join(f"mount -t tmpfs tmpfs {path} && " for path in HIDDEN if Path(path).is_dir())
        script = (
            "mount --make-rprivate / && "
            + hide
            + 'exec dockerd --config-file "$1/daemon.json" --data-root "$1/data" --exec-root "$1/exec" '
            '--pidfile "$1/dockerd.pid" -H "$2" --bridge="$3" --iptables=false --ip-masq=false '
            "--storage-driver=fuse-overlayfs"
        )
        log = (self.root / "dockerd.log").open("wb")
        self._process = subprocess.Popen(
            ["unshare", "--mount", "sh", "-c", script, "second-engine", str(self.root), self.url, self.bridge],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        deadline = time.monotonic() + _READY_WITHIN
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RuntimeError(f"the second dockerd exited at start:\n{self.log()}")
            if self.docker("version", check=False).returncode == 0:
                return
            time.sleep(0.5)
        raise RuntimeError(f"the second dockerd did not answer within {_READY_WITHIN:.0f}s:\n{self.log()}")

    def log(self) -> str:
        path = self.root / "dockerd.log"
        return path.read_text(errors="replace")[-3000:] if path.is_file() else ""

    def docker(self, *args: str, check: bool = True, timeout: float = 600) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["docker", "--host", self.url, *args],
            capture_output=True,
            text=True,
            errors="replace",
            timeout=timeout,
            check=check,
        )

    def stop(self) -> None:
        """Stop the daemon (which stops its containers), and remove its root: its images, volumes and state."""
        process = self._process
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=10)
        # Its mounts were in its own namespace, which ended with it: what is left is plain files, and its bridge.
        shutil.rmtree(self.root, ignore_errors=True)
        subprocess.run(["ip", "link", "delete", self.bridge], capture_output=True, check=False)
