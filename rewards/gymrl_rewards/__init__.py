"""First-party gymrl rewards. They register through the ``gymrl`` entry-point group."""
