"""Fixtures shared by the unit tests: none of them needs an engine, the network or Cargo."""

from __future__ import annotations

import warnings
from typing import Any

import pytest

from xpcargo import resources
from xpcargo.config import targets as config
from xpcargo.image import debian

with warnings.catch_warnings():
    # typer 0.25 (pyproject.toml keeps typer below 0.26) imports two helpers that click 8.5 deprecates, "to be
    # removed in Click 9.0"; nothing bounds click, so this only warns today. Silence just those two, once for every
    # test that reaches the CLI (test_cli, and test_launch through xpcargo.launch).
    warnings.filterwarnings(
        "ignore", r"'click\.utils\.get_(binary|text)_stream' is deprecated", category=DeprecationWarning
    )
    from xpcargo import cli  # noqa: F401


@pytest.fixture(scope="session")
def shipped() -> config.Toolchains:
    """The toolchains.yaml that ships, read with an empty environment so a developer's XPCARGO_TOOLCHAINS cannot
    change what is tested."""
    return config.load_toolchains(resources.toolchains_file())


@pytest.fixture(autouse=True)
def _no_image_build(monkeypatch: pytest.MonkeyPatch) -> None:
    """A unit test never downloads from the mirror or runs mmdebstrap; one that means to replaces these itself."""

    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("a unit test started a real image build")

    monkeypatch.setattr(debian, "bootstrap", refuse)
    monkeypatch.setattr(debian, "fetch_pool_file", refuse)
