"""The connection to an engine: what is checked before one is made."""

from __future__ import annotations

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
