"""``links`` overrides on Cargo's side: those a Cargo config file holds, and xpcargo's own (``config/links.py``)
written as a Cargo config file, which xpcargo hands to Cargo with ``--config``."""

from __future__ import annotations

from collections.abc import Mapping

from xpcargo.cargo.protocol import TARGET_SETTING_KEYS
from xpcargo.config.links import LinksOverrides
from xpcargo.errors import ConfigError
from xpcargo.files import toml_key, toml_table, toml_value


def from_cargo_config(data: Mapping[str, object], triple: str) -> LinksOverrides:
    """The overrides in one parsed Cargo config file: the tables of ``[target.<triple>]`` that are no setting."""
    target = data.get("target")
    table = target.get(triple) if isinstance(target, dict) else None
    if not isinstance(table, dict):
        return LinksOverrides()
    return LinksOverrides(
        {
            str(links): override
            for links, override in table.items()
            if links not in TARGET_SETTING_KEYS and isinstance(override, dict)
        }
    )


def as_cargo_config(overrides: LinksOverrides, triple: str) -> str:
    """The overrides as a Cargo config file, for ``cargo --config <file>``."""
    lines = []
    for links, table in overrides.tables.items():
        lines.append(toml_table(toml_key("target"), toml_key(triple, quoted=True), toml_key(links, quoted=True)))
        for key, value in table.items():
            try:
                lines.append(f"{toml_key(key, quoted=True)} = {toml_value(value)}")
            except TypeError as error:
                raise ConfigError(f"a links override holds a value {error}") from None
        lines.append("")
    return "\n".join(lines)
