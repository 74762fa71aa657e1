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

import itertools
import unicodedata
from collections.abc import Callable, Collection, Iterator, Mapping

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


# The separators a name may hold of its own ("Jean-Luc", "O'Brien"): kept in one of the
# forms a stretch of free text is tried as (see _forms).
NAME_SEPARATORS = frozenset({" ", "-", "'"})


def _is_word(char: str) -> bool:
    """A letter, a digit or a combining mark (an NFD accent belongs to its letter)."""
    return unicodedata.category(char)[0] in "LNM"


def _pieces(text: str) -> list[tuple[int, int, bool]]:
    """The words of ``text`` as (start, end, whether a word starts there), a camel-case
    word ("AdaLovelace") split where a capital follows a small letter."""
    pieces: list[tuple[int, int, bool]] = []
    start: int | None = None
    lower = False  # the word's last letter is a small one
    for i, char in enumerate(text + " "):
        if not _is_word(char):
            if start is not None:
                pieces.append((start, i, not pieces or pieces[-1][1] < start))
                start = None
            continue
        if start is None:
            start = i
        elif lower and char.isupper():
            pieces.append((start, i, not pieces or pieces[-1][1] < start))
            start = i
        if unicodedata.category(char)[0] == "L":
            lower = char.islower()
    return pieces


def _forms(text: str, pieces: list[tuple[int, int, bool]]) -> set[str]:
    """How a name could be written as these pieces of ``text``: as written; with every
    separator turned into a single space; with the separators a name has of its own
    kept and the others turned into spaces; with camel case split too."""
    gaps = [(text[a[1] : b[0]], b[2]) for a, b in itertools.pairwise(pieces)]
    words = [text[start:end] for start, end, _ in pieces]

    def joined(join: Callable[[str, bool], str]) -> str:
        joins = (join(*gap) + word for gap, word in zip(gaps, words[1:], strict=True))
        return words[0] + "".join(joins)

    return {
        text[pieces[0][0] : pieces[-1][1]],
        joined(lambda gap, hard: " " if hard else ""),
        joined(lambda gap, hard: (gap if gap in NAME_SEPARATORS else " ") if hard else ""),
        joined(lambda gap, hard: " "),
    }


def _mentions(text: str) -> Iterator[tuple[int, int, set[str]]]:
    """Every stretch of ``text`` that starts and ends at a word boundary and is no longer
    than a name may be, as (start, end, the digests of the ways it could write a name)."""
    pieces = _pieces(text)
    for i, (start, _, first) in enumerate(pieces):
        if not first:
            continue  # inside a camel-case word: "Lovelace" of "AdaLovelace" is no word
        for j in range(i, len(pieces)):
            end = pieces[j][1]
            if len(unicodedata.normalize("NFC", text[start:end])) > MAX_NAME_LENGTH:
                break
            if j + 1 == len(pieces) or pieces[j + 1][2]:  # a word ends here
                yield start, end, {name_digest(form) for form in _forms(text, pieces[i : j + 1])}


def mention_digests(text: str) -> set[str]:
    """The :func:`name_digest` of every way ``text`` (a label, a file path) could mention
    a name: what :func:`replace_mentions` looks for, for records that must find a
    person's mentions later without holding the text (the trials' report files)."""
    return {digest for _, _, digests in _mentions(text) for digest in digests}


def replace_mentions(text: str, digests: Collection[str], label: str) -> str:
    """``text`` (free text: a label, a file path) with every mention of a name known only
    by its :func:`name_digest` (one of ``digests``) replaced by ``label``, the rest kept
    as it is ("/clips/ada_lovelace_walk.mp4" -> "/clips/<label>_walk.mp4").

    A mention is a stretch from a word's start to a word's end (words are split at
    whitespace, punctuation, ``_``, ``/``, ``\\`` and camel case; "Adamson" holds no
    "Ada"), in any case and normalisation, written as the name is, with any separators
    where the name has spaces ("ada_lovelace", "Ada-Lovelace", "AdaLovelace"), or with
    the name's own hyphens and apostrophes kept ("Jean-Luc_Picard"). Of overlapping
    mentions, the first and longest is replaced."""
    return relabel_mentions(text, dict.fromkeys(digests, label))


def relabel_mentions(text: str, labels: Mapping[str, str]) -> str:
    """:func:`replace_mentions` of several people at once: each mention of a name whose
    :func:`name_digest` is a key of ``labels`` becomes that key's label."""
    found = [
        (start, end, labels[min(matched)])
        for start, end, forms in _mentions(text)
        if (matched := forms & labels.keys())
    ]
    parts, done = [], 0
    for start, end, label in sorted(found, key=lambda span: (span[0], -span[1])):
        if start >= done:
            parts += [text[done:start], label]
            done = end
    return "".join(parts) + text[done:]
