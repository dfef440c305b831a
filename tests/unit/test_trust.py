"""The trust boundary (config.trust): the checkout, what its settings ask of the host beyond it, consent, and the
places never mounted. Pure: files in tmp_path, no engine."""

from __future__ import annotations

import re
import stat
import textwrap
from pathlib import Path

import pytest

from xpcargo.cargo.args import parse_cargo_args
from xpcargo.cargo.project import Project, discover
from xpcargo.config import trust
from xpcargo.config.targets import load_project_config
from xpcargo.container.spec import Mount
from xpcargo.context import Context
from xpcargo.errors import ConfigError, UntrustedError
from xpcargo.pipeline import plan as build_plan
from xpcargo.pipeline.remote import RemoteWorkspace

from .projects import APP_LOCK, listening, plan_in

X86_64 = "x86_64-unknown-linux-gnu"
AARCH64 = "aarch64-unknown-linux-gnu"


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def _package(directory: Path, name: str = "app", extra: str = "") -> Path:
    _write(directory / "src" / "lib.rs", "")
    return _write(directory / "Cargo.toml", f'[package]\nname = "{name}"\nversion = "0.1.0"\n' + extra)


def _environ(tmp_path: Path, **extra: str) -> dict[str, str]:
    home = tmp_path / "home"
    (home / ".ssh").mkdir(parents=True, exist_ok=True)
    return {
        "HOME": str(home),
        "XDG_CONFIG_HOME": str(tmp_path / "config"),
        "XPCARGO_CACHE_DIR": str(tmp_path / "cache"),
        "PATH": "/usr/bin",
        **extra,
    }


def _boundary(cwd: Path, environ: dict[str, str], args: tuple[str, ...] = ()) -> trust.Boundary:
    context = Context.create(cwd=cwd, environ=environ)
    project = context.project(parse_cargo_args(list(args)))
    return build_plan.trust_boundary(context.host, project, context.project_config(project.workspace_root))


def _settings(boundary: trust.Boundary) -> list[str]:
    return [ask.setting for ask in boundary.asks]


# --- The checkout -----------------------------------------------------------------------------------------------------


def test_the_checkout_is_the_git_work_tree_found_without_git(tmp_path: Path) -> None:
    (tmp_path / "repo" / ".git").mkdir(parents=True)
    (tmp_path / "repo" / "crates" / "app").mkdir(parents=True)
    assert trust.find_checkout(tmp_path / "repo" / "crates" / "app", home=None) == (tmp_path / "repo").resolve()
    # A worktree's `.git` is a file.
    _write(tmp_path / "tree" / ".git", "gitdir: /elsewhere/.git/worktrees/tree\n")
    assert trust.find_checkout(tmp_path / "tree", home=None) == (tmp_path / "tree").resolve()
    (tmp_path / "plain").mkdir()
    assert trust.find_checkout(tmp_path / "plain", home=None) is None


def test_a_submodule_belongs_to_its_superprojects_checkout(tmp_path: Path) -> None:
    (tmp_path / "super" / ".git").mkdir(parents=True)
    _write(tmp_path / "super" / "vendor" / "sub" / ".git", "gitdir: ../../.git/modules/vendor/sub\n")
    assert trust.find_checkout(tmp_path / "super" / "vendor" / "sub", home=None) == (tmp_path / "super").resolve()


def test_a_git_repository_at_home_or_above_is_no_checkout(tmp_path: Path) -> None:
    home = tmp_path / "home"
    (home / ".git").mkdir(parents=True)
    (home / "project").mkdir()
    assert trust.find_checkout(home / "project", home=home.resolve()) is None
    (tmp_path / ".git").mkdir()
    assert trust.find_checkout(home / "project", home=home.resolve()) is None


