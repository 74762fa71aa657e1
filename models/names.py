"""The one rule for people's names: training folders, enrollment, bundles.

A name is shown to people (the display name), becomes a folder name on export and a
prompt for the classifier, so it must be safe as a single path component. Unicode
letters are kept.

Names are limited in characters (what a person reads) and in bytes (what a file system
stores). ``people export`` writes each name as a folder: ext4, XFS, Btrfs and ZFS allow
255 bytes per path component, NTFS and exFAT 255 UTF-16 units (never more units than
UTF-8 bytes), and eCryptfs (Ubuntu's encrypted home folders) only 143 bytes, since it
stores names encrypted. 120 bytes of UTF-8 fits all of them with room to spare: 120
Latin letters, 60 Cyrillic or Greek, 40 Chinese, Thai or Devanagari characters, 30 emoji.
"""

from __future__ import annotations

import unicodedata

from models.errors import UserError

MAX_NAME_LENGTH = 100  # characters
MAX_NAME_BYTES = 120  # UTF-8 bytes: a path component on every file system above


class InvalidName(UserError, ValueError):
    """The name cannot be used; the message says why and what to do."""


def _shown(name: str, limit: int = 40) -> str:
    """A name for a message: quoted, and cut when it is long (a 400-byte name is noise)."""
    return repr(name if len(name) <= limit else name[:limit] + "…")


def validate_name(name: str) -> str:
    """``name`` normalised (NFC, outer spaces stripped), or :class:`InvalidName`."""
    cleaned = unicodedata.normalize("NFC", name).strip()
    if not cleaned:
        raise InvalidName("the name is empty: type the person's name")
    # Cf: invisible format characters (zero-width joiners, bidi overrides) that make two
    # names look the same or a name display differently from what it is.
    if any(unicodedata.category(c) == "Cs" for c in cleaned):  # a lone surrogate
        raise InvalidName(
            f"the name {_shown(cleaned)} is not valid Unicode text (a folder name in "
            "another encoding than UTF-8?); rename it"
        )
    if any(unicodedata.category(c) in ("Cc", "Cf", "Zl", "Zp") for c in cleaned):
        raise InvalidName(
            f"the name {_shown(cleaned)} contains control or invisible formatting characters "
            "(such as a NUL, a line break or a right-to-left override); remove them"
        )
    if len(cleaned) > MAX_NAME_LENGTH:
        raise InvalidName(
            f"the name {_shown(cleaned)} has {len(cleaned)} characters; the limit is "
            f"{MAX_NAME_LENGTH}: shorten it"
        )
    size = len(cleaned.encode("utf-8"))
    if size > MAX_NAME_BYTES:
        raise InvalidName(
            f"the name {_shown(cleaned)} takes {size} bytes as UTF-8; the limit is "
            f"{MAX_NAME_BYTES} bytes (about {MAX_NAME_BYTES // 4} emoji or "
            f"{MAX_NAME_BYTES // 3} Chinese characters), so that it fits every file system "
            "as a folder name: shorten it"
        )
    if "/" in cleaned or "\\" in cleaned:
        raise InvalidName(f"the name {_shown(cleaned)} contains a path separator (/ or \\)")
    if cleaned in (".", "..") or ".." in cleaned:
        raise InvalidName(f"the name {_shown(cleaned)} contains '..'; use another spelling")
    if cleaned.startswith("."):
        raise InvalidName(f"the name {_shown(cleaned)} starts with '.', which hides a folder")
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


def erased_label() -> str:
    """A fresh stand-in for an erased person's name in the records kept for their metrics
    (trials): "erased person 3f2a91c0". Random, so it tells nothing of the person; one
    erasure gives all of that person's records the same one."""
    import secrets

    return f"erased person {secrets.token_hex(4)}"
