"""The exceptions of ``socket_api``, the SDK and requests as xpcargo's errors, the same for the same failure
whichever client met it, and the retry of what failed in a way another try may mend: what a caller of the runtime
sees of a sick engine.

An exception can be the SDK's (or requests') only once the SDK has been imported: until then (a warm build on a
local engine never imports it) nothing here imports it either."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import TypeVar

from xpcargo.container.docker import socket_api
from xpcargo.container.engine import Engine
from xpcargo.errors import ContainerGoneError, EngineError, EngineUnavailableError

_T = TypeVar("_T")


def _sdk_imported() -> bool:
    return "docker.errors" in sys.modules


def status(exc: BaseException) -> int | None:
    """The HTTP status of an engine's refusal (404: no such image, container or exec); None for any other failure."""
    if isinstance(exc, socket_api.RefusedError):
        return exc.status
    if _sdk_imported():
        import docker.errors  # noqa: PLC0415

        if isinstance(exc, docker.errors.NotFound):
            return 404
        if isinstance(exc, docker.errors.APIError):
            return exc.status_code
    return None


def transient(exc: BaseException) -> bool:
    """Engine errors worth another try: the daemon restarting, a dropped connection, a 5xx. Not a timeout: an engine
    that did not answer in time is hung, and asking again would only double the wait."""
    if isinstance(exc, socket_api.SocketAPIError):
        return _worth_another_try(exc)
    if not _sdk_imported():
        return False
    import docker.errors  # noqa: PLC0415
    import requests  # noqa: PLC0415

    if isinstance(exc, requests.exceptions.Timeout):
        return False
    if isinstance(exc, requests.exceptions.ConnectionError):
        return True
    if isinstance(exc, docker.errors.APIError):
        code = exc.status_code or 0
        return code >= 500 and "No such" not in str(exc)
    return False


def _worth_another_try(exc: socket_api.SocketAPIError) -> bool:
    """As ``transient``, for ``socket_api``: a lost connection or a 5xx. Not a garbled answer either: the same engine
    would say the same."""
    if isinstance(exc, socket_api.RefusedError):
        return exc.status >= 500 and "No such" not in exc.explanation
    return isinstance(exc, socket_api.ConnectionFailedError)


def _root_os_error(exc: BaseException) -> OSError | None:
    """requests buries the socket's own words (`No such file or directory`) a few exceptions deep."""
    pending: list[object] = [exc]
    seen: set[int] = set()
    while pending:
        current = pending.pop()
        if id(current) in seen or not isinstance(current, BaseException):
            continue
        seen.add(id(current))
        if isinstance(current, OSError) and current.strerror:
            return current
        pending += [current.__cause__, current.__context__, *current.args]
    return None


def describe(exc: BaseException) -> str:
    """What went wrong, in the fewest words the exception holds: the socket's, the engine's, or its first line."""
    if isinstance(exc, socket_api.SocketAPIError):
        # Its words are the engine's (a refusal) or its own (the socket's, or what was wrong with the answer).
        return str(exc)
    root = _root_os_error(exc)
    if root is not None:
        return str(root.strerror)
    if not _sdk_imported():
        return str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    import docker.errors  # noqa: PLC0415

    if isinstance(exc, docker.errors.APIError) and exc.explanation:
        text = exc.explanation
        return text if isinstance(text, str) else str(text)
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__


def translate(engine: Engine, what: str, exc: Exception, *, timeout: float) -> Exception:
    """``exc``, raised while trying to ``what``, as xpcargo's error; anything not ``socket_api``'s, the SDK's or
    requests' as it is."""
    if isinstance(exc, socket_api.SocketAPIError):
        unanswered = isinstance(exc, socket_api.NoAnswerError)
        lost = isinstance(exc, socket_api.ConnectionFailedError)
    elif _sdk_imported():
        import docker.errors  # noqa: PLC0415
        import requests  # noqa: PLC0415

        if not isinstance(exc, docker.errors.DockerException | requests.exceptions.RequestException):
            return exc
        unanswered = isinstance(exc, requests.exceptions.Timeout)
        lost = isinstance(exc, requests.exceptions.ConnectionError) and not unanswered
    else:
        return exc
    if unanswered:
        return EngineUnavailableError(
            f"{engine.name} at {engine.host} did not answer within {timeout:.0f}s while trying to {what}",
            hint=f"check the engine (`{engine.cli} info`); XPCARGO_ENGINE_TIMEOUT sets how long xpcargo waits",
        )
    if lost:
        return EngineUnavailableError(
            f"lost {engine.name} at {engine.host} while trying to {what}: {describe(exc)}",
            hint="check that the engine is still running, then run the command again",
        )
    return EngineError(f"{engine.name} could not {what}: {describe(exc)}")


def translate_exec(engine: Engine, container_id: str, command: str, exc: Exception, *, timeout: float) -> Exception:
    """An exec refused because the container is gone or stopping: nothing ran, which the session may mend."""
    if status(exc) in (404, 409):
        return ContainerGoneError(
            f"container {container_id[:12]} was no longer running when asked to run `{command}`",
            hint="run the command again",
        )
    return translate(engine, f"start `{command}` in the container", exc, timeout=timeout)


def retry(operation: Callable[[], _T], *, attempts: int = 4) -> _T:
    """``operation``, tried again after 0.25, 0.5 and 1 s while it fails in a way that another try may not.

    The first try runs as it is: tenacity (and the asyncio it imports) is loaded only when a retry is due, so that
    a command whose engine answers does not pay more for the import than for its call."""
    try:
        return operation()
    except Exception as exc:
        if not transient(exc) or attempts < 2:
            raise
    import tenacity  # noqa: PLC0415

    time.sleep(0.25)
    retrying = tenacity.Retrying(
        stop=tenacity.stop_after_attempt(attempts - 1),
        wait=tenacity.wait_exponential(multiplier=0.5, max=4),
        retry=tenacity.retry_if_exception(transient),
        reraise=True,
    )
    return retrying(operation)
