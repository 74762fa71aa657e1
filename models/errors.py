"""Errors a user can cause. The CLI prints their message and exits 2; the GUI shows a dialog.

Both carry a message that says what is wrong and how to fix it; neither is ever shown
as a traceback.
"""


class UserError(Exception):
    """Bad input from the user (a path, a name, a value). The message says how to fix it."""


class ModelError(RuntimeError):
    """A model file is unknown, missing or corrupt. The message says how to fix it."""
