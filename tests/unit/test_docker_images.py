"""The Docker runtime's images over a stand-in for the engine's API: what it reads of the engine's answers, and
Podman's whole-image loads."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO, Any

import docker.errors
import pytest
import requests

from xpcargo.container import docker_archive
from xpcargo.container.docker.images import DockerImages
from xpcargo.container.engine import Engine, EngineKind
from xpcargo.errors import EngineError, EngineUnavailableError

PODMAN = Engine(kind=EngineKind.PODMAN, version="4.3.1", api_version="1.41", host="unix:///run/podman/podman.sock")


class Images:
    """An engine API with one image, `localhost/x:1` as Podman names it, saved as ``saved``."""

    def __init__(self, saved: bytes = b"") -> None:
        self.saved = saved
        self.imported: list[str] = []
        self.loaded: list[bytes] = []
        self.import_answer = '{"status":"Importing"}\n{"status":"sha256:new"}\n'

    def inspect_image(self, reference: str) -> dict[str, Any]:
        if reference not in ("x:1", "sha256:x"):
            raise docker.errors.ImageNotFound("no such image")
        return {"Id": "sha256:x", "RepoTags": ["localhost/x:1"], "Config": {"Labels": {"a": "1"}}, "RootFS": {}}

    def images(self, *, filters: dict[str, str]) -> list[dict[str, Any]]:
        return [{"Id": "sha256:x", "RepoTags": ["localhost/x:1"], "Labels": {"a": "1"}, "Size": 5, "Created": 9}]

    def import_image_from_file(self, path: str, *, changes: list[str]) -> str:
        self.imported.append(path)
        return self.import_answer

    def get_image(self, reference: str, chunk_size: int = 0) -> Iterator[bytes]:
        if reference != "x:1":
            raise docker.errors.ImageNotFound("no such image")
        return iter([self.saved])

    def load_image(self, data: Iterable[bytes] | IO[bytes]) -> Iterator[dict[str, str]]:
        self.loaded.append(data.read() if hasattr(data, "read") else b"".join(data))
        yield {"stream": "Loaded image: localhost/x:2\n"}


class _Client:
    def __init__(self, api: Images) -> None:
        self.api = api


def _images(api: Images, monkeypatch: pytest.MonkeyPatch, engine: Engine = PODMAN) -> DockerImages:
    runtime = DockerImages(
        _Client(api),  # type: ignore[arg-type]
        engine.host,
        engine_timeout=1,
        connection={"base_url": engine.host, "version": "1.41"},
        engine=engine,
    )
    monkeypatch.setattr(runtime, "_sdk_stream", api)
    return runtime


def test_images_are_found_by_the_names_xpcargo_gave(monkeypatch: pytest.MonkeyPatch) -> None:
    runtime = _images(Images(), monkeypatch)
    assert runtime.image_exists("x:1")
    assert not runtime.image_exists("y:1")
    assert runtime.inspect_image("y:1") is None
    details = runtime.inspect_image("x:1")
    assert details is not None
    assert (details.tags, details.labels) == (("x:1",), {"a": "1"})
    (listed,) = runtime.list_images("a=1")
    assert (listed.tags, listed.size) == (("x:1",), 5)


def test_an_import_names_its_image_or_says_why_not(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    api = Images()
    runtime = _images(api, monkeypatch)
    assert runtime.import_rootfs(tmp_path / "rootfs.tar", changes=[]) == "sha256:new"
    api.import_answer = '{"error":"no space left on device"}\n'
    with pytest.raises(EngineError, match=r"could not import rootfs.tar: no space left on device"):
        runtime.import_rootfs(tmp_path / "rootfs.tar", changes=[])
    api.import_answer = '{"status":"Importing"}\n'
    with pytest.raises(EngineError, match=r"imported rootfs.tar but named no image"):
        runtime.import_rootfs(tmp_path / "rootfs.tar", changes=[])


def test_a_save_that_fails_is_an_engine_error_before_anything_is_sent(monkeypatch: pytest.MonkeyPatch) -> None:
    runtime = _images(Images(saved=b"archive"), monkeypatch)
    assert b"".join(runtime.save_chunks("x:1")) == b"archive"
    with pytest.raises(EngineError, match=r"could not save image y:1: no such image"):
        runtime.save_chunks("y:1")


def test_a_load_names_what_it_loaded(monkeypatch: pytest.MonkeyPatch) -> None:
    api = Images()
    assert _images(api, monkeypatch).load_chunks([b"a", b"b"]) == ["x:2"]
    assert api.loaded == [b"ab"]


def _archive(path: Path, layers: list[tuple[str, bytes | None]], tmp_path: Path) -> None:
    """A `docker save` archive of layers ``(diff_id, content)``, a content of None left out."""
    tars = []
    for diff_id, content in layers:
        tar = None
        if content is not None:
            tar = tmp_path / f"{diff_id[7:15]}.tar"
            tar.write_bytes(content)
        tars.append((diff_id, tar))
    config = json.dumps({"rootfs": {"type": "layers", "diff_ids": [d for d, _ in layers]}}).encode()
    docker_archive.write(path, config=config, layers=tars)


def test_podman_gets_the_layers_an_archive_leaves_out_from_the_base(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    (tmp_path / "base").mkdir()
    _archive(tmp_path / "base.tar", [("sha256:" + "b" * 64, b"base")], tmp_path / "base")
    api = Images(saved=(tmp_path / "base.tar").read_bytes())
    partial = tmp_path / "partial.tar"
    _archive(partial, [("sha256:" + "b" * 64, None), ("sha256:" + "c" * 64, b"top")], tmp_path)
    assert _images(api, monkeypatch).load_image(partial, base="x:1") == ["x:2"]
    (loaded,) = api.loaded
    assert b"base" in loaded
    assert b"top" in loaded
    # Nothing of the donor or the completed archive is left beside the partial one.
    assert sorted(p.name for p in tmp_path.iterdir() if p.is_file()) == ["base.tar", "cccccccc.tar", "partial.tar"]


def test_docker_loads_an_archive_as_it_is(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    docker_engine = Engine(kind=EngineKind.DOCKER, version="20.10.24", api_version="1.41", host="unix:///d.sock")
    api = Images()
    partial = tmp_path / "partial.tar"
    partial.write_bytes(b"as it is")
    assert _images(api, monkeypatch, docker_engine).load_image(partial, base="x:1") == ["localhost/x:2"]
    assert api.loaded == [b"as it is"]


def test_a_connection_lost_in_a_load_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    class Drops(Images):
        def load_image(self, data: Iterable[bytes] | IO[bytes]) -> Iterator[dict[str, str]]:
            raise requests.exceptions.ConnectionError("Connection aborted.")

    with pytest.raises(EngineUnavailableError, match=r"lost the Podman engine at .* while trying to load an image"):
        _images(Drops(), monkeypatch).load_chunks([b""])
