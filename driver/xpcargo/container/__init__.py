"""Containers: the request (``spec``), what is asked of an engine (``runtime``: images, containers, volumes), the
Docker implementation (``docker``), and the session that alone owns a container's life."""
