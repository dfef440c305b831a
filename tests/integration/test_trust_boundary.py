"""The trust boundary, tried for real: a project's settings that reach outside its checkout take effect only with the
user's consent, and some places are never mounted whatever the consent (config.trust).

Each hostile case runs the reach-home fixture, whose build script appends to ``~/.bashrc``, plants
``~/.ssh/authorized_keys`` and prints whatever secret it can read, against a home directory of the test's own with
canary files, passed as HOME.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from .helpers import FIXTURES, X86_64, Cli, Result, assert_elf_for, copy_fixture, docker, single_error_line

pytestmark = pytest.mark.engine

BASHRC = "# the user's own .bashrc\n"
PRIVATE_KEY = "CANARY-PRIVATE-KEY-5f3a"
SECRET = "CANARY-SECRET-91c2"
UNTRUSTED = 13
CONFIG = 3


@dataclass(frozen=True)
class Scene:
    project: Path
    home: Path
    env: dict[str, str | None]

    def cargo_config(self, text: str) -> None:
        (self.project / ".cargo").mkdir(exist_ok=True)
        (self.project / ".cargo" / "config.toml").write_text(text, encoding="utf-8")

    def xpcargo_toml(self, text: str) -> None:
        (self.project / "xpcargo.toml").write_text(text, encoding="utf-8")

    def manifest(self, extra: str) -> None:
        manifest = self.project / "Cargo.toml"
        manifest.write_text(manifest.read_text(encoding="utf-8") + extra, encoding="utf-8")

    def home_untouched(self) -> bool:
        return (self.home / ".bashrc").read_text(encoding="utf-8") == BASHRC and not (
            self.home / ".ssh" / "authorized_keys"
        ).exists()


@pytest.fixture
def scene(tmp_path_factory: pytest.TempPathFactory, tmp_path: Path) -> Scene:
    project = copy_fixture(tmp_path_factory, "reach-home")
    home = tmp_path / "home"
    (home / ".ssh").mkdir(parents=True)
    (home / ".bashrc").write_text(BASHRC, encoding="utf-8")
    (home / ".ssh" / "id_ed25519").write_text(PRIVATE_KEY + "\n", encoding="utf-8")
    # The fake HOME is the user's; xpcargo's cache stays the session's, so that nothing is fetched anew.
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "xpcargo"
    env: dict[str, str | None] = {
        "HOME": str(home),
        "XDG_CONFIG_HOME": str(tmp_path / "config"),
        "XPCARGO_CACHE_DIR": str(cache),
        "XPCARGO_ENGINE_TIMEOUT": "5",
    }
    return Scene(project=project, home=home, env=env)


def _build(cli: Cli, scene: Scene, **env: str | None) -> Result:
    return cli(["build", "--target", X86_64], cwd=scene.project, env={**scene.env, **env})


def _leaked(result: Result) -> bool:
    return "LEAKED" in result.stdout + result.stderr


# --- Refused without consent, and whatever the consent ----------------------------------------------------------------


def test_a_target_dir_at_home_is_refused_and_home_is_untouched(scene: Scene, xpcargo: Cli) -> None:
    scene.cargo_config(f'[build]\ntarget-dir = "{scene.home}"\n\n[env]\nREACH_HOME = "{scene.home}"\n')
    for consent in (None, "1"):
        result = _build(xpcargo, scene, XPCARGO_TRUST=consent)
        line = single_error_line(result)
        assert result.code == CONFIG, result
        assert f"refusing to mount `{scene.home}` (asked for by `build.target-dir` in " in line, result
    assert scene.home_untouched()


@pytest.mark.parametrize("where", ["home-ssh", "dotdot"])
def test_a_path_dependency_reaching_a_secret_is_refused_whatever_the_consent(
    scene: Scene, xpcargo: Cli, where: str
) -> None:
    path = scene.home / ".ssh" if where == "home-ssh" else "../../.."
    scene.manifest(f'\n[workspace.dependencies]\nkeys = {{ path = "{path}" }}\n')
    scene.cargo_config(f'[env]\nREACH_FILE = "{scene.home / ".ssh" / "id_ed25519"}"\n')
    for consent in (None, "1"):
        result = _build(xpcargo, scene, XPCARGO_TRUST=consent)
        line = single_error_line(result)
        assert result.code == CONFIG, result
        assert "(asked for by `workspace.dependencies.keys.path` in " in line, result
        assert not _leaked(result), result


def test_a_patch_outside_the_checkout_needs_consent(scene: Scene, xpcargo: Cli) -> None:
    secrets = scene.project.parent / "secrets"
    (secrets / "src").mkdir(parents=True)
    (secrets / "Cargo.toml").write_text('[package]\nname = "foo"\nversion = "0.1.0"\n', encoding="utf-8")
    (secrets / "src" / "lib.rs").write_text("", encoding="utf-8")
    (secrets / "token.txt").write_text(SECRET, encoding="utf-8")
    scene.manifest('\n[patch.crates-io]\nfoo = { path = "../secrets" }\n')
    scene.cargo_config(f'[env]\nREACH_FILE = "{secrets / "token.txt"}"\n')
    result = _build(xpcargo, scene)
    line = single_error_line(result)
    assert result.code == UNTRUSTED, result
    assert f"`patch.crates-io.foo.path` in {scene.project / 'Cargo.toml'} reaches outside the checkout" in line
    assert "xpcargo trust" in line
    assert not _leaked(result), result


def test_a_links_override_path_to_etc_is_refused_even_after_consent(scene: Scene, xpcargo: Cli) -> None:
    scene.cargo_config(f'[target.{X86_64}.z]\nrustc-link-search = ["native=/etc"]\nrustc-link-lib = ["z"]\n')
    # Never mounted: the first thing said, with or without consent.
    assert _build(xpcargo, scene).code == CONFIG
    trusted = xpcargo(["trust"], cwd=scene.project, env=scene.env)
    assert trusted.code == CONFIG, trusted
    assert "refusing to mount `/etc`" in single_error_line(trusted)
    result = _build(xpcargo, scene, XPCARGO_TRUST="1")
    line = single_error_line(result)
    assert result.code == CONFIG, result
    assert f"refusing to mount `/etc` (asked for by a `links` override `[target.{X86_64}.z]` in " in line, result


@pytest.mark.parametrize("where", ["engine-data", "home"])
def test_mounts_of_the_engines_data_or_home_are_refused_even_after_consent(
    scene: Scene, xpcargo: Cli, where: str
) -> None:
    path = "/var/lib/docker" if where == "engine-data" else str(scene.home)
    scene.xpcargo_toml(f'[build]\nmounts = ["{path}"]\n')
    scene.cargo_config(f'[env]\nREACH_FILE = "{scene.home / ".ssh" / "id_ed25519"}"\n')
    unconsented = _build(xpcargo, scene)
    assert unconsented.code == CONFIG, unconsented
    assert not _leaked(unconsented), unconsented
    trusted = xpcargo(["trust"], cwd=scene.project, env=scene.env)
    assert trusted.code == CONFIG, trusted
    result = _build(xpcargo, scene, XPCARGO_TRUST="1")
    line = single_error_line(result)
    assert result.code == CONFIG, result
    assert f"refusing to mount `{path}` (asked for by `mounts` of [build] in " in line, result
    assert not _leaked(result), result


def test_passthrough_needs_consent(scene: Scene, xpcargo: Cli) -> None:
    scene.xpcargo_toml('[build]\npassthrough = ["CANARY_SECRET"]\n')
    refused = _build(xpcargo, scene, CANARY_SECRET=SECRET)
    line = single_error_line(refused)
    assert refused.code == UNTRUSTED, refused
    assert "`passthrough` of [build] in " in line
    assert "reaches outside the checkout (CANARY_SECRET)" in line
    assert SECRET not in refused.stdout + refused.stderr
    # Consent, for one command or recorded: the variable the user agreed to reaches the build.
    consented = _build(xpcargo, scene, CANARY_SECRET=SECRET, XPCARGO_TRUST="1")
    assert consented.code == 0, consented
    assert f"LEAKED {SECRET}" in consented.stdout + consented.stderr, consented
    trusted = xpcargo(["trust"], cwd=scene.project, env=scene.env)
    assert trusted.code == 0, trusted
    assert "`passthrough` of [build]" in trusted.stdout, trusted
    assert _build(xpcargo, scene, CANARY_SECRET=SECRET).code == 0


def test_an_engine_named_by_the_project_is_not_contacted_without_consent(scene: Scene, cli: Cli) -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        listener.setblocking(False)
        port = listener.getsockname()[1]
        scene.xpcargo_toml(f'[target.{X86_64}]\nengine = "tcp://127.0.0.1:{port}"\n')
        result = _build(cli, scene)
        line = single_error_line(result)
        assert result.code == UNTRUSTED, result
        assert f"`engine` of [target.{X86_64}] in " in line
        assert f"(tcp://127.0.0.1:{port})" in line
        with pytest.raises(BlockingIOError):
            listener.accept()


def test_an_image_named_by_the_project_needs_consent(scene: Scene, xpcargo: Cli) -> None:
    image = next(
        line for line in docker("images", "--format", "{{.Repository}}:{{.Tag}}").split() if f"/{X86_64}:" in line
    )
    scene.xpcargo_toml(f'[target.{X86_64}]\nimage = "{image}"\n')
    result = _build(xpcargo, scene)
    line = single_error_line(result)
    assert result.code == UNTRUSTED, result
    assert f"`image` of [target.{X86_64}] in " in line
    assert _build(xpcargo, scene, XPCARGO_TRUST="1").code == 0


# --- Legitimate use keeps working -------------------------------------------------------------------------------------


def test_a_monorepo_workspace_reaches_its_checkout_without_consent(
    tmp_path_factory: pytest.TempPathFactory, scene: Scene, xpcargo: Cli
) -> None:
    """path-dep's app depends on ../outside: outside the workspace, inside the git checkout around both."""
    root = tmp_path_factory.mktemp("monorepo") / "repo"
    shutil.copytree(FIXTURES / "path-dep", root, ignore=shutil.ignore_patterns("target"))
    alone = xpcargo(["build", "--target", X86_64], cwd=root / "app", env=scene.env)
    assert alone.code == UNTRUSTED, alone
    assert "`dependencies.outside.path` in " in single_error_line(alone)
    subprocess.run(["git", "init", "-q", str(root)], check=True)
    built = xpcargo(["build", "--target", X86_64], cwd=root / "app", env=scene.env)
    assert built.code == 0, built
    assert_elf_for(root / "app" / "target" / X86_64 / "debug" / "app", X86_64)