def test_a_monorepo_workspace_in_a_subdirectory_reaches_its_siblings_freely(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    (repo / ".git").mkdir(parents=True)
    _package(repo / "libs" / "shared", "shared")
    _write(repo / "apps" / "Cargo.toml", '[workspace]\nmembers = ["app"]\n')
    _package(repo / "apps" / "app", extra='[dependencies]\nshared = { path = "../../libs/shared" }\n')
    boundary = _boundary(repo / "apps" / "app", _environ(tmp_path))
    assert boundary.checkout == repo.resolve()
    assert boundary.asks == ()
    trust.require(boundary, X86_64)


def test_without_git_the_checkout_is_the_workspace_root(tmp_path: Path) -> None:
    _package(tmp_path / "app")
    project = discover(tmp_path / "app", parse_cargo_args([]), environ=_environ(tmp_path))
    assert project.checkout == (tmp_path / "app").resolve()


def test_package_workspace_cannot_widen_the_checkout(tmp_path: Path) -> None:
    _write(tmp_path / "w" / "Cargo.toml", "[workspace]\n")  # a workspace above that does not list the package
    manifest = _package(tmp_path / "w" / "dl" / "evil")
    manifest.write_text(manifest.read_text().replace("[package]\n", '[package]\nworkspace = "../.."\n'))
    boundary = _boundary(tmp_path / "w" / "dl" / "evil", _environ(tmp_path))
    assert boundary.checkout == (tmp_path / "w" / "dl" / "evil").resolve()
    assert _settings(boundary) == ["`package.workspace`"]
    with pytest.raises(UntrustedError, match=r"`package\.workspace` in .*evil/Cargo\.toml reaches outside"):
        trust.require(boundary, X86_64)


# --- What the checkout asks for ---------------------------------------------------------------------------------------


def test_path_dependencies_patches_and_unused_workspace_dependencies_outside_are_asks(tmp_path: Path) -> None:
    _package(tmp_path / "outer", "outer")
    _package(
        tmp_path / "app",
        extra=f"""
        [workspace.dependencies]
        keys = {{ path = "{tmp_path / "home" / ".ssh"}" }}
        [patch.crates-io]
        outer = {{ path = "../outer" }}
        [dependencies]
        inner = {{ path = "inner" }}
        """,
    )
    _package(tmp_path / "app" / "inner", "inner")
    boundary = _boundary(tmp_path / "app", _environ(tmp_path))
    assert sorted(_settings(boundary)) == ["`patch.crates-io.outer.path`", "`workspace.dependencies.keys.path`"]
    # ~/.ssh is never mounted, whatever the consent: that is the first thing said.
    with pytest.raises(ConfigError, match=r"refusing to mount .*\.ssh.*workspace\.dependencies\.keys\.path"):
        trust.require(boundary, X86_64)


def test_a_target_dir_from_the_projects_cargo_config_is_an_ask_and_the_users_is_not(tmp_path: Path) -> None:
    _package(tmp_path / "app")
    _write(tmp_path / "app" / ".cargo" / "config.toml", '[build]\ntarget-dir = "../out"\n')
    boundary = _boundary(tmp_path / "app", _environ(tmp_path))
    assert [(ask.setting, ask.value) for ask in boundary.asks] == [("`build.target-dir`", "../out")]
    # The user's CARGO_TARGET_DIR, or --target-dir, is theirs to choose.
    assert _boundary(tmp_path / "app", _environ(tmp_path, CARGO_TARGET_DIR=str(tmp_path / "t"))).asks == ()
    assert _boundary(tmp_path / "app", _environ(tmp_path), ("--target-dir", str(tmp_path / "t"))).asks == ()
    # A Cargo config file outside the checkout is the user's own.
    (tmp_path / "app" / ".cargo" / "config.toml").unlink()
    _write(tmp_path / ".cargo" / "config.toml", '[build]\ntarget-dir = "elsewhere"\n')
    assert _boundary(tmp_path / "app", _environ(tmp_path)).asks == ()


def test_a_target_dir_inside_the_checkout_needs_nothing(tmp_path: Path) -> None:
    _package(tmp_path / "app")
    _write(tmp_path / "app" / ".cargo" / "config.toml", '[build]\ntarget-dir = "build/out"\n')
    assert _boundary(tmp_path / "app", _environ(tmp_path)).asks == ()


def test_links_override_paths_of_the_projects_cargo_config_are_asks_per_target(tmp_path: Path) -> None:
    lib = tmp_path / "lib"
    lib.mkdir()
    _package(tmp_path / "app")
    _write(
        tmp_path / "app" / ".cargo" / "config.toml",
        f'[target.{AARCH64}.z]\nrustc-link-search = ["native={lib}"]\nrustc-link-lib = ["z"]\n',
    )
    boundary = _boundary(tmp_path / "app", _environ(tmp_path))
    assert [(ask.value, ask.triple) for ask in boundary.asks] == [(str(lib), AARCH64)]
    assert boundary.asks[0].setting == f"a `links` override `[target.{AARCH64}.z]`"
    # Another target's build does not use it, so needs no consent.
    trust.require(boundary, X86_64)
    with pytest.raises(UntrustedError):
        trust.require(boundary, AARCH64)


def test_xpcargo_settings_that_reach_the_host(tmp_path: Path) -> None:
    sdk = tmp_path / "sdk"
    sdk.mkdir()
    _package(tmp_path / "app")
    (tmp_path / "app" / "vendor").mkdir()
    _write(
        tmp_path / "app" / "xpcargo.toml",
        f"""
        [build]
        mounts = ["{sdk}", "{tmp_path / "app" / "vendor"}"]
        passthrough = ["API_TOKEN"]
        [target.{AARCH64}]
        engine = "tcp://127.0.0.1:9"
        image = "any:1"
        """,
    )
    boundary = _boundary(tmp_path / "app", _environ(tmp_path))
    assert [(ask.setting, ask.value, ask.triple) for ask in boundary.asks] == [
        ("`mounts` of [build]", str(sdk), None),
        ("`passthrough` of [build]", "API_TOKEN", None),
        (f"`engine` of [target.{AARCH64}]", "tcp://127.0.0.1:9", AARCH64),
        (f"`image` of [target.{AARCH64}]", "any:1", AARCH64),
    ]


def test_settings_from_the_environment_are_the_users(tmp_path: Path) -> None:
    sdk = tmp_path / "sdk"
    sdk.mkdir()
    root = tmp_path / "app"
    _package(root)
    _write(root / "src" / "main.rs", "fn main() {}\n")
    environ = _environ(tmp_path, XPCARGO_BUILD_MOUNTS=str(sdk), XPCARGO_BUILD_PASSTHROUGH="API_TOKEN")
    plan = plan_in(Context.create(cwd=root, environ=environ), "build", X86_64, [])
    assert Mount(path=sdk, read_only=True) in plan.workspace.binds


def test_metadata_settings_are_the_projects_too(tmp_path: Path) -> None:
    _package(tmp_path / "app", extra='[package.metadata.xpcargo.build]\npassthrough = ["API_TOKEN"]\n')
    boundary = _boundary(tmp_path / "app", _environ(tmp_path))
    assert _settings(boundary) == ["`passthrough` of [package.metadata.xpcargo.build]"]
    config = load_project_config((tmp_path / "app").resolve())
    assert trust.settings_asks(config)[0].file == (tmp_path / "app" / "Cargo.toml").resolve()


# --- Consent ----------------------------------------------------------------------------------------------------------


def _consenting_project(tmp_path: Path, mounts: str) -> Path:
    root = tmp_path / "app"
    _package(root)
    _write(root / "xpcargo.toml", f"[build]\nmounts = [{mounts}]\n")
    return root


def test_refusal_is_one_line_naming_the_setting_the_file_and_how_to_consent(tmp_path: Path) -> None:
    (tmp_path / "sdk").mkdir()
    root = _consenting_project(tmp_path, f'"{tmp_path / "sdk"}"')
    with pytest.raises(UntrustedError) as caught:
        trust.require(_boundary(root, _environ(tmp_path)), X86_64)
    error = caught.value
    assert error.exit_code == 13
    assert error.message == (
        f"`mounts` of [build] in {(root / 'xpcargo.toml').resolve()} reaches outside the checkout ({tmp_path / 'sdk'})"
    )
    assert error.hint is not None
    assert "xpcargo trust" in error.hint
    assert "XPCARGO_TRUST=1" in error.hint
    assert "\n" not in error.summary()


def test_consent_round_trip_and_a_change_withdraws_it(tmp_path: Path) -> None:
    for name in ("sdk", "other"):
        (tmp_path / name).mkdir()
    root = _consenting_project(tmp_path, f'"{tmp_path / "sdk"}"')
    environ = _environ(tmp_path)
    boundary = _boundary(root, environ)
    assert not trust.status(boundary).consented
    assert trust.consent(boundary).consented
    trust.require(_boundary(root, environ), X86_64)
    store = tmp_path / "config" / "xpcargo" / "trusted.toml"
    assert stat.S_IMODE(store.stat().st_mode) == 0o600
    assert stat.S_IMODE(store.parent.stat().st_mode) == 0o700
    # The record as it always was written, byte for byte.
    heading = (
        "# The checkouts whose settings you consented to with `xpcargo trust`: a path and a digest of the settings "
        "that reach outside it. `xpcargo trust --revoke` removes one.\n\n"
    )
    entry = f'\\[checkout\\.[0-9a-f]{{32}}\\]\npath = "{re.escape(str(root))}"\ndigest = "[0-9a-f]{{64}}"\n'
    assert re.fullmatch(re.escape(heading) + entry, store.read_text(encoding="utf-8"))
    # Another setting, another digest: the consent no longer holds.
    _write(root / "xpcargo.toml", f'[build]\nmounts = ["{tmp_path / "other"}"]\n')
    changed = _boundary(root, environ)
    assert changed.digest != boundary.digest
    assert trust.status(changed).changed
    with pytest.raises(UntrustedError, match="changed since you ran `xpcargo trust`"):
        trust.require(changed, X86_64)
    # Back to what was consented to: it holds again. Revoked: refused.
    _write(root / "xpcargo.toml", f'[build]\nmounts = ["{tmp_path / "sdk"}"]\n')
    trust.require(_boundary(root, environ), X86_64)
    assert trust.revoke(boundary)
    assert not trust.revoke(boundary)
    with pytest.raises(UntrustedError):
        trust.require(_boundary(root, environ), X86_64)


def test_the_digest_ignores_what_does_not_reach_outside(tmp_path: Path) -> None:
    (tmp_path / "sdk").mkdir()
    root = _consenting_project(tmp_path, f'"{tmp_path / "sdk"}"')
    before = _boundary(root, _environ(tmp_path)).digest
    (root / "xpcargo.toml").write_text(
        (root / "xpcargo.toml").read_text() + '\n[target.x86_64-unknown-linux-gnu]\nextra-packages = ["libz-dev"]\n'
    )
    assert _boundary(root, _environ(tmp_path)).digest == before


def test_consent_for_one_checkout_is_not_consent_for_another(tmp_path: Path) -> None:
    (tmp_path / "sdk").mkdir()
    root = _consenting_project(tmp_path / "a", f'"{tmp_path / "sdk"}"')
    other = _consenting_project(tmp_path / "b", f'"{tmp_path / "sdk"}"')
    environ = _environ(tmp_path)
    trust.consent(_boundary(root, environ))
    trust.require(_boundary(root, environ), X86_64)
    with pytest.raises(UntrustedError):
        trust.require(_boundary(other, environ), X86_64)


def test_xpcargo_trust_in_the_environment_consents_for_one_command(tmp_path: Path) -> None:
    (tmp_path / "sdk").mkdir()
    root = _consenting_project(tmp_path, f'"{tmp_path / "sdk"}"')
    trust.require(_boundary(root, _environ(tmp_path, XPCARGO_TRUST="1")), X86_64)
    with pytest.raises(UntrustedError):
        trust.require(_boundary(root, _environ(tmp_path, XPCARGO_TRUST="0")), X86_64)
    with pytest.raises(ConfigError, match="XPCARGO_TRUST='yes' is neither 1 nor 0"):
        _boundary(root, _environ(tmp_path, XPCARGO_TRUST="yes"))


def test_a_malformed_store_is_one_error_naming_it(tmp_path: Path) -> None:
    (tmp_path / "sdk").mkdir()
    root = _consenting_project(tmp_path, f'"{tmp_path / "sdk"}"')
    _write(tmp_path / "config" / "xpcargo" / "trusted.toml", "[checkout.x]\npath = 3\n")
    with pytest.raises(ConfigError, match=r"trusted\.toml: not a record of `xpcargo trust`"):
        trust.require(_boundary(root, _environ(tmp_path)), X86_64)


# --- Never mounted ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "path", ["/etc", "/etc/ssl", "/var/lib/docker", "/var/lib/containers/storage", "/", "/tmp", "/boot", "/dev/null"]
)
def test_host_places_are_never_mounted_even_with_consent(tmp_path: Path, path: str) -> None:
    root = _consenting_project(tmp_path, f'"{path}"')
    with pytest.raises(ConfigError, match=r"refusing to mount .*it reaches") as caught:
        trust.consent(_boundary(root, _environ(tmp_path, XPCARGO_TRUST="1")))
    assert not isinstance(caught.value, UntrustedError)
    with pytest.raises(ConfigError, match="refusing to mount"):
        trust.require(_boundary(root, _environ(tmp_path, XPCARGO_TRUST="1")), X86_64)


