"""What each way of talking to the engine costs a command before its first answer, against `python -c pass` measured
in the same run, and printed as ratios: xpcargo's own client of the engine's HTTP API on the unix socket
(``container/docker/socket_api.py``, what a warm build and `image list` use on a local engine), the Docker SDK (what
xpcargo uses for the rest, with paramiko kept out and with it), the standard library's http.client, HTTP written by
hand on a socket, and the docker CLI.

    .venv/bin/python benchmarks/bench_engine_client.py [--runs N]

Each is a fresh Python (or the docker CLI) that imports what it needs and asks the engine for `/_ping` once: the
cost a warm no-op build pays on top of the exec it is there for. The http.client and by-hand clients here are
measuring sticks, a few lines long: in xpcargo only ``container/docker/`` talks to the engine. Runs only against
a local engine on its unix socket (DOCKER_HOST unix://..., or /var/run/docker.sock). Each measurement and its
baseline run alternately, the order swapped every run; the table shows the medians and the median of the paired
ratios. Nothing here is a test: it prints numbers for a human (or a note) to read.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from functools import partial
from pathlib import Path

from pairing import Pair, machine, run_pairs, table, timed

# As ``container.docker.runtime.import_sdk`` imports it for an engine not reached over ssh://.
_SDK = (
    "import sys\n"
    "sys.modules['paramiko'] = None\n"
    "import docker\n"
    "docker.APIClient(base_url='unix://{socket}', version='1.41').ping()\n"
)
_SOCKET_API = (
    "from xpcargo.container.docker.socket_api import SocketAPI\n"
    "SocketAPI('{socket}', version='1.41').ping(timeout=30)\n"
)
_SDK_WITH_PARAMIKO = "import docker\ndocker.APIClient(base_url='unix://{socket}', version='1.41').ping()\n"
_STANDARD_LIBRARY = (
    "import http.client, json, socket\n"
    "class C(http.client.HTTPConnection):\n"
    "    def connect(self):\n"
    "        self.sock = socket.socket(socket.AF_UNIX)\n"
    "        self.sock.connect('{socket}')\n"
    "c = C('localhost')\n"
    "c.request('GET', '/_ping')\n"
    "assert c.getresponse().read() == b'OK'\n"
)
_SOCKET_ONLY = (
    "import json, socket\n"
    "s = socket.socket(socket.AF_UNIX)\n"
    "s.connect('{socket}')\n"
    "s.sendall(b'GET /_ping HTTP/1.1\\r\\nHost: localhost\\r\\nConnection: close\\r\\n\\r\\n')\n"
    "assert s.recv(65536).endswith(b'OK')\n"
)


def engine_socket() -> str:
    host = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
    if not host.startswith("unix://"):
        sys.exit(f"bench_engine_client: needs a local engine on a unix socket, not DOCKER_HOST={host}")
    return host.removeprefix("unix://")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=15)
    options = parser.parse_args()

    env = dict(os.environ)
    # Bytecode written and used, as in an installed package.
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    socket = engine_socket()
    python = sys.executable
    with tempfile.TemporaryDirectory(prefix="xpcargo-bench-client-") as scratch:
        cwd = Path(scratch)

        def run(argv: list[str]) -> float:
            return timed(argv, cwd=cwd, env=env)

        pass_ = partial(run, [python, "-c", "pass"])
        cases = {
            "xpcargo's socket_api: /_ping": [python, "-c", _SOCKET_API.format(socket=socket)],
            "Docker SDK, no paramiko: /_ping": [python, "-c", _SDK.format(socket=socket)],
            "Docker SDK with paramiko: /_ping": [python, "-c", _SDK_WITH_PARAMIKO.format(socket=socket)],
            "http.client on the socket: /_ping": [python, "-c", _STANDARD_LIBRARY.format(socket=socket)],
            "socket and json, HTTP by hand: /_ping": [python, "-c", _SOCKET_ONLY.format(socket=socket)],
            "docker version (the CLI)": ["docker", "version", "--format", "{{.Server.APIVersion}}"],
        }
        pairs = [
            Pair(name=name, measure=partial(run, argv), baseline_name="python -c pass", baseline=pass_)
            for name, argv in cases.items()
        ]
        run_pairs(pairs, 1)  # bytecode written, caches warm
        print(f"ways to the engine: medians of {options.runs} paired runs; Python {sys.version.split()[0]}")
        print(table(run_pairs(pairs, options.runs)))
        print(f"measured on {machine()}")


if __name__ == "__main__":
    main()
