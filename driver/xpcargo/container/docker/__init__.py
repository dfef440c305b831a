"""The Docker engine, or Podman through its Docker-compatible API, as a ``Runtime``: the only package that imports
the Docker SDK, and each of its modules only inside the functions that talk to the engine, so that a command that
reaches no engine (`xpcargo --help`, `targets`, `report`) does not pay for the SDK.

Everything else asks for what it needs (an image's presence, an import, a container, an exec) in xpcargo's own
terms (``container.runtime``), and gets xpcargo errors back: never a ``docker`` exception, never a traceback.
Podman's differences (keep-id, image names, whole-image loads) stay here.
"""
