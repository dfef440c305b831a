"""Cargo as xpcargo sees it from the host: its arguments, the project, ``links`` overrides, its JSON messages and
the build-script protocol."""