@pytest.mark.parametrize("relative", ["home", "home/.ssh", "home/.ssh/id_ed25519", "config/xpcargo", "."])
def test_home_its_secrets_and_the_consent_store_are_never_mounted(tmp_path: Path, relative: str) -> None:
    never = trust.NeverMounted.of(_environ(tmp_path))
    assert never.refusal(tmp_path / relative) is not None


def test_cargo_homes_credentials_are_never_mounted_and_only_xpcargo_may_mount_what_holds_it(tmp_path: Path) -> None:
    cargo_home = tmp_path / "work" / ".cargo"
    _write(cargo_home / "credentials.toml", "[registry]\ntoken = 'x'\n")
    never = trust.NeverMounted.of(_environ(tmp_path), cargo_home=cargo_home)
    assert never.refusal(cargo_home / "credentials.toml", own=True) == "is CARGO_HOME's credentials file"
    assert never.refusal(tmp_path / "work") is not None
    # CI keeps CARGO_HOME in the workspace: xpcargo's own mount of the workspace may hold it.
    assert never.refusal(tmp_path / "work", own=True) is None
    assert never.refusal(cargo_home, own=True) is None


def test_a_directory_holding_a_socket_is_not_mounted(tmp_path: Path) -> None:
    agent = tmp_path / "agent"
    (agent / "deep" / "er").mkdir(parents=True)
    never = trust.NeverMounted.of(_environ(tmp_path))
    assert never.refusal(agent) is None
    with listening(agent / "deep" / "er" / "agent.sock"):
        assert never.refusal(agent) == f"holds the socket or device `{agent / 'deep' / 'er' / 'agent.sock'}`"
        # Inside the checkout, the directory is the project's own: not searched.
        inside = trust.NeverMounted.of(_environ(tmp_path), checkout=tmp_path)
        assert inside.refusal(agent) is None


