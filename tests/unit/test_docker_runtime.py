"""The connection to an engine: what is checked before one is made."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from xpcargo.container.docker import runtime
from xpcargo.errors import ConfigError


@pytest.mark.parametrize("auth", ["!!notbase64", "bm9jb2xvbg=="])
def test_a_malformed_login_in_the_client_config_names_the_file_and_the_entry(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, auth: str
) -> None:
    """The SDK decodes it while making a client: read as "cannot reach a container engine" before."""
    (tmp_path / "config.json").write_text(f'{{"auths": {{"r.example": {{"auth": "{auth}"}}}}}}', encoding="utf-8")
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path))
    with pytest.raises(ConfigError, match=r"the `auth` of `auths.r.example` is malformed") as caught:
        runtime._check_client_config()
    assert str(tmp_path / "config.json") in str(caught.value)


def test_a_sound_client_config_passes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "config.json").write_text('{"auths": {"r.example": {"auth": "dTpw"}}}', encoding="utf-8")
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path))
    runtime._check_client_config()


def _python(code: str) -> str:
    """``code``'s output in a fresh Python, whose modules no other test imported first."""
    return subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout


def test_an_engine_reached_without_ssh_imports_no_paramiko() -> None:
    printed = _python(
        "import sys\n"
        "from xpcargo.container.docker.runtime import import_sdk\n"
        "docker = import_sdk(ssh=False)\n"
        "docker.APIClient(base_url='unix:///nonexistent/docker.sock', version='1.41')\n"
        "print(sorted(name for name in sys.modules if name.split('.')[0] in ('paramiko', 'invoke')))\n"
    )
    assert printed.strip() == "[]"


def test_ssh_works_after_the_sdk_was_imported_without_it() -> None:
    """A local engine first, then an ssh:// one, in one process: the SDK's own check would say "Install paramiko
    package" for an SDK imported while paramiko was kept out. Here the login is tried, and refused by a port where
    nothing listens."""
    printed = _python(
        "from xpcargo.container.docker.runtime import import_sdk\n"
        "import_sdk(ssh=False)\n"
        "docker = import_sdk(ssh=True)\n"
        "try:\n"
        "    docker.APIClient(base_url='ssh://nobody@127.0.0.1:9', version='1.41', timeout=5)\n"
        "except Exception as exc:\n"
        "    print(type(exc).__module__, exc)\n"
    )
    assert "paramiko" in printed
    assert "Install paramiko" not in printed
