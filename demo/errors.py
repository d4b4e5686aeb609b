"""Errors of the demo."""


class DemoError(Exception):
    """The demo could not run; the message says which step and where its log is."""