def test_the_users_target_dir_outside_the_checkout_needs_no_consent(scene: Scene, xpcargo: Cli, tmp_path: Path) -> None:
    target_dir = tmp_path / "elsewhere" / "target"
    result = _build(xpcargo, scene, CARGO_TARGET_DIR=str(target_dir))
    assert result.code == 0, result
    assert_elf_for(target_dir / X86_64 / "debug" / "reach-home", X86_64)


def test_a_mount_outside_the_checkout_after_xpcargo_trust(scene: Scene, xpcargo: Cli, tmp_path: Path) -> None:
    sdk, other = tmp_path / "sdk", tmp_path / "other"
    for directory in (sdk, other):
        directory.mkdir()
        (directory / "note.txt").write_text(f"a file of {directory.name}", encoding="utf-8")
    scene.xpcargo_toml(f'[build]\nmounts = ["{sdk}"]\n')
    scene.cargo_config(f'[env]\nREACH_FILE = "{sdk / "note.txt"}"\n')
    refused = _build(xpcargo, scene)
    assert refused.code == UNTRUSTED, refused
    assert "`mounts` of [build] in " in single_error_line(refused)
    trusted = xpcargo(["trust"], cwd=scene.project, env=scene.env)
    assert trusted.code == 0, trusted
    built = _build(xpcargo, scene)
    assert built.code == 0, built
    assert "LEAKED a file of sdk" in built.stdout + built.stderr, built
    # Another directory: the consent was to the first one only.
    scene.xpcargo_toml(f'[build]\nmounts = ["{other}"]\n')
    changed = _build(xpcargo, scene)
    assert changed.code == UNTRUSTED, changed
    assert "changed since you ran `xpcargo trust`" in single_error_line(changed)
    assert _build(xpcargo, scene, XPCARGO_TRUST="1").code == 0
    revoked = xpcargo(["trust", "--revoke"], cwd=scene.project, env=scene.env)
    assert revoked.code == 0, revoked
    assert _build(xpcargo, scene).code == UNTRUSTED


