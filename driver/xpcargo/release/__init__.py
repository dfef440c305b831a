"""Releases: reproducible archives of every binary, their checksums and provenance (`dist`), and the check that a
build is reproducible at all (`verify`)."""