def test_the_ssh_agents_socket_and_the_runtime_dir_are_never_mounted(tmp_path: Path) -> None:
    (tmp_path / "ssh-x").mkdir()
    (tmp_path / "run").mkdir()
    never = trust.NeverMounted.of(
        _environ(tmp_path, SSH_AUTH_SOCK=str(tmp_path / "ssh-x" / "agent.1"), XDG_RUNTIME_DIR=str(tmp_path / "run")),
        checkout=tmp_path,
    )
    assert never.refusal(tmp_path / "ssh-x") == f"reaches {(tmp_path / 'ssh-x' / 'agent.1').resolve()}"
    assert never.refusal(tmp_path / "run" / "x") == f"reaches {(tmp_path / 'run').resolve()}"


def test_the_users_cargo_config_is_mounted_as_a_file_not_its_directory(tmp_path: Path) -> None:
    root = tmp_path / "app"
    _package(root)
    _write(root / "src" / "main.rs", "fn main() {}\n")
    cargo_home = tmp_path / "cargo-home"
    user_config = _write(tmp_path / ".cargo" / "config.toml", "[net]\nretry = 3\n")
    _write(tmp_path / ".cargo" / "credentials.toml", "[registry]\ntoken = 'x'\n")
    environ = _environ(tmp_path, CARGO_HOME=str(cargo_home))
    plan = plan_in(Context.create(cwd=root, environ=environ), "build", X86_64, [])
    assert Mount(path=user_config.resolve(), read_only=True) in plan.workspace.binds
    assert all(mount.path != (tmp_path / ".cargo").resolve() for mount in plan.workspace.binds)


