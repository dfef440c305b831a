"""Containers: the request and the ``Runtime`` protocol (``spec``), the Docker implementation, and the session that
alone owns a container's life."""
