"""xpcargo: cross-compile Cargo projects inside toolchain containers built from Debian packages."""

__version__ = "0.1.0"
