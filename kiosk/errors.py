"""Errors a user can cause. The CLI prints their message and exits 2; the GUI shows a dialog."""


class UserError(Exception):
    """Bad input from the user (a path, a name, a value). The message says how to fix it."""
