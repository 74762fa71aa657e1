"""Files in and out, one way each: atomic writes, image reading with limits, and the
folder-per-person scanner.

Atomic writes go to a temporary file in the target's folder, are fsynced, then renamed
over the target (and the folder fsynced), so a reader or a crash never sees half a
file; the temporary file is removed on every error, KeyboardInterrupt included. A
stream writer uses :func:`atomic_writer`; one that needs a file name (an ONNX export, a
download) uses :func:`atomic_path`; both make their temporary file with
:func:`scratch_path`, the only maker of ``.tmp-*`` names. A killed run (``kill -9``, a
power cut) still leaves its temporary file: :func:`remove_stale_temps`, called where
the product opens its folders, removes it. A temporary name carries its writer's process
id and the writer holds an advisory lock (``flock``) on it while it writes, so a file is
removed at once when its writer is gone (dead process, free lock), and never while a
writer in another process is still at it; a name without a live owner to ask about is
removed once it is an hour old.

What the product writes about people (the people store, the event log, caches of
embeddings, bundles, exports) is the owner's alone: :func:`private_dir` makes folders
0700 and fixes an existing folder's mode, atomic writes keep mkstemp's 0600 unless asked
otherwise, and :func:`private_db` makes a SQLite file (and its journals) 0600.

Images are read by one function, :func:`read_image` (or :func:`read_image_bytes` then
:func:`decode_image`, for bytes that are also hashed or come from memory), which refuses
a file over ``max_bytes`` before reading it and an image over ``max_pixels`` from its
header, before decoding: a 30000 x 30000 PNG of a few hundred kilobytes would otherwise
take gigabytes to decode. Pillow reads the header (it decodes nothing until asked);
OpenCV decodes. Callers decide what a refusal (:class:`ImageRefused`) means.

A folder-per-person tree is read by :func:`scan_people` (one rule for names, duplicates
and what is skipped), and the photos among a person's files picked by
:func:`split_images`.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import sqlite3
import stat
import tempfile
import time
import warnings
from collections.abc import Iterable, Iterator
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
NOT_AN_IMAGE = "not an image file (by its suffix)"
NOT_A_FILE = "not a regular file (a link to nothing, a device or a pipe)"
PERSON = "person"  # Skipped.kind of a whole person folder
NESTED_FOLDER = "a folder inside a person's folder is not read: put the photos in it directly"
TEMP_PREFIX = ".tmp-"
# What scratch_path's mkstemp names look like: the prefix, the writer's process id and a
# dash (older versions wrote none), 8 random characters, the target's suffix.
_TEMP_NAME = re.compile(re.escape(TEMP_PREFIX) + r"(?:(?P<pid>[0-9]{1,10})-)?[a-z0-9_]{8}(\..*)?")
STALE_TEMP_S = 3600.0  # a temporary file untouched this long belongs to a killed run
PRIVATE_DIR = 0o700  # what the product writes about people: the owner's alone
PRIVATE_FILE = 0o600

log = logging.getLogger(__name__)

try:
    import fcntl
except ImportError:  # Windows: no advisory locks; stale temporary files go by age alone
    fcntl = None  # type: ignore[assignment]


def process_alive(pid: int) -> bool:
    """Whether process ``pid`` exists (on this machine's process table)."""
    if pid <= 0:
        return False
    if os.name == "nt":  # os.kill(pid, 0) would end the process there: assume alive
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


def lock_fd(fd: int) -> None:
    """Take an exclusive advisory lock on ``fd`` (kept until it is closed or the process
    ends, ``kill -9`` included); a no-op where the platform has no ``flock``."""
    if fcntl is not None:
        fcntl.flock(fd, fcntl.LOCK_EX)


def held_by_another(path: Path) -> bool:
    """Whether a live process holds the lock of :func:`lock_fd` on ``path`` (False when
    the file is missing or nobody holds it). Without ``flock``: False."""
    if fcntl is None:
        return False
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    except OSError:
        return False
    finally:
        os.close(fd)  # releases the lock if it was taken
    return False


@contextlib.contextmanager
def held_lock(path: Path) -> Iterator[int]:
    """Create ``path`` (0600) and hold :func:`lock_fd`'s lock on it for the block: what
    :func:`held_by_another` asks about. The file stays; its owner removes it."""
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), PRIVATE_FILE)
        try:
            lock_fd(fd)
        except BaseException:
            os.close(fd)
            raise
        if fcntl is None or _is_file_at(fd, path):
            break
        # A clean-up in another process removed the file between its creation and the
        # lock (it found it unlocked): this lock is on a file nobody can ask about.
        os.close(fd)
    try:
        yield fd
    finally:
        os.close(fd)


