"""The one error hierarchy of xpcargo.

Every failure the user can cause or meet is an ``XpcargoError`` subclass with its own exit code and a hint that
says what to do next. The CLI prints one line, ``error: <message> (hint: <hint>)``, and exits with the code, never
a traceback. Cargo's own failures are not errors here: Cargo's exit code is passed through as it is.
"""

from __future__ import annotations


class XpcargoError(Exception):
    """Base of every error xpcargo reports to the user."""

    exit_code: int = 2

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint
        # Containers that the cleanup on the way out could not confirm removed (the engine did not answer).
        self.left_behind: list[str] = []
        # Warm containers (and the command, as messages name it) where the engine did not confirm that the command
        # ended: the container is meant to stay, the command may still run in it.
        self.still_running: list[tuple[str, str]] = []

    def __str__(self) -> str:
        return self.message

    def summary(self) -> str:
        """The one line the user sees: the message, what may be left running, and the hint in brackets."""
        if self.left_behind or self.still_running:
            return f"error: {self.message}; {_left_running(self.left_behind, self.still_running)}"
        return f"error: {self.message}" + (f" (hint: {self.hint})" if self.hint else "")


def _left_running(containers: list[str], commands: list[tuple[str, str]]) -> str:
    """What may still run after a failure whose cleanup the engine did not confirm, and how to stop it."""
    said = []
    if containers:
        ids = " ".join(container[:12] for container in containers)
        said.append(f"the engine did not confirm the removal of container {ids}, which may still be running")
    said += [
        f"the engine did not confirm that `{command}` ended in warm container {container[:12]}, where it may still "
        "be running"
        for container, command in commands
    ]
    every = " ".join(dict.fromkeys(c[:12] for c in [*containers, *(container for container, _ in commands)]))
    # Removing a warm container is the one sure stop of its command that needs nothing from inside it; the next
    # command starts another.
    return "; ".join(said) + f" (hint: once the engine answers, `docker rm -f {every}`)"


class UsageError(XpcargoError):
    """The command line itself is wrong: an unknown option, a missing argument."""

    exit_code = 2


class ConfigError(XpcargoError):
    """toolchains.yaml or the project's own configuration is malformed."""

    exit_code = 3


class UnknownTargetError(XpcargoError):
    """The target triple is not in the toolchain table."""

    exit_code = 4


class ProjectError(XpcargoError):
    """The Cargo project cannot be found or read (no Cargo.toml, a legacy build command, ...)."""

    exit_code = 5


class EngineUnavailableError(XpcargoError):
    """The engine (Docker, Podman) cannot be reached."""

    exit_code = 6


class EngineLostError(EngineUnavailableError):
    """The engine stopped answering, or the connection to it dropped, after a command was started in a container:
    the command may still be running there."""


class EngineError(XpcargoError):
    """The engine answered, but refused or failed an operation."""

    exit_code = 7


class EngineTooOldError(EngineError):
    """The engine is older than xpcargo supports (see ``container.engine``)."""


class ContainerDiedError(EngineError):
    """The container ended under a command: killed from outside, OOM-killed, or its main process exited."""

    exit_code = 11


class ContainerBusyError(EngineError):
    """A command did not start: in the container of the command's own, a process that xpcargo did not start runs as
    the command's user (a `docker exec` into it)."""

    exit_code = 11


class ContainerGoneError(ContainerDiedError):
    """A command was asked of a container that was no longer running: nothing ran (a warm container that had just
    ended after its idle time, say)."""


class ImageBuildError(XpcargoError):
    """Building a toolchain image failed; the message names the step and quotes the mirror or tool."""

    exit_code = 8


class ReportError(XpcargoError):
    """A stored build-script report is missing, corrupt, or records a failed build."""

    exit_code = 9


class BuildScriptProtocolError(XpcargoError):
    """A build script printed a ``cargo:`` line that Cargo would reject."""

    exit_code = 10

    def __init__(self, message: str, *, line_number: int, line: str, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.line_number = line_number
        self.line = line


class NotReproducibleError(XpcargoError):
    """`xpcargo verify` built twice and the artifacts differ."""

    exit_code = 12


class UntrustedError(XpcargoError):
    """A setting of the checkout reaches outside it (a mount, a path dependency, `passthrough`, `engine`, ...) and the
    user has not consented to it (``config.trust``)."""

    exit_code = 13


class InterruptError(XpcargoError):
    """Ctrl-C, SIGTERM or SIGHUP. What the cleanup on the way out could not remove is named in ``left_behind``."""

    exit_code = 130

    def __init__(self, message: str, *, signal_name: str = "INT", hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        # The signal's name without SIG, passed on to a command that runs in a warm container.
        self.signal_name = signal_name

    def summary(self) -> str:
        if self.left_behind or self.still_running:
            return f"error: {self.message}; {_left_running(self.left_behind, self.still_running)}"
        return f"error: {self.message}; nothing was left running"


class CancelledError(XpcargoError):
    """A target of a multi-target build was stopped because another one failed (--fail-fast) or on Ctrl-C."""

    exit_code = 130


class InternalError(XpcargoError):
    """A bug in xpcargo: no input may lead here."""

    exit_code = 70