def test_a_project_outside_any_checkout_is_planned_as_before(tmp_path: Path) -> None:
    root = tmp_path / "app"
    _package(root)
    _write(root / "src" / "main.rs", "fn main() {}\n")
    project: Project = plan_in(Context.create(cwd=root, environ=_environ(tmp_path)), "build", X86_64, []).project
    assert project.checkout == root.resolve()
    assert project.asks == ()


def test_a_remote_engine_gets_the_users_cargo_config_file_alone(tmp_path: Path) -> None:
    root = tmp_path / "app"
    _package(root)
    _write(root / "src" / "main.rs", "fn main() {}\n")
    user_config = _write(tmp_path / ".cargo" / "config.toml", "[net]\nretry = 3\n")
    _write(tmp_path / ".cargo" / "credentials.toml", "[registry]\ntoken = 'x'\n")
    (tmp_path / "cargo-home").mkdir()
    environ = _environ(
        tmp_path, CARGO_HOME=str(tmp_path / "cargo-home"), DOCKER_HOST="tcp://10.0.0.5:2376", XPCARGO_REMOTE="1"
    )
    plan = plan_in(Context.create(cwd=root, environ=environ), "build", X86_64, [])
    assert isinstance(plan.workspace, RemoteWorkspace)
    sent = {volume.volume.path: volume.selection for volume in plan.workspace.volumes}
    directory = user_config.parent.resolve()
    assert sent[directory].only == ("config.toml",)