def _is_file_at(fd: int, path: Path) -> bool:
    """Whether ``path`` still names the file open as ``fd``."""
    try:
        named = os.stat(path, follow_symlinks=False)
    except FileNotFoundError:
        return False
    opened = os.fstat(fd)
    return (named.st_dev, named.st_ino) == (opened.st_dev, opened.st_ino)


def make_private(path: Path, mode: int = PRIVATE_DIR) -> bool:
    """Set ``path``'s mode to ``mode`` unless it already is; whether it now is. A path
    that cannot be changed (not the owner's) is logged and left as it is."""
    try:
        info = path.lstat()
        if stat.S_ISLNK(info.st_mode) or stat.S_IMODE(info.st_mode) == mode:
            return not stat.S_ISLNK(info.st_mode)
        os.chmod(path, mode)
    except OSError as error:
        log.warning("cannot make %s private (mode %o): %s", path, mode, error)
        return False
    return True


def private_dir(path: Path) -> Path:
    """``path`` as a folder only its owner can enter (0700, whatever the umask), created
    with its parents when missing; an existing folder's wider mode is fixed."""
    path.mkdir(parents=True, exist_ok=True, mode=PRIVATE_DIR)
    make_private(path)
    return path


def private_tree(root: Path) -> int:
    """Make every folder under ``root`` 0700 and every file 0600 (an older version's
    store, written under the default umask); how many modes were changed. Symbolic links
    are not followed."""
    changed = 0
    for folder, dirs, files in os.walk(root):
        for name, mode in [(d, PRIVATE_DIR) for d in dirs] + [(f, PRIVATE_FILE) for f in files]:
            path = Path(folder) / name
            with contextlib.suppress(OSError):
                info = path.lstat()
                if not stat.S_ISLNK(info.st_mode) and stat.S_IMODE(info.st_mode) != mode:
                    os.chmod(path, mode)
                    changed += 1
    return changed


SQLITE_SIDE_FILES = ("-wal", "-shm", "-journal")


def private_db(path: Path) -> Path:
    """A SQLite database file ready to open, 0600: created empty when missing (SQLite
    gives its -wal and -shm files the database's mode), and an existing one, with its
    side files, made 0600."""
    if not path.parent.exists():
        private_dir(path.parent)
    with contextlib.suppress(FileExistsError):
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_FILE))
    for candidate in (path, *(path.with_name(path.name + s) for s in SQLITE_SIDE_FILES)):
        if candidate.exists():
            make_private(candidate, PRIVATE_FILE)
    return path


