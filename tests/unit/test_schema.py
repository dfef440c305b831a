"""The YAML parses kept in the cache dir (``schema.load_yaml`` with ``parsed``): what a warm build reads instead of
importing PyYAML. An entry must never stand for other bytes than its own, and a cache that fails is no error."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from xpcargo import resources
from xpcargo.config.schema import load_yaml
from xpcargo.config.targets import load_toolchains
from xpcargo.errors import ConfigError


def _entries(parsed: Path) -> list[Path]:
    return sorted(parsed.glob("*.json")) if parsed.is_dir() else []


def test_the_second_read_is_the_kept_parse(tmp_path: Path) -> None:
    source = tmp_path / "table.yaml"
    source.write_text("version: 1\nnames: [a, b]\nnested: {x: 1.5, y: null, z: true}\n", encoding="utf-8")
    parsed = tmp_path / "parsed"
    first = load_yaml(source, parsed=parsed)
    (entry,) = _entries(parsed)
    assert json.loads(entry.read_text(encoding="utf-8")) == first
    # What is read back is the entry's: changed here, the change shows (the same bytes, so the same entry).
    entry.write_text(json.dumps({"version": 2}), encoding="utf-8")
    assert load_yaml(source, parsed=parsed) == {"version": 2}


def test_changed_text_is_parsed_again(tmp_path: Path) -> None:
    source = tmp_path / "table.yaml"
    parsed = tmp_path / "parsed"
    source.write_text("version: 1\n", encoding="utf-8")
    assert load_yaml(source, parsed=parsed) == {"version": 1}
    # The same size and, within the clock's grain, maybe the same time: only the bytes tell them apart.
    source.write_text("version: 2\n", encoding="utf-8")
    assert load_yaml(source, parsed=parsed) == {"version": 2}
    assert len(_entries(parsed)) == 2


@pytest.mark.parametrize("damage", [b"", b"{not json", b"[" * 100_000])
def test_a_damaged_entry_is_parsed_again_and_replaced(tmp_path: Path, damage: bytes) -> None:
    source = tmp_path / "table.yaml"
    source.write_text("version: 1\n", encoding="utf-8")
    parsed = tmp_path / "parsed"
    load_yaml(source, parsed=parsed)
    (entry,) = _entries(parsed)
    entry.write_bytes(damage)
    assert load_yaml(source, parsed=parsed) == {"version": 1}
    assert json.loads(entry.read_text(encoding="utf-8")) == {"version": 1}


@pytest.mark.parametrize(
    "text",
    [
        "1.85: a float key\n",  # JSON would make it the string "1.85"
        "7: an int key\n",
        "when: 2026-12-07\n",  # a date
        "set: !!set {a, b}\n",
        "nan: .nan\n",
    ],
)
def test_what_json_would_change_is_not_kept(tmp_path: Path, text: str) -> None:
    source = tmp_path / "table.yaml"
    source.write_text(text, encoding="utf-8")
    parsed = tmp_path / "parsed"
    first = load_yaml(source, parsed=parsed)
    assert _entries(parsed) == []
    assert repr(load_yaml(source, parsed=parsed)) == repr(first)


def test_bad_yaml_is_the_same_error_and_nothing_is_kept(tmp_path: Path) -> None:
    source = tmp_path / "toolchains.yaml"
    source.write_text("version: 1\ntargets:\n\tx: 1\n", encoding="utf-8")
    parsed = tmp_path / "parsed"
    with pytest.raises(ConfigError, match="not valid YAML at line 3"):
        load_yaml(source, parsed=parsed)
    assert _entries(parsed) == []


def test_a_cache_path_that_is_a_file_is_no_error(tmp_path: Path) -> None:
    blocked = tmp_path / "parsed"
    blocked.write_text("not a directory", encoding="utf-8")
    assert load_toolchains(resources.toolchains_file(), parsed=blocked).targets


def test_the_toolchain_table_read_back_is_the_same_table(tmp_path: Path) -> None:
    parsed = tmp_path / "parsed"
    fresh = load_toolchains(resources.toolchains_file(), parsed=parsed)
    assert len(_entries(parsed)) == 1
    assert (
        load_toolchains(resources.toolchains_file(), parsed=parsed)
        == fresh
        == load_toolchains(resources.toolchains_file())
    )


def test_pyyaml_is_not_imported_for_a_kept_parse(tmp_path: Path) -> None:
    """The point of the cache, in a process of its own: the second read imports no PyYAML."""
    code = (
        "import sys\n"
        "from pathlib import Path\n"
        "from xpcargo import resources\n"
        "from xpcargo.config.targets import load_toolchains\n"
        "load_toolchains(resources.toolchains_file(), parsed=Path(sys.argv[1]))\n"
        "print('yaml' in sys.modules)\n"
    )
    runs = [
        subprocess.run(
            [sys.executable, "-c", code, str(tmp_path / "parsed")], capture_output=True, text=True, check=True
        ).stdout.strip()
        for _ in range(2)
    ]
    assert runs == ["True", "False"]
