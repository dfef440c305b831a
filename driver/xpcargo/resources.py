"""Where xpcargo's files live: the shipped toolchain table and image recipes, and the user's cache.

An installed wheel carries them as package data (``xpcargo/data/``); a source checkout, including an editable
install, keeps them at the top of the repository where people edit them.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

_PACKAGE_DIR = Path(__file__).resolve().parent


def data_dir() -> Path:
    packaged = _PACKAGE_DIR / "data"
    if (packaged / "toolchains.yaml").is_file():
        return packaged
    return _PACKAGE_DIR.parent.parent


def toolchains_file() -> Path:
    return data_dir() / "toolchains.yaml"


def images_dir() -> Path:
    return data_dir() / "images"


def share_dir() -> Path:
    """xpcargo's files that every foreign target's container gets, read-only: the CMake toolchain file
    (``CMAKE_TOOLCHAIN_FILE_<target>``), the runner that registers the emulator in binfmt_misc (static targets),
    wasm32-wasip1's runner under Node's WASI; and the exec preload's source, which a glibc target's layer compiles."""
    return data_dir() / "images" / "share"


def default_cache_dir(environ: Mapping[str, str]) -> Path:
    """The per-user cache: downloaded .debs, image-build scratch space, locks and fetch records."""
    base = environ.get("XDG_CACHE_HOME") or str(Path(environ.get("HOME") or Path.home()) / ".cache")
    return Path(base) / "xpcargo"
