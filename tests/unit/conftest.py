"""Fixtures shared by the unit tests: none of them needs an engine, the network or Cargo."""

from __future__ import annotations

import pytest

from xpcargo import config


@pytest.fixture(scope="session")
def shipped() -> config.Toolchains:
    """The toolchains.yaml that ships, read with an empty environment so a developer's XPCARGO_TOOLCHAINS cannot
    change what is tested."""
    return config.load_toolchains(environ={})
