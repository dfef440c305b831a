"""`xpcargo trust`: what it says with nothing to consent to, when it consents, shows and revokes."""

from __future__ import annotations

from pathlib import Path

from xpcargo.commands import trust
from xpcargo.context import Context


def _context(tmp_path: Path, xpcargo_toml: str = "") -> tuple[Context, Path]:
    root = tmp_path / "app"
    (root / "src").mkdir(parents=True)
    (root / "src" / "lib.rs").write_text("", encoding="utf-8")
    (root / "Cargo.toml").write_text('[package]\nname = "app"\nversion = "0.1.0"\n', encoding="utf-8")
    if xpcargo_toml:
        (root / "xpcargo.toml").write_text(xpcargo_toml, encoding="utf-8")
    environ = {
        "HOME": str(tmp_path / "home"),
        "XDG_CONFIG_HOME": str(tmp_path / "config"),
        "XPCARGO_CACHE_DIR": str(tmp_path / "cache"),
    }
    return Context.create(cwd=root, environ=environ), root.resolve()


def test_nothing_to_consent_to(tmp_path: Path) -> None:
    context, root = _context(tmp_path)
    said = trust.trust(context, revoke=False, show=True, manifest_path=None)
    assert said.lines == ()
    assert said.statuses == (("Trusted", f"nothing to consent to: the settings of {root} reach nothing outside it"),)


def test_show_consent_and_revoke(tmp_path: Path) -> None:
    (tmp_path / "sdk").mkdir()
    context, root = _context(tmp_path, f'[build]\nmounts = ["{tmp_path / "sdk"}"]\n')
    shown = trust.trust(context, revoke=False, show=True, manifest_path=None)
    assert shown.lines
    assert shown.statuses == (("Untrusted", f"{root}: `xpcargo trust` consents"),)
    consented = trust.trust(context, revoke=False, show=False, manifest_path=None)
    assert consented.lines == shown.lines
    ((verb, message),) = consented.statuses
    assert (verb, message.startswith(f"{root}, these settings only")) == ("Trusted", True)
    assert trust.trust(context, revoke=True, show=False, manifest_path=None).statuses == (
        ("Revoked", f"the consent for {root}"),
    )
    assert trust.trust(context, revoke=True, show=False, manifest_path=None).statuses == (
        ("Revoked", f"no consent for {root}"),
    )
