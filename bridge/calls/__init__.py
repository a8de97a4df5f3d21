"""Calls, controller side: one runner per call, its effects, records, the manager."""
