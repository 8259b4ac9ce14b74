"""First-party gymrl environments. Each registers through the ``gymrl`` entry-point group."""
