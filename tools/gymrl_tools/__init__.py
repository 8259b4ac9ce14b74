"""First-party gymrl tools, registered through the ``gymrl`` entry-point group."""