@contextlib.contextmanager
def immediate_transaction(db: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """One SQLite write transaction, its lock taken at once (``BEGIN IMMEDIATE``):
    committed when the block ends, rolled back on any exception (a kill leaves none)."""
    db.execute("BEGIN IMMEDIATE")
    try:
        yield db
        db.execute("COMMIT")
    except BaseException:
        if db.in_transaction:
            db.execute("ROLLBACK")
        raise


def same_drive(folder: Path, device: int) -> bool:
    """Whether ``folder`` exists on the filesystem (``st_dev``) a file was written on: a
    drive's mount point without the drive is another filesystem, or no folder at all."""
    try:
        return folder.is_dir() and folder.stat().st_dev == device
    except OSError:
        return False


def fsync_dir(path: Path) -> None:
    """Make a rename or a new file in ``path`` durable (where the platform allows it)."""
    with contextlib.suppress(OSError):  # not every platform can open a folder
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


@contextlib.contextmanager
def scratch_path(folder: Path, suffix: str = "") -> Iterator[Path]:
    """A new empty file in ``folder`` (named ``TEMP_PREFIX...``), removed when the block
    ends, whatever happens (unless the block renamed it away).

    The one place temporary files are made: :func:`remove_stale_temps` recognises its
    names (they carry this process's id) and sees the lock this block holds on the file,
    so what a killed run leaves behind is removed by the next one. A folder it creates
    is the owner's only (0700)."""
    folder.mkdir(parents=True, exist_ok=True, mode=PRIVATE_DIR)
    handle, name = tempfile.mkstemp(
        dir=folder, prefix=f"{TEMP_PREFIX}{os.getpid()}-", suffix=suffix
    )
    tmp = Path(name)
    try:
        if fcntl is not None:
            lock_fd(handle)  # held until the block ends: the file is in use
        else:
            os.close(handle)  # Windows: an open file could not be renamed
        yield tmp
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        if fcntl is not None:
            os.close(handle)


@contextlib.contextmanager
def atomic_path(path: Path, *, permissions: int | None = None) -> Iterator[Path]:
    """A temporary path beside ``path`` for a writer that needs a file name (an ONNX
    export, a download); once the block ends without error the file is fsynced and
    renamed over ``path``, else removed. ``permissions`` (e.g. ``0o644``) replaces
    mkstemp's private ``0o600``."""
    with scratch_path(path.parent, path.suffix) as tmp:
        yield tmp
        if permissions is not None:
            os.chmod(tmp, permissions)
        fd = os.open(tmp, os.O_RDWR)  # fsync reaches the file's data, whoever wrote it
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    fsync_dir(path.parent)


@contextlib.contextmanager
def atomic_writer(
    path: Path, mode: str = "wb", *, permissions: int | None = None
) -> Iterator[IO[Any]]:
    """A stream whose content replaces ``path`` only once the block ends without error."""
    encoding = None if "b" in mode else "utf-8"
    with (
        atomic_path(path, permissions=permissions) as tmp,
        tmp.open(mode, encoding=encoding) as out,
    ):
        yield out


def remove_stale_temps(folder: Path, older_than_s: float = STALE_TEMP_S) -> list[Path]:
    """Remove the temporary files a killed run left in ``folder``; the paths removed.

    Only names :func:`scratch_path` makes are matched (``.tmp-``, the writer's process
    id, mkstemp's eight characters, then the target's suffix) and only regular files.
    One whose writer is gone (no such process, and nobody holds its lock) is removed at
    once; one whose name has no process id, or whose id now belongs to another process,
    once it is untouched for ``older_than_s`` seconds and unlocked. A write in progress
    in another process is never hit. Never raises: a missing or read-only folder is left
    as it is."""
    removed: list[Path] = []
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed
    now = time.time()
    for entry in entries:
        found = _TEMP_NAME.fullmatch(entry.name)
        if not found:
            continue
        try:
            info = entry.stat(follow_symlinks=False)
            if not stat.S_ISREG(info.st_mode):
                continue
            pid = found.group("pid")
            gone = pid is not None and not process_alive(int(pid))
            if not gone and now - info.st_mtime < older_than_s:
                continue
            if held_by_another(Path(entry.path)):
                continue
            os.unlink(entry.path)
        except OSError:
            continue
        removed.append(Path(entry.path))
    return removed


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


def read_image_bytes(
    path: Path, *, max_bytes: int = MAX_IMAGE_BYTES, where: str | None = None
) -> bytes:
    """The content of the image file ``path``, refused (:class:`ImageRefused`) over
    ``max_bytes`` before it is read. For callers that need the bytes too (to hash
    them); :func:`decode_image` then decodes them. Only a regular file is read (a
    device such as /dev/zero, or a pipe, would never end or never start), and never
    more than ``max_bytes``, even if it grows while it is read."""
    where = str(path) if where is None else where
    try:
        # O_NONBLOCK: opening a pipe (a FIFO named like a photo) must not wait for a writer.
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except OSError as error:
        raise ImageRefused(f"{where} cannot be read: {error.strerror or error}") from error
    try:
        with os.fdopen(fd, "rb") as stream:
            info = os.fstat(stream.fileno())
            if stat.S_ISDIR(info.st_mode):
                raise ImageRefused(f"{where} is a folder, not an image file")
            if not stat.S_ISREG(info.st_mode):
                raise ImageRefused(f"{where} is not a regular file (a device or a pipe?)")
            if info.st_size > max_bytes:
                raise _too_big(where, info.st_size, max_bytes)
            data = stream.read(max_bytes + 1)
    except OSError as error:
        raise ImageRefused(f"{where} cannot be read: {error.strerror or error}") from error
    if len(data) > max_bytes:
        raise _too_big(where, len(data), max_bytes)
    return data


def read_image(
    path: Path,
    *,
    max_pixels: int = MAX_IMAGE_PIXELS,
    max_bytes: int = MAX_IMAGE_BYTES,
    where: str | None = None,
) -> NDArray[np.uint8]:
    """The image file ``path`` as BGR uint8, or :class:`ImageRefused` saying why not.

    ``where`` names the file in the message (default: its path)."""
    where = str(path) if where is None else where
    data = read_image_bytes(path, max_bytes=max_bytes, where=where)
    return decode_image(data, where, max_pixels=max_pixels, max_bytes=max_bytes)


@dataclass(frozen=True)
class Skipped:
    """An input left out, and why (shown to the user and counted in reports)."""

    path: str
    reason: str
    kind: str = "file"  # "person": a whole person folder left out (its name, or unreadable)

    def as_dict(self) -> dict[str, str]:
        return {"path": self.path, "reason": self.reason}


def split_images(files: Iterable[Path]) -> tuple[list[Path], list[Skipped]]:
    """``files`` read as photos (by suffix: :data:`IMAGE_SUFFIXES`), and the others skipped."""
    photos: list[Path] = []
    skipped: list[Skipped] = []
    for path in files:
        if path.suffix.lower() in IMAGE_SUFFIXES:
            photos.append(path)
        else:
            skipped.append(Skipped(str(path), NOT_AN_IMAGE))
    return photos, skipped


def scan_people(root: Path) -> tuple[dict[str, list[Path]], list[Skipped]]:
    """The files of each person folder of ``root`` (sorted), and what was left out.

    The one rule for a folder-per-person tree (training, import, galleries, evaluation):
    folders starting with "." or "_" are not people (faces94's ``_unknown``) and are
    passed over silently, as are loose files in ``root`` and hidden files; a folder whose
    name is unsafe (:func:`models.names.validate_name`) or names the same person as an
    earlier one (case and Unicode normalisation aside) is skipped, and so is a folder
    inside a person's folder (photos go directly in it): each with its reason. Callers
    keep the photos among the files with :func:`split_images`."""
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
            skipped.append(Skipped(str(folder), f"unsafe name: {error}", PERSON))
            continue
        key = name_key(name)
        if key in seen:
            skipped.append(
                Skipped(str(folder), f"duplicate name: same person as {seen[key]!r}", PERSON)
            )
            continue
        try:
            entries = sorted(p for p in folder.iterdir() if not p.name.startswith("."))
        except OSError as error:
            skipped.append(
                Skipped(str(folder), f"cannot be read: {error.strerror or error}", PERSON)
            )
            continue
        seen[key] = name
        people[name] = []
        for entry in entries:
            if entry.is_dir():
                skipped.append(Skipped(str(entry), NESTED_FOLDER))
            elif entry.is_file():
                people[name].append(entry)
            else:
                skipped.append(Skipped(str(entry), NOT_A_FILE))
    return people, skipped
