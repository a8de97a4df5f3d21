"""Bot commands: an explicit registry, permission checks, and the handlers."""
