"""Files in and out, one way each: atomic writes, and the folder-per-person scanner.

Atomic writes go to a temporary file in the target's folder, are flushed and fsynced,
then renamed over the target (and the folder fsynced), so a reader or a crash never
sees half a file; the temporary file is removed on every error, KeyboardInterrupt
included.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from models.errors import UserError
from models.names import InvalidName, name_key, validate_name

# Files read as photos wherever a folder of them is taken (OpenCV reads them all).
IMAGE_SUFFIXES = frozenset(
    {".jpg", ".jpeg", ".png", ".bmp", ".pgm", ".ppm", ".webp", ".tif", ".tiff"}
)
TEMP_PREFIX = ".tmp-"


def fsync_dir(path: Path) -> None:
    """Make a rename or a new file in ``path`` durable (where the platform allows it)."""
    with contextlib.suppress(OSError):  # not every platform can open a folder
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


@contextlib.contextmanager
def atomic_writer(path: Path, mode: str = "wb") -> Iterator[IO[Any]]:
    """A stream whose content replaces ``path`` only once the block ends without error."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, tmp = tempfile.mkstemp(dir=path.parent, prefix=TEMP_PREFIX, suffix=path.suffix)
    try:
        encoding = None if "b" in mode else "utf-8"
        with os.fdopen(handle, mode, encoding=encoding) as stream:
            yield stream
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    fsync_dir(path.parent)


def write_bytes_atomic(path: Path, data: bytes) -> None:
    with atomic_writer(path) as stream:
        stream.write(data)


def write_json_atomic(path: Path, data: Any) -> None:
    """A JSON report written atomically; an unwritable path is a :class:`UserError`."""
    try:
        with atomic_writer(path, "w") as stream:
            json.dump(data, stream, indent=2, ensure_ascii=False)
            stream.write("\n")
    except OSError as error:
        raise UserError(f"cannot write {path}: {error.strerror or error}") from error


@dataclass(frozen=True)
class Skipped:
    """An input left out, and why (shown to the user and counted in reports)."""

    path: str
    reason: str

    def as_dict(self) -> dict[str, str]:
        return {"path": self.path, "reason": self.reason}


def scan_people(root: Path) -> tuple[dict[str, list[Path]], list[Skipped]]:
    """Image files per person folder of ``root``; bad names and duplicates are skipped."""
    if not root.is_dir():
        raise FileNotFoundError(f"people folder {root} does not exist or is not a folder")
    people: dict[str, list[Path]] = {}
    seen: dict[str, str] = {}
    skipped: list[Skipped] = []
    for folder in sorted(root.iterdir()):
        if not folder.is_dir() or folder.name.startswith((".", "_")):
            continue
        try:
            name = validate_name(folder.name)
        except InvalidName as error:
            skipped.append(Skipped(str(folder), f"unsafe name: {error}"))
            continue
        key = name_key(name)
        if key in seen:
            skipped.append(Skipped(str(folder), f"duplicate name: same person as {seen[key]!r}"))
            continue
        seen[key] = name
        files = sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith("."))
        people[name] = files
    return people, skipped