def test_a_working_directory_at_home_is_not_mounted(tmp_path: Path) -> None:
    environ = _environ(tmp_path)
    root = Path(environ["HOME"]) / "projects" / "app"
    _package(root)
    _write(root / "src" / "main.rs", "fn main() {}\n")
    context = Context.create(cwd=Path(environ["HOME"]), environ=environ)
    plan = plan_in(context, "build", X86_64, ["--manifest-path", "projects/app/Cargo.toml"])
    assert all(mount.path != Path(environ["HOME"]).resolve() for mount in plan.workspace.binds)
    assert Mount(path=root.resolve()) in plan.workspace.binds


def test_verify_crosses_the_boundary_on_the_project_and_its_copies_inherit_the_consent(tmp_path: Path) -> None:
    """verify (and dist) build in copies of the workspace at other paths: the project itself is checked once, so
    refusal and consent are the project's, not the copies'."""
    from xpcargo.release import verify  # noqa: PLC0415

    from .fake_runtime import FakeRuntime  # noqa: PLC0415

    (tmp_path / "sdk").mkdir()
    root = _consenting_project(tmp_path, f'"{tmp_path / "sdk"}"')
    _write(root / "src" / "main.rs", "fn main() {}\n")
    _write(root / "Cargo.lock", APP_LOCK)
    runtime = FakeRuntime(every_image=True)
    context = Context.create(cwd=root, environ=_environ(tmp_path, SOURCE_DATE_EPOCH="1"))
    settings = build_plan.reproducibility(context.host, context.project(parse_cargo_args([])), X86_64)
    with pytest.raises(UntrustedError, match=r"`mounts` of \[build\] in .*/app/xpcargo\.toml"):
        verify.build_twice(
            context.host, context.cwd, X86_64, ["--release"], settings=settings, connect=lambda *_: runtime
        )
    assert runtime.started == []
    trust.consent(_boundary(root, _environ(tmp_path)))
    rebuilt = verify.build_twice(
        context.host, context.cwd, X86_64, ["--release"], settings=settings, connect=lambda *_: runtime
    )
    assert not isinstance(rebuilt, int)
    assert all(Mount(path=tmp_path / "sdk", read_only=True) in plan.workspace.binds for plan in rebuilt.plans)
    verify.discard(rebuilt.directories)


