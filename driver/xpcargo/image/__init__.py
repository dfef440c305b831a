"""Toolchain images: the recipe and the plan (pure), the Debian bootstrap, and the builder that drives a runtime."""
