"""The one check every person's display name goes through (the rule: models/names.py)."""

from __future__ import annotations

from kiosk.errors import UserError
from models import names
from models.names import MAX_NAME_LENGTH, name_key

__all__ = ["MAX_NAME_LENGTH", "name_key", "validate_name"]


def validate_name(name: str) -> str:
    """``name`` normalised (NFC, outer spaces stripped), or a UserError saying what is wrong.

    Unicode letters are kept; path separators, ``..`` and control characters are refused
    because names become folder names on export and prompts for the classifier.
    """
    try:
        return names.validate_name(name)
    except names.InvalidName as error:
        raise UserError(str(error)) from None
