"""What xpcargo has to know of the arguments it passes on to Cargo unchanged."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True, kw_only=True)
class CargoArgs:
    """What xpcargo has to know of the arguments it passes on to Cargo unchanged."""

    manifest_path: str | None = None
    target_dir: str | None = None
    profile: str = "dev"
    message_format: str | None = None
    offline: bool = False
    locked: bool = False
    has_program_args: bool = False


def parse_cargo_args(args: Sequence[str]) -> CargoArgs:
    """Pick out the options that change where xpcargo mounts things or how it reads Cargo's output."""
    values: dict[str, str] = {}
    flags: set[str] = set()
    with_value = {"--manifest-path", "--target-dir", "--profile", "--message-format"}
    index = 0
    has_program_args = False
    while index < len(args):
        arg = args[index]
        if arg == "--":
            has_program_args = True
            break
        name, equals, inline = arg.partition("=")
        if name in with_value:
            if equals:
                value = inline
            elif index + 1 < len(args):
                index += 1
                value = args[index]
            else:
                value = ""
            # --message-format may be given several times and Cargo joins them.
            if name == "--message-format" and name in values:
                value = f"{values[name]},{value}"
            values[name] = value
        elif arg in ("--release", "-r"):
            values.setdefault("--profile", "release")
        elif arg in ("--offline", "--frozen", "--locked"):
            flags.add(arg)
        index += 1
    return CargoArgs(
        manifest_path=values.get("--manifest-path"),
        target_dir=values.get("--target-dir"),
        profile=values.get("--profile", "dev"),
        message_format=values.get("--message-format"),
        offline="--offline" in flags or "--frozen" in flags,
        locked="--locked" in flags or "--frozen" in flags,
        has_program_args=has_program_args,
    )


def profile_dir_name(profile: str) -> str:
    """The directory Cargo uses for a profile: `dev` and `test` build into `debug`, `bench` into `release`."""
    return {"dev": "debug", "test": "debug", "bench": "release"}.get(profile, profile)
