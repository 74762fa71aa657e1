"""Files in and out, one way each: atomic writes, image reading with limits, and the
folder-per-person scanner.

Atomic writes go to a temporary file in the target's folder, are flushed and fsynced,
then renamed over the target (and the folder fsynced), so a reader or a crash never
sees half a file; the temporary file is removed on every error, KeyboardInterrupt
included.

Images are read by one function, :func:`read_image` (or :func:`decode_image` for bytes
in memory), which refuses a file over ``max_bytes`` before reading it and an image over
``max_pixels`` from its header, before decoding: a 30000 x 30000 PNG of a few hundred
kilobytes would otherwise take gigabytes to decode. Pillow reads the header (it decodes
nothing until asked); OpenCV decodes.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import tempfile
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import numpy as np
from numpy.typing import NDArray

from models.errors import UserError
from models.names import InvalidName, name_key, validate_name

MAX_IMAGE_BYTES = 64 * 2**20  # a camera photo is a few MB; an aligned crop is ~100 kB
MAX_IMAGE_PIXELS = 50_000_000  # a 50-megapixel photo is read, a bigger one refused

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


class ImageRefused(UserError):
    """An image file that is not read: unreadable, not an image, corrupt or too large."""


def _megapixels(pixels: int) -> str:
    return f"{pixels / 1e6:.1f} megapixels"


def file_size_text(size: float) -> str:
    """``size`` bytes for people: 900 bytes, 12.3 kB, 64 MB, 1.2 GB."""
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if size >= scale:
            value = size / scale
            return f"{value:.1f} {unit}" if value < 10 else f"{value:.0f} {unit}"
    return f"{size:.0f} bytes"


def _too_big(where: str, size: int, max_bytes: int) -> ImageRefused:
    return ImageRefused(
        f"{where} is {file_size_text(size)}; images over {file_size_text(max_bytes)} are not read"
    )


def decode_image(
    data: bytes,
    where: str = "the image",
    *,
    max_pixels: int = MAX_IMAGE_PIXELS,
    max_bytes: int = MAX_IMAGE_BYTES,
) -> NDArray[np.uint8]:
    """A BGR uint8 image (grey images become 3 channels), or :class:`ImageRefused`."""
    if not data:
        raise ImageRefused(f"{where} is empty")
    if len(data) > max_bytes:
        raise _too_big(where, len(data), max_bytes)
    import io

    from PIL import Image, UnidentifiedImageError

    try:
        with warnings.catch_warnings():  # Pillow warns above 89 MP; we decide below
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as header:  # reads the header, decodes nothing
                width, height = header.size
    except Image.DecompressionBombError as error:  # Pillow's own limit, far above ours
        found = re.search(r"\((\d+) pixels\)", str(error))
        size = f" ({_megapixels(int(found.group(1)))})" if found else ""
        raise ImageRefused(
            f"{where} is too large{size}; images over {_megapixels(max_pixels)} are not read"
        ) from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError):
        width = height = 0  # not a format Pillow knows: OpenCV decides, under its limit
    if width * height > max_pixels:
        raise ImageRefused(
            f"{where} is {width} x {height} pixels ({_megapixels(width * height)}); "
            f"images over {_megapixels(max_pixels)} are not read"
        )
    import cv2

    try:
        image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    except cv2.error:
        image = None
    if image is None:
        raise ImageRefused(f"{where} is not an image, or is corrupt")
    return np.asarray(image, dtype=np.uint8)


def read_image(
    path: Path, *, max_pixels: int = MAX_IMAGE_PIXELS, max_bytes: int = MAX_IMAGE_BYTES
) -> NDArray[np.uint8]:
    """The image file ``path`` as BGR uint8, or :class:`ImageRefused` saying why not."""
    try:
        size = path.stat().st_size
        if size > max_bytes:
            raise _too_big(str(path), size, max_bytes)
        data = path.read_bytes()
    except OSError as error:
        raise ImageRefused(f"{path} cannot be read: {error.strerror or error}") from error
    return decode_image(data, str(path), max_pixels=max_pixels, max_bytes=max_bytes)


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