def test_a_link_swapped_after_consent_withdraws_it(tmp_path: Path) -> None:
    # Hostile: the consented setting stays the same text (`path = "vendor/x"`), but `vendor/x` is a link the project
    # ships (a `git pull` may change it) whose target moves from the SDK the user saw to a secret-holding directory
    # that is not among the places never mounted. The digest must follow where the path leads, not how it is written.
    home = tmp_path / "home"
    _package(tmp_path / "sdk", "sdk")
    _write(home / ".config" / "gh" / "hosts.yml", "oauth_token: canary\n")
    root = tmp_path / "app"
    _package(root, extra='[dependencies]\nsdk = { path = "vendor/x" }\n')
    (root / "vendor").mkdir()
    (root / "vendor" / "x").symlink_to(tmp_path / "sdk")
    environ = _environ(tmp_path)
    trust.consent(_boundary(root, environ))
    trust.require(_boundary(root, environ), X86_64)
    (root / "vendor" / "x").unlink()
    (root / "vendor" / "x").symlink_to(home / ".config" / "gh")
    swapped = _boundary(root, environ)
    assert [ask.value for ask in swapped.asks] == ["vendor/x"]
    # What `xpcargo trust` shows names where the link leads, not only its harmless-looking text.
    assert trust.status(swapped).lines()[0].endswith(f": vendor/x (leads to {(home / '.config' / 'gh').resolve()})")
    with pytest.raises(UntrustedError, match="changed since you ran `xpcargo trust`"):
        trust.require(swapped, X86_64)


def test_a_mount_through_a_swapped_link_withdraws_consent(tmp_path: Path) -> None:
    (tmp_path / "sdk").mkdir()
    (tmp_path / "home" / ".config" / "gh").mkdir(parents=True)
    link = tmp_path / "links" / "sdk"
    link.parent.mkdir()
    link.symlink_to(tmp_path / "sdk")
    root = _consenting_project(tmp_path, f'"{link}"')
    environ = _environ(tmp_path)
    trust.consent(_boundary(root, environ))
    trust.require(_boundary(root, environ), X86_64)
    link.unlink()
    link.symlink_to(tmp_path / "home" / ".config" / "gh")
    with pytest.raises(UntrustedError, match="changed since you ran `xpcargo trust`"):
        trust.require(_boundary(root, environ), X86_64)


def test_a_cargo_config_of_the_checkout_linked_outside_it_is_the_projects_and_an_ask(tmp_path: Path) -> None:
    # Hostile: in a monorepo (the checkout above the workspace), the checkout's `.cargo/config.toml` is a link to a
    # TOML file of the user's secrets. Judged by where it leads, it passed for the user's own config: no consent asked,
    # and mounted, as itself, at the link's place (outside the workspace), where the build reads the secrets.
    home = tmp_path / "home"
    secret = _write(home / ".config" / "tool" / "auth.toml", '[http-basic.corp]\npassword = "canary"\n')
    repo = tmp_path / "repo"
    (repo / ".git").mkdir(parents=True)
    _package(repo / "rust")
    (repo / ".cargo").mkdir()
    (repo / ".cargo" / "config.toml").symlink_to(secret)
    environ = _environ(tmp_path)
    boundary = _boundary(repo / "rust", environ)
    assert [ask.path for ask in boundary.asks] == [secret.resolve()]
    with pytest.raises(UntrustedError, match=r"config\.toml.* reaches outside the checkout"):
        trust.require(boundary, X86_64)
