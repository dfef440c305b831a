"""The zip writer (a Windows release's archive): the same members give the same bytes whatever the files' times
and modes, Python's own zip reader reads them back as written, and a name that would extract anywhere but where it
says is refused."""

from __future__ import annotations

import io
import os
import zipfile
from pathlib import Path

import pytest

from xpcargo.errors import ProjectError
from xpcargo.release import archive

EPOCH = 1_700_000_000


def _member(path: Path, name: str = "app.exe", content: bytes = b"MZ program" * 100) -> archive.Member:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)
    return archive.Member(name=name, source=path, executable=True)


def test_the_same_files_give_the_same_bytes_whatever_their_metadata(tmp_path: Path) -> None:
    one = _member(tmp_path / "one" / "app.exe")
    two = _member(tmp_path / "two" / "app.exe")
    one.source.chmod(0o700)
    two.source.chmod(0o664)
    os.utime(two.source, (1, 2_000_000_000))
    first = archive.zip_bytes([one], mtime=EPOCH)
    assert archive.zip_bytes([two], mtime=EPOCH) == first
    assert archive.zip_bytes([one], mtime=EPOCH + 2) != first
    # No extra fields, no comment: the central directory ends the file with its fixed 22-byte record.
    assert first[-22:-18] == b"PK\x05\x06"
    assert first[-2:] == b"\0\0"


def test_zipfile_reads_back_what_was_written(tmp_path: Path) -> None:
    members = [
        _member(tmp_path / "b", "b.exe", b"second"),
        archive.Member(name="a.txt", source=tmp_path / "a", data=b"first" * 1000),
    ]
    data = archive.zip_bytes(members, mtime=EPOCH)
    with zipfile.ZipFile(io.BytesIO(data)) as packed:
        assert packed.testzip() is None
        infos = packed.infolist()
        assert [info.filename for info in infos] == ["a.txt", "b.exe"]
        assert packed.read("a.txt") == b"first" * 1000
        assert packed.read("b.exe") == b"second"
        assert [info.external_attr >> 16 for info in infos] == [0o100644, 0o100755]
        assert all(info.extra == b"" and info.compress_type == zipfile.ZIP_DEFLATED for info in infos)
        # 2023-11-14 22:13:20 UTC, in DOS time's two-second steps.
        assert infos[0].date_time == (2023, 11, 14, 22, 13, 20)


def test_a_date_before_1980_is_1980(tmp_path: Path) -> None:
    data = archive.zip_bytes([_member(tmp_path / "app.exe")], mtime=0)
    with zipfile.ZipFile(io.BytesIO(data)) as packed:
        assert packed.infolist()[0].date_time == (1980, 1, 1, 0, 0, 0)


@pytest.mark.parametrize(
    "name", ["../app.exe", "..\\..\\app.exe", "/etc/app.exe", "C:app.exe", "a/./b.exe", "app.exe\n", "", "dir/"]
)
def test_a_name_that_would_extract_elsewhere_is_refused(tmp_path: Path, name: str) -> None:
    with pytest.raises(ProjectError, match="refusing to pack"):
        archive.zip_bytes([_member(tmp_path / "app.exe", name)], mtime=EPOCH)


def test_two_members_of_one_name_are_refused(tmp_path: Path) -> None:
    member = _member(tmp_path / "app.exe")
    with pytest.raises(ProjectError, match="as one name"):
        archive.zip_bytes([member, member], mtime=EPOCH)
