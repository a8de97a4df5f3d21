"""Call workers: the IPC protocol, the worker process, and the controller's pool."""
