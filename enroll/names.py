"""The one check every person's display name goes through."""

from __future__ import annotations

import unicodedata

from kiosk.errors import UserError

MAX_NAME_LENGTH = 100


def validate_name(name: str) -> str:
    """``name`` normalised (NFC, outer spaces stripped), or a UserError saying what is wrong.

    Unicode letters are kept; path separators, ``..`` and control characters are refused
    because names become folder names on export and prompts for the classifier.
    """
    cleaned = unicodedata.normalize("NFC", name).strip()
    if not cleaned:
        raise UserError("the name is empty: type the person's name")
    if len(cleaned) > MAX_NAME_LENGTH:
        raise UserError(f"the name is longer than {MAX_NAME_LENGTH} characters")
    bad = [c for c in cleaned if unicodedata.category(c) in ("Cc", "Zl", "Zp")]
    if bad:
        raise UserError(f"the name {cleaned!r} contains control characters; remove them")
    if "/" in cleaned or "\\" in cleaned:
        raise UserError(f"the name {cleaned!r} contains a path separator (/ or \\)")
    if cleaned in (".", "..") or ".." in cleaned:
        raise UserError(f"the name {cleaned!r} contains '..'; use another spelling")
    return cleaned


def name_key(name: str) -> str:
    """What two names must differ in to be different people ("Ana" and "ana" do not)."""
    return unicodedata.normalize("NFC", name).strip().casefold()
