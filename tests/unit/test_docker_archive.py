"""The `docker save` archive: written from a plan, read back, filled in from another image, filtered in flight."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from pathlib import Path

import pytest

from xpcargo.container import docker_archive
from xpcargo.errors import EngineError


def _digest(content: bytes) -> str:
    return f"sha256:{hashlib.sha256(content).hexdigest()}"


def _layer(tmp_path: Path, content: bytes) -> tuple[str, Path]:
    tar = tmp_path / f"{hashlib.sha256(content).hexdigest()[:8]}.tar"
    tar.write_bytes(content)
    return _digest(content), tar


def _config(*diff_ids: str) -> bytes:
    return docker_archive.image_config(
        architecture="amd64",
        diff_ids=diff_ids,
        labels={"b": "2", "a": "1"},
        created=0,
        history=["base"] * len(diff_ids),
    )


def test_the_configuration_is_canonical_and_names_the_image() -> None:
    config = _config("sha256:aa")
    assert config == _config("sha256:aa")
    parsed = json.loads(config)
    assert parsed["rootfs"] == {"type": "layers", "diff_ids": ["sha256:aa"]}
    assert parsed["created"] == "1970-01-01T00:00:00Z"
    assert parsed["config"]["Env"] == list(docker_archive.ENVIRONMENT)
    assert list(parsed["config"]["Labels"]) == ["a", "b"]
    assert docker_archive.image_id(config) == _digest(config)


def test_an_archive_written_leaves_out_the_layers_the_engine_holds(tmp_path: Path) -> None:
    (base, _), (top, top_tar) = _layer(tmp_path, b"base"), _layer(tmp_path, b"top")
    config = _config(base, top)
    archive = tmp_path / "image.tar"
    assert docker_archive.write(archive, config=config, layers=[(base, None), (top, top_tar)]) == _digest(config)
    with tarfile.open(archive) as opened:
        assert docker_archive.layers(opened) == [
            (f"{base.removeprefix('sha256:')}/layer.tar", base),
            (f"{top.removeprefix('sha256:')}/layer.tar", top),
        ]
        assert f"{base.removeprefix('sha256:')}/layer.tar" not in opened.getnames()
        assert opened.extractfile(f"{top.removeprefix('sha256:')}/layer.tar").read() == b"top"  # type: ignore[union-attr]
        assert docker_archive.read_json(opened, "manifest.json")[0]["RepoTags"] is None


def _saved(destination: Path, layers: list[tuple[str, bytes]]) -> None:
    """An archive as `docker save` of Docker before 25 writes it: each layer's tar under a v1 id, not its digest."""
    names = [f"{hashlib.sha256(name.encode()).hexdigest()}/layer.tar" for name, _ in layers]
    config = json.dumps({"rootfs": {"type": "layers", "diff_ids": [_digest(c) for _, c in layers]}}).encode()
    manifest = json.dumps([{"Config": "config.json", "RepoTags": ["donor:1"], "Layers": names}]).encode()
    with tarfile.open(destination, "w") as archive:
        for name, content in [*zip(names, (c for _, c in layers), strict=True), ("config.json", config)]:
            _add(archive, name, content)
        _add(archive, "manifest.json", manifest)


def _add(archive: tarfile.TarFile, name: str, content: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(content)
    archive.addfile(info, io.BytesIO(content))


def test_the_layers_left_out_are_filled_in_from_a_donor(tmp_path: Path) -> None:
    (base, _), (top, top_tar) = _layer(tmp_path, b"base"), _layer(tmp_path, b"top")
    partial, donor, complete = tmp_path / "partial.tar", tmp_path / "donor.tar", tmp_path / "complete.tar"
    docker_archive.write(partial, config=_config(base, top), layers=[(base, None), (top, top_tar)])
    _saved(donor, [("v1-base", b"base")])
    docker_archive.fill_layers(partial, donor, complete)
    with tarfile.open(complete) as opened:
        contents = {name: opened.extractfile(name).read() for name, _ in docker_archive.layers(opened)}  # type: ignore[union-attr]
    assert sorted(contents.values()) == [b"base", b"top"]


def test_a_donor_without_the_layer_is_an_engine_error(tmp_path: Path) -> None:
    (base, _), (top, top_tar) = _layer(tmp_path, b"base"), _layer(tmp_path, b"top")
    partial, donor = tmp_path / "partial.tar", tmp_path / "donor.tar"
    docker_archive.write(partial, config=_config(base, top), layers=[(base, None), (top, top_tar)])
    _saved(donor, [("v1-other", b"other")])
    with pytest.raises(EngineError, match="has no layer"):
        docker_archive.fill_layers(partial, donor, tmp_path / "complete.tar")


def test_the_filter_leaves_every_other_byte_as_it_is() -> None:
    buffer = io.BytesIO()
    # PAX headers and a long name (over 100 characters) on the way.
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as archive:
        for name, content in [
            ("a" * 64 + "/layer.tar", b"held layer"),
            ("b" * 64 + "/" + "x" * 120, "ü".encode()),
            ("c" * 64 + "/layer.tar", b"new layer"),
            ("manifest.json", b"[]"),
        ]:
            info = tarfile.TarInfo(name)
            info.size = len(content)
            info.pax_headers = {"comment": "é"}
            archive.addfile(info, io.BytesIO(content))
    data = buffer.getvalue()
    held = frozenset({f"sha256:{hashlib.sha256(b'held layer').hexdigest()}"})
    chunks = [data[i : i + 333] for i in range(0, len(data), 333)]
    tally = docker_archive.Tally()
    filtered = b"".join(docker_archive.without_layers(chunks, held, tally))
    with tarfile.open(fileobj=io.BytesIO(filtered)) as archive:
        assert [(m.name, archive.extractfile(m).read()) for m in archive.getmembers()] == [  # type: ignore[union-attr]
            ("b" * 64 + "/" + "x" * 120, "ü".encode()),
            ("c" * 64 + "/layer.tar", b"new layer"),
            ("manifest.json", b"[]"),
        ]
    assert (tally.sent, tally.held, tally.bytes) == (1, 1, len(filtered))
    # Nothing held: the archive passes byte for byte.
    assert b"".join(docker_archive.without_layers(chunks, frozenset(), docker_archive.Tally())) == data


def test_an_oci_layer_held_is_left_out_unread() -> None:
    buffer = io.BytesIO()
    held_blob, new_blob = b"held layer", b"new layer"
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.GNU_FORMAT) as archive:
        for name, content in [
            (f"blobs/sha256/{hashlib.sha256(held_blob).hexdigest()}", held_blob),
            (f"blobs/sha256/{hashlib.sha256(new_blob).hexdigest()}", new_blob),
            ("index.json", b"{}"),
        ]:
            _add(archive, name, content)
    tally = docker_archive.Tally()
    filtered = b"".join(docker_archive.without_layers([buffer.getvalue()], frozenset({_digest(held_blob)}), tally))
    with tarfile.open(fileobj=io.BytesIO(filtered)) as archive:
        assert [m.name for m in archive.getmembers()] == [
            f"blobs/sha256/{hashlib.sha256(new_blob).hexdigest()}",
            "index.json",
        ]
    assert (tally.sent, tally.held) == (0, 1)


def test_an_archive_cut_short_is_an_engine_error() -> None:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        _add(archive, "manifest.json", b"[]" * 1000)
    with pytest.raises(EngineError, match="ended in the middle of a file"):
        b"".join(docker_archive.without_layers([buffer.getvalue()[:1024]], frozenset(), docker_archive.Tally()))
