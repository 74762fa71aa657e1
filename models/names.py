"""The one rule for people's names: training folders, enrollment, bundles.

A name is shown to people (the display name), becomes a folder name on export and a
prompt for the classifier, so it must be safe as a single path component. Unicode
letters are kept. ``models.names`` wraps this for the product (as a UserError).
"""

from __future__ import annotations

import unicodedata

from models.errors import UserError

MAX_NAME_LENGTH = 100


class InvalidName(UserError, ValueError):
    """The name cannot be used; the message says why and what to do."""


def validate_name(name: str) -> str:
    """``name`` normalised (NFC, outer spaces stripped), or :class:`InvalidName`."""
    cleaned = unicodedata.normalize("NFC", name).strip()
    if not cleaned:
        raise InvalidName("the name is empty: type the person's name")
    if len(cleaned) > MAX_NAME_LENGTH:
        raise InvalidName(f"the name is longer than {MAX_NAME_LENGTH} characters")
    # Cf: invisible format characters (zero-width joiners, bidi overrides) that make two
    # names look the same or a name display differently from what it is.
    if any(unicodedata.category(c) in ("Cc", "Cf", "Zl", "Zp") for c in cleaned):
        raise InvalidName(f"the name {cleaned!r} contains control characters; remove them")
    if "/" in cleaned or "\\" in cleaned:
        raise InvalidName(f"the name {cleaned!r} contains a path separator (/ or \\)")
    if cleaned in (".", "..") or ".." in cleaned:
        raise InvalidName(f"the name {cleaned!r} contains '..'; use another spelling")
    if cleaned.startswith("."):
        raise InvalidName(f"the name {cleaned!r} starts with '.', which hides a folder")
    return cleaned


def name_key(name: str) -> str:
    """What two names must differ in to be different people ("Ana" and "ana" do not)."""
    return unicodedata.normalize("NFC", name).strip().casefold()


def name_digest(name: str) -> str:
    """A one-way stand-in for a name (of its :func:`name_key`: "Ana" and "ana" match),
    for records that must find a person's traces by name without holding the name: the
    people store's erasure journal, and door events of a recognizer that knows people
    only by their folder's name."""
    import hashlib

    data = b"clip-face-kiosk name\x00" + name_key(name).encode("utf-8")
    return hashlib.sha256(data).hexdigest()