def test_a_cargo_config_linked_outside_the_checkout_needs_consent(scene: Scene, xpcargo: Cli) -> None:
    # A monorepo: the checkout is above the workspace, and its `.cargo/config.toml` is a link the project ships to a
    # TOML file of the user's secrets. It was taken for the user's own config (judged by where it leads) and mounted
    # at the link's place, which the engine follows: the build read the secret with no consent asked.
    secret = scene.home / ".config" / "tool" / "auth.toml"
    secret.parent.mkdir(parents=True)
    secret.write_text(f'[tool]\npassword = "{SECRET}"\n', encoding="utf-8")
    repo = scene.project.parent
    (repo / ".git").mkdir()
    (repo / ".cargo").mkdir()
    (repo / ".cargo" / "config.toml").symlink_to(secret)
    scene.cargo_config(f'[env]\nREACH_FILE = "{repo / ".cargo" / "config.toml"}"\n')
    refused = _build(xpcargo, scene)
    assert refused.code == UNTRUSTED, refused
    assert f"reaches outside the checkout ({secret})" in single_error_line(refused), refused
    assert SECRET not in refused.stdout + refused.stderr, refused


def test_a_link_swapped_after_consent_withdraws_it(scene: Scene, xpcargo: Cli) -> None:
    # The project ships `vendor/x`, a link the user consented to as leading to an SDK; the link's text stays, its
    # target moves (a `git pull`, or the build script of the consented build) to a directory of the user's secrets.
    sdk = scene.project.parent / "sdk"
    sdk.mkdir()
    tokens = scene.home / ".config" / "gh"
    tokens.mkdir(parents=True)
    (tokens / "hosts.yml").write_text(f"oauth_token: {SECRET}\n", encoding="utf-8")
    link = scene.project / "vendor" / "x"
    link.parent.mkdir()
    link.symlink_to(sdk)
    scene.manifest('\n[workspace.dependencies]\nx = { path = "vendor/x" }\n')
    scene.cargo_config(f'[env]\nREACH_FILE = "{tokens / "hosts.yml"}"\n')
    trusted = xpcargo(["trust"], cwd=scene.project, env=scene.env)
    assert trusted.code == 0, trusted
    assert f"vendor/x (leads to {sdk})" in trusted.stdout, trusted
    assert _build(xpcargo, scene).code == 0
    link.unlink()
    link.symlink_to(tokens)
    # The build script runs again (as it would after any change), so that on the old code it printed the token.
    (scene.project / "build.rs").touch()
    swapped = _build(xpcargo, scene)
    assert swapped.code == UNTRUSTED, swapped
    assert "changed since you ran `xpcargo trust`" in single_error_line(swapped), swapped
    assert SECRET not in swapped.stdout + swapped.stderr, swapped
