"""Validation of people's names: one rule for training folders, enrollment and bundles.

A name is shown to people (the display name) and is also used as a folder name, so it
must be safe as a single path component. Unicode letters are kept as they are.
"""

from __future__ import annotations

import unicodedata

MAX_NAME_LENGTH = 100


class InvalidName(ValueError):
    """The name cannot be used; the message says why."""


def validate_name(raw: str) -> str:
    """The display name for ``raw`` (NFC-normalised, trimmed), or :class:`InvalidName`."""
    name = unicodedata.normalize("NFC", raw).strip()
    if not name:
        raise InvalidName("the name is empty")
    if len(name) > MAX_NAME_LENGTH:
        raise InvalidName(f"the name is longer than {MAX_NAME_LENGTH} characters")
    if name in {".", ".."} or ".." in name:
        raise InvalidName(f"the name {raw!r} contains '..'")
    if "/" in name or "\\" in name:
        raise InvalidName(f"the name {raw!r} contains a path separator")
    for char in name:
        if unicodedata.category(char) in {"Cc", "Cf", "Zl", "Zp"}:
            raise InvalidName(f"the name {raw!r} contains a control character (U+{ord(char):04X})")
    if name.startswith("."):
        raise InvalidName(f"the name {raw!r} starts with '.' (a hidden file name)")
    return name
