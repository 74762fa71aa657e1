"""The people store: SQLite (WAL) for people, consent, photos' records and the audit log,
plus one folder of image files per person.

Layout under the store's root::

    people.db             schema version, people, photos, embeddings, audit, meta,
                          exports (where each person was exported), erasures (journal)
    photos/<uid>/         one folder per person, named by an opaque id, never by the name
    staging/              files being written; emptied on every open
    exports/              the exports in progress (`kiosk people export`), to clean up

Encryption (``encrypt``, with the operator's key) is per person: each person has their own
random data key (Fernet), kept in their row wrapped by the operator's key, and their
photos and embeddings (and, in the kiosk, their door-event thumbnails) are sealed with
it. Deleting the row destroys the key, so whatever copy of their files survives anywhere
(a backup, a disk block) can no longer be read, even with the operator's key: deletion
needs no key at all (``keyless``). Stores made before per-person keys are re-sealed the
first time they are opened with the key.

A deletion or purge also writes an entry in the erasure journal (the person's id, a
one-way digest of their name, their photos' content digests, where they were exported):
what the kiosk needs to remove the person from everything outside the store (door
events, trial records, exports, feature caches). The kiosk clears the entry once that is
done (``kiosk/erasure.py``); the journal never holds the name.

A person is written in three steps: their files are written and fsynced in
``staging/<uid>``, the folder is renamed to ``photos/<uid>`` inside an open transaction,
and the transaction commits. A crash before the commit leaves a staging folder or a
``photos/`` folder that no row points to; both are removed when the store opens again,
so no half-written person ever becomes visible. Deletion commits first and removes the
folder after; a crash in between leaves an orphan folder that the next open removes.
While a process stages a person it holds a lock on ``staging/<uid>.lock``, and the
clean-up runs holding the database's write lock, so a store opened by a second process
(the kiosk while `kiosk people import` runs) never removes a save in progress.

An import (:meth:`PeopleStore.import_folder`) checks the whole folder first, stages
every person, then commits them all in one transaction: a failure or a ``kill -9``
leaves nobody imported, and a rerun starts clean. An export is written to a temporary
folder beside its target and renamed at the end; one a killed run left is removed the
next time the store opens.

Everything is the owner's alone: folders 0700, files 0600 (an older store opened with
wider modes is fixed on open).
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import logging
import os
import re
import shutil
import sqlite3
import threading
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import numpy as np
from numpy.typing import NDArray

from enroll.keys import KEY_ENV, NEW_KEY_HINT, cipher, operator_key
from models.errors import UserError
from models.io import (
    PERSON,
    PRIVATE_DIR,
    PRIVATE_FILE,
    TEMP_PREFIX,
    ImageRefused,
    Skipped,
    decode_image,
    fsync_dir,
    held_by_another,
    held_lock,
    immediate_transaction,
    private_db,
    private_dir,
    private_tree,
    read_image,
    remove_stale_temps,
    scan_people,
    split_images,
    write_bytes_atomic,
    write_json_atomic,
)
from models.names import name_digest, name_key, validate_name

if TYPE_CHECKING:
    from cryptography.fernet import Fernet

    from enroll.config import EnrollConfig

log = logging.getLogger(__name__)

SCHEMA_VERSION = 2
DB_NAME = "people.db"
EXPORT_MARKER = "kiosk-export.txt"  # marks an export whose images are already aligned crops
_KEY_CHECK = b"clip-face-kiosk people store"
_UID = re.compile(r"[0-9a-f]{32}")  # uuid4().hex: the only names the store creates
_LOCK = ".lock"  # staging/<uid>.lock, exports/<token>.lock: held while the work is going on
EXPORT_TEMP = ".tmp-export-"  # <target's folder>/.tmp-export-<token>: an export being written
MAX_IMPORT_PHOTOS = 200  # photos imported per person (the wizard takes about 10)

# Each entry upgrades the schema from version i to i + 1; entry 0 creates it.
MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE people (
        id INTEGER PRIMARY KEY,
        uid TEXT NOT NULL UNIQUE,
        name TEXT NOT NULL,
        name_key TEXT NOT NULL UNIQUE,
        external_id TEXT,
        created_at TEXT NOT NULL,
        consent_version TEXT NOT NULL,
        consent_at TEXT NOT NULL
    );
    CREATE TABLE photos (
        id INTEGER PRIMARY KEY,
        person_id INTEGER NOT NULL REFERENCES people(id) ON DELETE CASCADE,
        file TEXT NOT NULL,
        kind TEXT NOT NULL CHECK (kind IN ('aligned', 'original')),
        pose TEXT NOT NULL DEFAULT '',
        created_at TEXT NOT NULL
    );
    CREATE INDEX photos_person ON photos(person_id);
    CREATE TABLE embeddings (
        photo_id INTEGER NOT NULL REFERENCES photos(id) ON DELETE CASCADE,
        model TEXT NOT NULL,
        vector BLOB NOT NULL,
        PRIMARY KEY (photo_id, model)
    );
    CREATE TABLE audit (
        id INTEGER PRIMARY KEY,
        at TEXT NOT NULL,
        action TEXT NOT NULL,
        subject TEXT NOT NULL,
        reason TEXT NOT NULL
    );
    CREATE TABLE meta (key TEXT PRIMARY KEY, value BLOB NOT NULL);
    """,
    # 2: per-person data keys (wrapped by the operator's key; NULL when not encrypted),
    # photos' content digests, the export record and the erasure journal.
    """
    ALTER TABLE people ADD COLUMN data_key BLOB;
    ALTER TABLE photos ADD COLUMN digest TEXT NOT NULL DEFAULT '';
    CREATE TABLE exports (
        person_id INTEGER NOT NULL REFERENCES people(id) ON DELETE CASCADE,
        root TEXT NOT NULL,
        folder_digest TEXT NOT NULL,
        device INTEGER NOT NULL,
        PRIMARY KEY (person_id, root, folder_digest)
    );
    CREATE TABLE erasures (
        uid TEXT PRIMARY KEY,
        name_digest TEXT NOT NULL,
        at TEXT NOT NULL,
        photo_digests TEXT NOT NULL,
        exports TEXT NOT NULL
    );
    """,
)
_PER_PERSON_KEYS = "per_person_keys"  # meta: every photo and embedding has its person's key


def utc_now() -> datetime:
    return datetime.now(UTC)


def new_uid() -> str:
    """A new opaque person id: the only form of id the store accepts."""
    return uuid.uuid4().hex


@dataclass(frozen=True)
class Consent:
    """What the volunteer agreed to (the consent text's version) and when."""

    version: str
    at: datetime


class PhotoToStore(Protocol):
    """What a stored photo needs (a capture session's photos have it too)."""

    @property
    def crop(self) -> NDArray[np.uint8]: ...  # BGR, aligned
    @property
    def pose(self) -> str: ...
    @property
    def original(self) -> NDArray[np.uint8] | None: ...


@dataclass(frozen=True)
class NewPhoto:
    """A photo to store: the aligned crop (BGR), its pose, and optionally the full frame."""

    crop: NDArray[np.uint8]
    pose: str = ""
    original: NDArray[np.uint8] | None = None


@dataclass(frozen=True)
class Person:
    uid: str  # opaque: the audit log and the folder names use it, never the name
    name: str
    external_id: str | None
    created_at: datetime
    consent: Consent
    photo_count: int


@dataclass(frozen=True)
class PhotoRecord:
    id: int
    file: Path
    kind: str
    pose: str


@dataclass(frozen=True)
class StoreState:
    """Which people, under which names, with which photos: what a recognizer is built from.

    ``digest`` changes whenever anyone is enrolled, renamed, deleted, purged or given other
    photos; a recognizer bundle records the digest it was trained from, and one whose
    digest is not the store's is stale.
    """

    digest: str
    people: tuple[tuple[str, str], ...]  # (uid, name), by uid

    @property
    def names(self) -> dict[str, str]:
        return dict(self.people)


@dataclass(frozen=True)
class Erasure:
    """An entry of the erasure journal: a person deleted or purged from the store whose
    traces outside it the kiosk has yet to remove (see the module's docstring)."""

    uid: str
    name_digest: str  # models.names.name_digest of their name: matches it, never shows it
    at: datetime
    photo_digests: tuple[str, ...]  # sha256 of each stored PNG: cached features are named so
    # (export folder, digest of the name it was under, st_dev of the folder it is in)
    exports: tuple[tuple[Path, str, int], ...]

    def matches(self, name: str) -> bool:
        return name_digest(name) == self.name_digest


@dataclass(frozen=True)
class AuditEntry:
    at: datetime
    action: str
    subject: str
    reason: str


class StoreWatcher:
    """Who is in a people store now, for a running recognizer: its own SQLite connection,
    read-only, so the inference thread can ask before every frame.

    :meth:`changed` is SQLite's ``PRAGMA data_version``, which moves when any other
    connection commits (a deletion by `kiosk people delete`, the wizard, a site sync):
    a few microseconds when nothing changed.
    """

    def __init__(self, root: Path) -> None:
        self._db = sqlite3.connect(
            f"file:{root / DB_NAME}?mode=ro", uri=True, check_same_thread=False
        )
        self._version: int | None = None
        self._lock = threading.Lock()

    def changed(self) -> bool:
        with self._lock:
            version = int(self._db.execute("PRAGMA data_version").fetchone()[0])
            changed, self._version = version != self._version, version
            return changed

    def people(self) -> dict[str, str]:
        """uid -> name of everyone enrolled."""
        with self._lock:
            return dict(self._db.execute("SELECT uid, name FROM people").fetchall())

    def close(self) -> None:
        self._db.close()


class PersonSealer:
    """Seals data with each person's data key, for a process that keeps the store open
    elsewhere (the door's event log): its own read-only connection, and the operator's
    key to unwrap the data keys. Thread-safe.

    A person the store does not hold (erased, or never enrolled) has no key: their data
    is not sealed at all (:meth:`seal` returns None) and never opened again. Names that
    are not store ids (a recognizer trained from a folder) are sealed with the
    operator's key itself.
    """

    def __init__(self, root: Path | None, key: bytes) -> None:
        self._operator = cipher(key)
        self._db = None
        if root is not None:
            self._db = sqlite3.connect(
                f"file:{root / DB_NAME}?mode=ro", uri=True, check_same_thread=False
            )
        self._lock = threading.Lock()

    def _key_of(self, uid: str) -> Fernet | None:
        if self._db is None or not _UID.fullmatch(uid):
            return self._operator
        with self._lock:
            row = self._db.execute("SELECT data_key FROM people WHERE uid = ?", (uid,)).fetchone()
        if row is None:
            return None
        if row[0] is None:  # a store not yet upgraded to per-person keys
            return self._operator
        from cryptography.fernet import Fernet

        return Fernet(self._operator.decrypt(bytes(row[0])))

    def seal(self, uid: str, data: bytes) -> bytes | None:
        found = self._key_of(uid)
        return found.encrypt(data) if found is not None else None

    def unseal(self, uid: str, data: bytes) -> bytes:
        from cryptography.fernet import InvalidToken

        found = self._key_of(uid)
        if found is None:
            raise UserError(f"person {uid} was erased: their data can no longer be read")
        try:
            return found.decrypt(data)
        except InvalidToken:
            raise UserError(f"data of person {uid} cannot be decrypted") from None

    def close(self) -> None:
        if self._db is not None:
            self._db.close()


def person_sealer(root: Path, key: bytes | None, encrypt: bool) -> PersonSealer | None:
    """The sealer of the people store at ``root`` when it is encrypted (or, without a
    store yet, when ``encrypt`` asks for it); None when nothing is to be sealed. An
    encrypted store without ``key`` is the store's own clear error."""
    db = root / DB_NAME
    sealed = encrypt
    if db.exists():
        with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as conn:
            try:
                sealed = bool(conn.execute("SELECT 1 FROM meta WHERE key = 'key_check'").fetchone())
            except sqlite3.DatabaseError:
                sealed = encrypt  # not created yet, or damaged: the store says which
    if not sealed:
        return None
    if key is None:
        raise UserError(f"encryption is on but no key is set: set ${KEY_ENV}; {NEW_KEY_HINT}")
    return PersonSealer(root if db.exists() else None, key)


def default_store_dir() -> Path:

    from models.paths import user_data_dir

    return user_data_dir() / "people"


def open_store(config: EnrollConfig, *, keyless: bool = False) -> PeopleStore:
    """The store the configuration names, with the operator's key; expired people purged.

    ``keyless``: an encrypted store opens without the key too, for what needs none
    (listing, renaming, deleting, purging, the audit log)."""
    return PeopleStore(
        config.store_dir or default_store_dir(),
        key=operator_key(),
        encrypt=config.encrypt,
        retention_days=config.retention_days,
        keyless=keyless,
    )


def _disk_error(error: OSError | sqlite3.Error, what: str) -> UserError:
    full = (isinstance(error, OSError) and error.errno == errno.ENOSPC) or (
        isinstance(error, sqlite3.Error) and "full" in str(error)
    )
    if full:
        return UserError(
            f"the disk is full: {what} failed and nothing was changed; free some space and "
            "try again"
        )
    return UserError(f"{what} failed: {error}; nothing was changed")


def _write_file(path: Path, data: bytes) -> None:
    """A new file (never one that exists), owner-only (0600, whatever the umask), fsynced."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_FILE)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())


def _remove(path: Path) -> None:
    """Remove a file or a folder tree; one already gone (another process cleaned it) is fine."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


@dataclass(frozen=True)
class StagedPerson:
    """A person whose files are written in ``staging/<uid>`` (and locked), waiting for
    the commit that makes them enrolled (:meth:`PeopleStore.commit_staged`)."""

    uid: str
    name: str
    external_id: str | None
    consent: Consent
    rows: tuple[tuple[str, str, str, str], ...]  # (file, kind, pose, PNG digest) per file
    stage: Path
    data_key: bytes | None = None  # theirs, wrapped by the operator's key (encrypted stores)

    def aligned_files(self) -> list[tuple[str, Path]]:
        """(pose, file) of each aligned crop, as stored (sealed when the store encrypts)."""
        return [(pose, self.stage / file) for file, kind, pose, _ in self.rows if kind == "aligned"]


@dataclass(frozen=True)
class ImportPlan:
    """What an import will read: each person's photo files, and what is left out."""

    aligned: bool  # the folder is an export: its images are crops already
    people: dict[str, list[Path]]
    skipped: list[Skipped]


def encode_png(image: NDArray[np.uint8]) -> bytes:
    import cv2

    ok, buffer = cv2.imencode(".png", image)
    if not ok:
        raise UserError(f"cannot encode an image of shape {image.shape} as PNG")
    return bytes(buffer.tobytes())


class PeopleStore:
    """People, their consent and photos. Open it with ``with PeopleStore(root) as store``.

    ``key`` (the operator's Fernet key) wraps each person's data key, which encrypts
    their photos and embeddings; a store created encrypted needs it to read or add
    anyone, and refuses to open without it unless ``keyless`` (then it can list, rename,
    delete and purge, which decrypt nothing). ``retention_days`` purges expired people
    when the store opens.
    """

    def __init__(
        self,
        root: Path,
        *,
        key: bytes | None = None,
        encrypt: bool = False,
        retention_days: int | None = None,
        keyless: bool = False,
    ) -> None:
        self.root = Path(root)
        self.photos_dir = self.root / "photos"
        self.staging_dir = self.root / "staging"
        self.exports_dir = self.root / "exports"
        self.retention_days = retention_days
        try:
            self._make_private()
            # One user at a time, but the wizard saves from a worker thread.
            self._db = sqlite3.connect(
                private_db(self.root / DB_NAME),
                isolation_level=None,
                check_same_thread=False,
                timeout=30.0,  # another process's commit (an import's) can take a while
            )
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.execute("PRAGMA foreign_keys=ON")
            self._db.execute("PRAGMA secure_delete=ON")  # deleted rows are zeroed on disk
            self._migrate()
        except sqlite3.DatabaseError as error:
            raise UserError(
                f"the people store {self.root / DB_NAME} cannot be opened: {error}"
            ) from error
        except OSError as error:
            raise UserError(f"cannot create the people store in {self.root}: {error}") from error
        self.unreadable: dict[int, str] = {}  # stored photo id -> why it could not be read
        self._ciphers: dict[str, Fernet] = {}  # uid -> the person's unwrapped data key
        self._sealed = False  # encrypted, whether or not the key was given
        try:
            self._fernet = self._setup_encryption(key, encrypt, keyless)
            self._legacy = self._sealed and self._meta(_PER_PERSON_KEYS) is None
            self.recover()
            self._upgrade()
            self.purged_on_open = self.purge_expired()  # uids purged: their time ran out
        except sqlite3.OperationalError as error:
            self._db.close()
            raise UserError(
                f"the people store {self.root} is busy or cannot be written ({error}): "
                "another command may be writing to it; try again"
            ) from error
        except BaseException:
            self._db.close()
            raise

    # -- lifecycle -------------------------------------------------------------------

    def _make_private(self) -> None:
        """The store's folders, 0700; a store an older version wrote (0755 folders, 0644
        files) is made the owner's alone, every file of it."""
        wide = self.root.is_dir() and bool(self.root.stat().st_mode & 0o077)
        for folder in (self.root, self.photos_dir, self.staging_dir, self.exports_dir):
            private_dir(folder)
        if wide:
            changed = private_tree(self.root)
            log.info("people store %s: %d files and folders made private", self.root, changed)

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> PeopleStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _transaction(self) -> contextlib.AbstractContextManager[sqlite3.Connection]:
        return immediate_transaction(self._db)

    def _migrate(self) -> None:
        self._db.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
        row = self._db.execute("SELECT version FROM schema_version").fetchone()
        version = int(row[0]) if row else 0
        if version > SCHEMA_VERSION:
            raise UserError(
                f"the people store {self.root} has schema version {version}, newer than this "
                f"program's {SCHEMA_VERSION}: update the program"
            )
        for target in range(version, SCHEMA_VERSION):
            with self._transaction() as db:
                for statement in MIGRATIONS[target].split(";"):
                    if statement.strip():
                        db.execute(statement)
                db.execute("DELETE FROM schema_version")
                db.execute("INSERT INTO schema_version VALUES (?)", (target + 1,))

    @property
    def encrypted(self) -> bool:
        return self._sealed

    def _meta(self, key: str) -> bytes | None:
        row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return bytes(row[0]) if row is not None else None

    def _no_key(self) -> UserError:
        return UserError(
            f"the people store {self.root} is encrypted: set ${KEY_ENV} (or the OS "
            "keyring) to the key it was created with"
        )

    def _setup_encryption(self, key: bytes | None, encrypt: bool, keyless: bool) -> Fernet | None:
        row = self._db.execute("SELECT value FROM meta WHERE key = 'key_check'").fetchone()
        if row is not None:
            self._sealed = True
            if key is None:
                if keyless:
                    return None
                raise self._no_key()
            fernet = cipher(key)
            from cryptography.fernet import InvalidToken

            try:
                fernet.decrypt(bytes(row[0]))
            except InvalidToken:
                raise UserError(
                    f"the key in ${KEY_ENV} (or the keyring) is not the key the people store "
                    f"{self.root} was encrypted with"
                ) from None
            return fernet
        if not encrypt:
            return None
        if key is None:
            raise UserError(f"encryption is on but no key is set: set ${KEY_ENV}; {NEW_KEY_HINT}")
        if self._db.execute("SELECT COUNT(*) FROM people").fetchone()[0]:
            raise UserError(
                f"the people store {self.root} was created without encryption; export it, "
                "then import it into a new, encrypted store"
            )
        fernet = cipher(key)
        with self._transaction() as db:
            db.execute("INSERT INTO meta VALUES ('key_check', ?)", (fernet.encrypt(_KEY_CHECK),))
            db.execute("INSERT INTO meta VALUES (?, X'31')", (_PER_PERSON_KEYS,))
        self._sealed = True
        return fernet

    # -- per-person keys -------------------------------------------------------------

    def _operator(self) -> Fernet:
        if self._fernet is None:
            raise self._no_key()
        return self._fernet

    def _cipher(self, uid: str) -> Fernet | None:
        """The person's data key (None: the store is not encrypted, or the person's files
        predate per-person keys and are sealed with the operator's key)."""
        if not self._sealed:
            return None
        if uid in self._ciphers:
            return self._ciphers[uid]
        operator = self._operator()
        row = self._db.execute("SELECT data_key FROM people WHERE uid = ?", (uid,)).fetchone()
        if row is None:
            raise UserError(f"no enrolled person has the id {uid}")
        if row[0] is None:
            return None
        from cryptography.fernet import Fernet

        found = Fernet(operator.decrypt(bytes(row[0])))
        self._ciphers[uid] = found
        return found

    def _seal_for(self, uid: str, data: bytes) -> bytes:
        if not self._sealed:
            return data
        found = self._cipher(uid)
        return (found or self._operator()).encrypt(data)

    def _open_for(self, uid: str, data: bytes, what: str) -> bytes:
        """``data`` of the person ``uid`` decrypted; a :class:`UserError` naming ``what``
        when it cannot be."""
        if not self._sealed:
            return data
        from cryptography.fernet import InvalidToken

        keys = [self._cipher(uid)]
        if self._legacy or keys[0] is None:
            keys.append(self._operator())  # sealed before per-person keys
        for found in keys:
            if found is None:
                continue
            with contextlib.suppress(InvalidToken):
                return found.decrypt(data)
        raise UserError(f"{what} cannot be decrypted")

    def seal(self, uid: str, data: bytes) -> bytes:
        """``data`` sealed with the person's data key (unchanged when the store is not
        encrypted): a door-event thumbnail, which their erasure shreds with them."""
        return self._seal_for(uid, data)

    def unseal(self, uid: str, data: bytes) -> bytes:
        return self._open_for(uid, data, f"data of person {uid}")

    def _upgrade(self) -> None:
        """Fill in what schema 2 added to older rows: photos' content digests, and (with
        the key) a data key per person, re-sealing their files and embeddings with it.

        Each file is replaced atomically; a person's key is committed before the first
        file is re-sealed, and a file already under it is left alone, so an upgrade that
        is killed resumes where it stopped the next time the store opens with the key."""
        pending = self._db.execute(
            "SELECT ph.id, p.uid, ph.file FROM photos ph JOIN people p ON p.id = ph.person_id "
            "WHERE ph.digest = ''"
        ).fetchall()
        if not self._sealed and pending:
            digests = []
            for photo_id, uid, file in pending:
                with contextlib.suppress(OSError):
                    data = (self.photos_dir / uid / file).read_bytes()
                    digests.append((hashlib.sha256(data).hexdigest(), photo_id))
            with self._transaction() as db:
                db.executemany("UPDATE photos SET digest = ? WHERE id = ?", digests)
        if not self._legacy or self._fernet is None:
            return
        from cryptography.fernet import Fernet, InvalidToken

        operator = self._fernet
        for person_id, uid in self._db.execute("SELECT id, uid FROM people").fetchall():
            with self._transaction() as db:
                db.execute(
                    "UPDATE people SET data_key = ? WHERE id = ? AND data_key IS NULL",
                    (operator.encrypt(Fernet.generate_key()), person_id),
                )
            own = self._cipher(uid)
            assert own is not None
            digests = []
            for photo_id, file in self._db.execute(
                "SELECT id, file FROM photos WHERE person_id = ?", (person_id,)
            ).fetchall():
                path = self.photos_dir / uid / file
                try:
                    data = path.read_bytes()
                    try:
                        plain = own.decrypt(data)
                    except InvalidToken:
                        plain = operator.decrypt(data)
                        write_bytes_atomic(path, own.encrypt(plain))
                except (OSError, InvalidToken) as error:
                    log.warning("cannot re-seal the stored photo %s: %s", path, error)
                    continue
                digests.append((hashlib.sha256(plain).hexdigest(), photo_id))
            vectors = []
            for photo_id, model, vector in self._db.execute(
                "SELECT e.photo_id, e.model, e.vector FROM embeddings e JOIN photos ph "
                "ON ph.id = e.photo_id WHERE ph.person_id = ?",
                (person_id,),
            ).fetchall():
                try:
                    own.decrypt(bytes(vector))
                except InvalidToken:
                    with contextlib.suppress(InvalidToken):
                        plain = operator.decrypt(bytes(vector))
                        vectors.append((own.encrypt(plain), photo_id, model))
            with self._transaction() as db:
                db.executemany("UPDATE photos SET digest = ? WHERE id = ?", digests)
                db.executemany(
                    "UPDATE embeddings SET vector = ? WHERE photo_id = ? AND model = ?", vectors
                )
        with self._transaction() as db:
            db.execute("INSERT OR REPLACE INTO meta VALUES (?, X'31')", (_PER_PERSON_KEYS,))
        self._legacy = False
        self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")

    def recover(self) -> list[str]:
        """Remove what an interrupted save, import, delete or export left behind; the
        removed paths.

        Runs holding the database's write lock: a save in another process renames its
        folder and commits under that lock, so it is never caught in between; a person
        still being staged elsewhere holds ``staging/<uid>.lock`` and is left alone."""
        removed: list[str] = []
        with self._transaction() as db:
            known = {row[0] for row in db.execute("SELECT uid FROM people")}
            for path in sorted(self.photos_dir.iterdir()):
                if _UID.fullmatch(path.name) and path.name not in known:
                    _remove(path)  # renamed, then the commit never came (or a deletion's)
                    removed.append(str(path))
            for path in sorted(self.staging_dir.iterdir()):
                uid = path.name.removesuffix(_LOCK)
                if not _UID.fullmatch(uid) or (uid in known and path.name == uid):
                    continue  # not ours: never removed
                lock = self.staging_dir / f"{uid}{_LOCK}"
                if held_by_another(lock):
                    continue  # being staged by a live process
                if path.exists() or path.is_symlink():
                    _remove(path)
                    removed.append(str(path))
        removed += self._remove_dead_exports()
        return removed

    def _remove_dead_exports(self) -> list[str]:
        """The temporary folders of exports whose process is gone (``kill -9``)."""
        removed = [str(path) for path in remove_stale_temps(self.exports_dir)]
        for journal in sorted(self.exports_dir.glob("*.json")):
            if journal.name.startswith(TEMP_PREFIX):
                continue  # a journal being written: remove_stale_temps' to judge
            lock = journal.with_suffix(_LOCK)
            if held_by_another(lock):
                continue  # an export in progress
            try:
                temp = Path(json.loads(journal.read_text(encoding="utf-8"))["temp"])
            except (OSError, ValueError, KeyError, TypeError):
                temp = None  # a journal torn by a crash: its export never began writing
            if temp is not None and temp.name.startswith(EXPORT_TEMP) and temp.exists():
                shutil.rmtree(temp, ignore_errors=True)
                removed.append(str(temp))
            for path in (journal, lock):
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()
        for lock in sorted(self.exports_dir.glob(f"*{_LOCK}")):
            # A lock without its journal: the export was killed before it wrote one.
            if not lock.with_suffix(".json").exists() and not held_by_another(lock):
                with contextlib.suppress(FileNotFoundError):
                    lock.unlink()
                removed.append(str(lock))
        return removed

    # -- reading ---------------------------------------------------------------------

    def people(self) -> list[Person]:
        return self._people()

    def _people(self, where: str = "", params: tuple[str, ...] = ()) -> list[Person]:
        rows = self._db.execute(
            "SELECT p.uid, p.name, p.external_id, p.created_at, p.consent_version, "
            "p.consent_at, COUNT(ph.id) FROM people p LEFT JOIN photos ph "
            f"ON ph.person_id = p.id AND ph.kind = 'aligned' {where} "
            "GROUP BY p.id ORDER BY p.name_key",
            params,
        ).fetchall()
        return [
            Person(
                uid=uid,
                name=name,
                external_id=external,
                created_at=datetime.fromisoformat(created),
                consent=Consent(version, datetime.fromisoformat(consent_at)),
                photo_count=int(count),
            )
            for uid, name, external, created, version, consent_at, count in rows
        ]

    def by_uid(self, uid: str) -> Person | None:
        """The person with this opaque id, or None."""
        found = self._people("WHERE p.uid = ?", (uid,))
        return found[0] if found else None

    def find(self, name: str) -> Person | None:
        """The person of this name (compared as :func:`name_key` does), or None."""
        found = self._people("WHERE p.name_key = ?", (name_key(name),))
        return found[0] if found else None

    def state(self) -> StoreState:
        """The store's people and photos as one digest (see :class:`StoreState`)."""
        import hashlib

        rows = self._db.execute(
            "SELECT p.uid, p.name, ph.id FROM people p LEFT JOIN photos ph "
            "ON ph.person_id = p.id AND ph.kind = 'aligned' ORDER BY p.uid, ph.id"
        ).fetchall()
        digest = hashlib.sha256()
        people: dict[str, str] = {}
        for uid, name, photo in rows:
            people[uid] = name
            digest.update(f"{uid}\x00{name}\x00{photo}\x01".encode())
        return StoreState(digest.hexdigest(), tuple(people.items()))

    def watcher(self) -> StoreWatcher:
        """A separate read-only view of who is enrolled, cheap to poll every frame."""
        return StoreWatcher(self.root)

    def get(self, name: str) -> Person:
        person = self.find(name)
        if person is None:
            raise UserError(f"no enrolled person is named {name.strip()!r}; `kiosk people list`")
        return person

    def _person_id(self, name: str) -> tuple[int, str]:
        row = self._db.execute(
            "SELECT id, uid FROM people WHERE name_key = ?", (name_key(name),)
        ).fetchone()
        if row is None:
            raise UserError(f"no enrolled person is named {name.strip()!r}; `kiosk people list`")
        return int(row[0]), str(row[1])

    def photos(self, name: str, kind: str = "aligned") -> list[PhotoRecord]:
        person_id, uid = self._person_id(name)
        rows = self._db.execute(
            "SELECT id, file, kind, pose FROM photos WHERE person_id = ? AND kind = ? ORDER BY id",
            (person_id, kind),
        ).fetchall()
        return [PhotoRecord(int(i), self.photos_dir / uid / f, k, p) for i, f, k, p in rows]

    def read_image(self, record: PhotoRecord) -> NDArray[np.uint8]:
        return decode_image(self.read_png(record), f"the stored photo {record.file}")

    def read_png(self, record: PhotoRecord) -> bytes:
        """A stored photo's PNG bytes, decrypted (to copy it elsewhere without re-encoding)."""
        try:
            data = record.file.read_bytes()
        except OSError as error:
            raise UserError(f"cannot read the stored photo {record.file}: {error}") from error
        uid = record.file.parent.name  # photos/<uid>/<file>
        return self._open_for(uid, data, f"the stored photo {record.file}")

    def crops(self, name: str) -> list[NDArray[np.uint8]]:
        return [self.read_image(record) for record in self.photos(name)]

    def crops_by_person(self) -> dict[str, list[NDArray[np.uint8]]]:
        return {person.name: self.crops(person.name) for person in self.people()}

    # -- writing ---------------------------------------------------------------------

    def add_person(
        self,
        name: str,
        photos: Sequence[PhotoToStore],
        consent: Consent,
        external_id: str | None = None,
        *,
        uid: str | None = None,
    ) -> Person:
        """Store a person and their photos atomically: all of it, or nothing at all.

        ``uid`` keeps an id given elsewhere (a site registry's); else a new one is made.
        """
        with contextlib.ExitStack() as locks:
            staged = self._stage(locks, name, photos, consent, external_id, uid)
            self._commit([staged])
        return self.get(staged.name)

    def _stage(
        self,
        locks: contextlib.ExitStack,
        name: str,
        photos: Sequence[PhotoToStore],
        consent: Consent,
        external_id: str | None = None,
        uid: str | None = None,
    ) -> StagedPerson:
        """Write a person's files in ``staging/<uid>`` (fsynced), holding its lock until
        ``locks`` closes; nothing is enrolled until :meth:`_commit`."""
        name = validate_name(name)
        if not photos:
            raise UserError(f"no photos to store for {name!r}")
        self._refuse_enrolled(name)
        if uid is None:
            uid = new_uid()
        elif not _UID.fullmatch(uid):
            raise UserError(f"{uid!r} is not a person id (32 lowercase hex digits)")
        elif self.by_uid(uid) is not None:
            raise UserError(f"a person with id {uid} is already enrolled")
        stage = self.staging_dir / uid
        lock = self.staging_dir / f"{uid}{_LOCK}"
        wrapped, seal = self._new_data_key()
        rows: list[tuple[str, str, str, str]] = []
        try:
            locks.enter_context(held_lock(lock))
            locks.callback(_remove, lock)  # runs before the lock is let go
            stage.mkdir(mode=PRIVATE_DIR)
            for index, photo in enumerate(photos):
                file = f"{index:03d}.png"
                png = encode_png(photo.crop)
                _write_file(stage / file, seal(png))
                rows.append((file, "aligned", photo.pose, hashlib.sha256(png).hexdigest()))
                if photo.original is not None:
                    file = f"{index:03d}-original.png"
                    png = encode_png(photo.original)
                    _write_file(stage / file, seal(png))
                    rows.append((file, "original", photo.pose, hashlib.sha256(png).hexdigest()))
            fsync_dir(stage)
        except OSError as error:
            shutil.rmtree(stage, ignore_errors=True)
            raise _disk_error(error, f"saving {name!r}") from error
        except BaseException:
            shutil.rmtree(stage, ignore_errors=True)
            raise
        return StagedPerson(uid, name, external_id or None, consent, tuple(rows), stage, wrapped)

    def staged_png(self, person: StagedPerson, file: Path) -> bytes:
        """A staged file's PNG bytes, decrypted with the person's data key (not yet in
        the database) when the store encrypts."""
        data = file.read_bytes()
        if person.data_key is None:
            return data
        from cryptography.fernet import Fernet

        return Fernet(self._operator().decrypt(person.data_key)).decrypt(data)

    def _refuse_enrolled(self, name: str) -> None:
        if self._db.execute(
            "SELECT 1 FROM people WHERE name_key = ?", (name_key(name),)
        ).fetchone():
            raise UserError(f"a person named {name!r} is already enrolled; choose another name")

    def commit_staged(self, staged: Sequence[StagedPerson]) -> None:
        """Enroll every staged person in one transaction (an import): all, or none."""
        self._commit(staged)

    def _commit(self, staged: Sequence[StagedPerson]) -> None:
        now = utc_now().isoformat()
        moved: list[StagedPerson] = []
        what = (
            f"saving {staged[0].name!r}" if len(staged) == 1 else f"importing {len(staged)} people"
        )
        try:
            with self._transaction() as db:
                for person in staged:
                    cursor = db.execute(
                        "INSERT INTO people (uid, name, name_key, external_id, created_at, "
                        "consent_version, consent_at, data_key) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                        (
                            person.uid,
                            person.name,
                            name_key(person.name),
                            person.external_id,
                            now,
                            person.consent.version,
                            person.consent.at.isoformat(),
                            person.data_key,
                        ),
                    )
                    db.executemany(
                        "INSERT INTO photos (person_id, file, kind, pose, created_at, digest) "
                        "VALUES (?, ?, ?, ?, ?, ?)",
                        [(cursor.lastrowid, f, k, p, now, d) for f, k, p, d in person.rows],
                    )
                for person in staged:
                    os.rename(person.stage, self.photos_dir / person.uid)
                    moved.append(person)
                fsync_dir(self.photos_dir)
        except sqlite3.IntegrityError as error:
            self._undo(staged, moved)
            if "name_key" in str(error):
                raise UserError(
                    f"{what} failed: a person of the same name was enrolled meanwhile "
                    "(by another window or command); nothing was changed"
                ) from error
            raise _disk_error(error, what) from error
        except (OSError, sqlite3.Error) as error:
            self._undo(staged, moved)
            raise _disk_error(error, what) from error
        except BaseException:
            self._undo(staged, moved)
            raise

    def _undo(self, staged: Sequence[StagedPerson], moved: Sequence[StagedPerson]) -> None:
        """After a failed commit (rolled back): no folder of these people is left."""
        for person in moved:
            _remove(self.photos_dir / person.uid)
        for person in staged:
            _remove(person.stage)

    def _new_data_key(self) -> tuple[bytes | None, Callable[[bytes], bytes]]:
        """A new person's data key, wrapped by the operator's key, and what seals with it
        (no key, and no sealing, when the store is not encrypted)."""
        if not self._sealed:
            return None, lambda data: data
        from cryptography.fernet import Fernet

        key = Fernet.generate_key()
        return self._operator().encrypt(key), Fernet(key).encrypt

    def rename(self, old: str, new: str) -> Person:
        person_id, _ = self._person_id(old)
        new = validate_name(new)
        clash = self._db.execute(
            "SELECT id FROM people WHERE name_key = ?", (name_key(new),)
        ).fetchone()
        if clash is not None and int(clash[0]) != person_id:
            raise UserError(f"a person named {new!r} is already enrolled; choose another name")
        try:
            with self._transaction() as db:
                db.execute(
                    "UPDATE people SET name = ?, name_key = ? WHERE id = ?",
                    (new, name_key(new), person_id),
                )
        except sqlite3.Error as error:
            raise _disk_error(error, f"renaming {old!r}") from error
        return self.get(new)

    def delete(self, name: str, reason: str = "deleted on request", action: str = "delete") -> str:
        """Remove a person's records, photos and embeddings; log it by opaque id only."""
        person_id, uid = self._person_id(name)
        self._remove(person_id, uid, action, reason)
        return uid

    def delete_uid(self, uid: str, reason: str, action: str = "delete") -> bool:
        """Remove the person with this opaque id, if there is one; whether there was."""
        row = self._db.execute("SELECT id FROM people WHERE uid = ?", (uid,)).fetchone()
        if row is None:
            return False
        self._remove(int(row[0]), uid, action, reason)
        return True

    def _remove(self, person_id: int, uid: str, action: str, reason: str) -> None:
        """Delete the person's row (and with it, their data key), photos' rows and
        embeddings; journal what the kiosk must still remove; then their files. Nothing
        here decrypts, so it needs no key."""
        try:
            with self._transaction() as db:
                row = db.execute("SELECT name FROM people WHERE id = ?", (person_id,)).fetchone()
                name = str(row[0])
                digests = [
                    row[0]
                    for row in db.execute(
                        "SELECT digest FROM photos WHERE person_id = ? AND digest != '' "
                        "ORDER BY id",
                        (person_id,),
                    )
                ]
                exports = db.execute(
                    "SELECT root, folder_digest, device FROM exports WHERE person_id = ? "
                    "ORDER BY root",
                    (person_id,),
                ).fetchall()
                now = utc_now().isoformat()
                db.execute(
                    "INSERT OR REPLACE INTO erasures VALUES (?, ?, ?, ?, ?)",
                    (uid, name_digest(name), now, json.dumps(digests), json.dumps(exports)),
                )
                db.execute("DELETE FROM people WHERE id = ?", (person_id,))
                db.execute(
                    "INSERT INTO audit (at, action, subject, reason) VALUES (?, ?, ?, ?)",
                    (now, action, uid, reason),
                )
        except sqlite3.Error as error:
            raise _disk_error(error, "the deletion") from error
        self._ciphers.pop(uid, None)
        # After the commit: a crash here leaves an orphan folder that recover() removes.
        shutil.rmtree(self.photos_dir / uid, ignore_errors=True)
        self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # no deleted rows linger in the WAL

    # -- the erasure journal -----------------------------------------------------------

    def pending_erasures(self) -> list[Erasure]:
        """People deleted or purged whose traces outside the store are still to remove."""
        rows = self._db.execute(
            "SELECT uid, name_digest, at, photo_digests, exports FROM erasures ORDER BY at, uid"
        ).fetchall()
        return [
            Erasure(
                uid,
                digest,
                datetime.fromisoformat(at),
                tuple(json.loads(photos)),
                tuple((Path(root), folder, int(dev)) for root, folder, dev in json.loads(exports)),
            )
            for uid, digest, at, photos, exports in rows
        ]

    def erasure_done(self, uid: str) -> None:
        """The kiosk removed everything of ``uid`` outside the store: forget the entry."""
        try:
            with self._transaction() as db:
                db.execute("DELETE FROM erasures WHERE uid = ?", (uid,))
        except sqlite3.Error as error:
            raise _disk_error(error, "the erasure journal") from error
        self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")

    # -- retention -------------------------------------------------------------------

    def expired(self, now: datetime | None = None) -> list[Person]:
        if self.retention_days is None:
            return []
        limit = (now or utc_now()) - timedelta(days=self.retention_days)
        return [p for p in self.people() if p.consent.at < limit]

    def purge_expired(self, now: datetime | None = None) -> list[str]:
        """Purge everyone whose consent is older than the retention period, each as
        :meth:`delete` removes a person (a replica's also queues it for the registry);
        their uids."""
        reason = f"retention period of {self.retention_days} days"
        return [self.delete(person.name, reason, "purge") for person in self.expired(now)]

    def audit(self) -> list[AuditEntry]:
        rows = self._db.execute("SELECT at, action, subject, reason FROM audit ORDER BY id")
        return [AuditEntry(datetime.fromisoformat(a), b, c, d) for a, b, c, d in rows]

    # -- embeddings cache --------------------------------------------------------------

    def embeddings(
        self,
        model: str,
        embed: Callable[[list[NDArray[np.uint8]]], NDArray[np.float32]],
        names: Sequence[str] | None = None,
    ) -> tuple[NDArray[np.float32], list[str]]:
        """Every aligned photo's embedding under ``model`` and its person's name.

        ``names`` limits them to those people. See :meth:`embeddings_by_person`.
        """
        wanted = None if names is None else {name_key(n) for n in names}
        people = [p for p in self.people() if wanted is None or name_key(p.name) in wanted]
        by_uid = self.embeddings_by_person(model, embed, uids=[p.uid for p in people])
        vectors = [by_uid[p.uid] for p in people if p.uid in by_uid]
        labels = [p.name for p in people if p.uid in by_uid for _ in by_uid[p.uid]]
        if not vectors:
            return np.zeros((0, 0), dtype=np.float32), []
        return np.concatenate(vectors), labels

    def embeddings_by_person(
        self,
        model: str,
        embed: Callable[[list[NDArray[np.uint8]]], NDArray[np.float32]],
        *,
        uids: Sequence[str] | None = None,
        batch_size: int = 32,
    ) -> dict[str, NDArray[np.float32]]:
        """Each person's aligned photos' embeddings under ``model``, by uid (people without
        a usable photo are left out).

        Embeddings missing from the cache are computed with ``embed``, ``batch_size`` crops
        at a time, and stored (encrypted when the store is); they go with the photo when
        the person is deleted. A stored photo that cannot be read (damaged on disk) is
        skipped, logged and listed in :attr:`unreadable`, so one bad file never stops the
        others from being recognized.
        """
        wanted = None if uids is None else set(uids)
        records: list[tuple[str, PhotoRecord]] = []
        for person in self.people():
            if wanted is None or person.uid in wanted:
                records += [(person.uid, record) for record in self.photos(person.name)]
        cached = {
            int(photo_id): vector
            for photo_id, vector in self._db.execute(
                "SELECT photo_id, vector FROM embeddings WHERE model = ?", (model,)
            )
        }
        found: dict[int, NDArray[np.float32]] = {
            record.id: np.frombuffer(
                self._open_for(uid, bytes(cached[record.id]), "a cached embedding"),
                dtype=np.float32,
            )
            for uid, record in records
            if record.id in cached
        }
        missing = [(uid, record) for uid, record in records if record.id not in cached]
        for start in range(0, len(missing), batch_size):
            crops: list[NDArray[np.uint8]] = []
            readable: list[tuple[str, PhotoRecord]] = []
            for uid, record in missing[start : start + batch_size]:
                try:
                    crops.append(self.read_image(record))
                except UserError as error:
                    self.unreadable[record.id] = str(error)
                    log.warning("skipping a stored photo: %s", error)
                    continue
                readable.append((uid, record))
            if not readable:
                continue
            vectors = np.asarray(embed(crops), dtype=np.float32)
            rows = [
                (record.id, model, self._seal_for(uid, vector.tobytes()))
                for (uid, record), vector in zip(readable, vectors, strict=True)
            ]
            try:
                with self._transaction() as db:
                    # Another process (the kiosk, the wizard) may have cached the same photo.
                    db.executemany("INSERT OR IGNORE INTO embeddings VALUES (?, ?, ?)", rows)
            except sqlite3.Error as error:
                raise _disk_error(error, "caching embeddings") from error
            found.update(dict(zip((r.id for _, r in readable), vectors, strict=True)))
        grouped: dict[str, list[NDArray[np.float32]]] = {}
        for uid, record in records:
            if record.id in found:
                grouped.setdefault(uid, []).append(found[record.id])
        return {uid: np.stack(vectors) for uid, vectors in grouped.items()}

    def cached_embeddings(self, uid: str) -> dict[str, list[bytes]]:
        """The cached embeddings of one person's aligned photos, per model key, as raw
        float32 bytes in photo order; a model appears only when every photo has one."""
        rows = self._db.execute(
            "SELECT e.model, e.vector, ph.id FROM embeddings e JOIN photos ph ON ph.id = "
            "e.photo_id JOIN people p ON p.id = ph.person_id WHERE p.uid = ? AND "
            "ph.kind = 'aligned' ORDER BY e.model, ph.id",
            (uid,),
        ).fetchall()
        count = self._db.execute(
            "SELECT COUNT(*) FROM photos ph JOIN people p ON p.id = ph.person_id "
            "WHERE p.uid = ? AND ph.kind = 'aligned'",
            (uid,),
        ).fetchone()[0]
        found: dict[str, list[bytes]] = {}
        for model, vector, _ in rows:
            found.setdefault(model, []).append(
                self._open_for(uid, bytes(vector), "a cached embedding")
            )
        return {model: vectors for model, vectors in found.items() if len(vectors) == count}

    def embedding_count(self) -> int:
        """How many embeddings are cached (cheap: a change says new ones were computed)."""
        return int(self._db.execute("SELECT COUNT(*) FROM embeddings").fetchone()[0])

    def cache_embeddings(self, uid: str, model: str, vectors: Sequence[bytes]) -> bool:
        """Cache embeddings computed elsewhere (raw float32 bytes, one per aligned photo in
        photo order); False when the person is unknown or the photo count differs."""
        ids = [
            int(row[0])
            for row in self._db.execute(
                "SELECT ph.id FROM photos ph JOIN people p ON p.id = ph.person_id "
                "WHERE p.uid = ? AND ph.kind = 'aligned' ORDER BY ph.id",
                (uid,),
            )
        ]
        if not ids or len(ids) != len(vectors):
            return False
        with self._transaction() as db:
            db.executemany(
                "INSERT OR REPLACE INTO embeddings VALUES (?, ?, ?)",
                [
                    (i, model, self._seal_for(uid, bytes(v)))
                    for i, v in zip(ids, vectors, strict=True)
                ],
            )
        return True

    # -- folder-per-person exchange -----------------------------------------------------

    def export(self, target: Path, skipped: list[Skipped] | None = None) -> int:
        """Write ``<target>/<name>/<image>.png`` (decrypted aligned crops); the photo count.

        All or nothing: the export is written to a temporary folder beside ``target``
        (0700, files 0600: they are biometric data) and renamed to ``target`` once
        complete, so a failure (a full disk, ``kill -9``) leaves no partial export; what
        a killed run left is removed the next time the store opens. ``target`` must not
        exist, or be an empty folder. A stored photo that cannot be read is left out and
        added to ``skipped``.
        """
        people = self.people()
        refused = []
        for person in people:
            try:
                validate_name(person.name)
            except UserError as error:  # stored by an older version, under looser rules
                refused.append(f"person {person.uid}: {error}")
        if refused:
            raise UserError(
                "nothing was exported: rename these people first (`kiosk people rename "
                "OLD NEW`): " + "; ".join(refused)
            )
        if target.is_symlink() or (target.exists() and not target.is_dir()):
            raise UserError(f"{target} exists and is not a folder: export into a new folder")
        if target.is_dir() and any(target.iterdir()):
            raise UserError(
                f"{target} is not empty: export into a new folder (an export never mixes "
                "with other files)"
            )
        token = uuid.uuid4().hex
        temp = target.parent / f"{EXPORT_TEMP}{token}"
        journal = self.exports_dir / f"{token}.json"
        lock = self.exports_dir / f"{token}{_LOCK}"
        count = 0
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            with held_lock(lock):
                write_json_atomic(journal, {"temp": str(temp.absolute()), "pid": os.getpid()})
                try:
                    temp.mkdir(mode=PRIVATE_DIR)
                    _write_file(
                        temp / EXPORT_MARKER,
                        b"Aligned face crops exported by `kiosk people export`.\n",
                    )
                    for person in people:
                        self._record_export(person, target)  # before a file is written
                        count += self._export_person(person, temp / person.name, skipped)
                    fsync_dir(temp)
                    if target.is_dir():
                        target.rmdir()  # empty: checked above
                    os.rename(temp, target)
                    fsync_dir(target.parent)
                except BaseException:
                    shutil.rmtree(temp, ignore_errors=True)
                    self._record_export(None, target)  # nothing was exported there
                    raise
                finally:
                    for path in (journal, lock):
                        with contextlib.suppress(FileNotFoundError):
                            path.unlink()
        except OSError as error:
            raise _disk_error(error, f"the export to {target}") from error
        return count

    def _record_export(self, person: Person | None, target: Path) -> None:
        """Remember that ``person`` is exported to ``target`` (before a file is written),
        so that their erasure finds the folder: by a digest of its name, never the name.
        ``person`` None: forget every record of ``target`` (an export that failed)."""
        root = str(target.resolve())
        try:
            device = target.parent.stat().st_dev if person is not None else 0
            with self._transaction() as db:
                if person is None:
                    db.execute("DELETE FROM exports WHERE root = ?", (root,))
                else:
                    db.execute(
                        "INSERT OR IGNORE INTO exports SELECT id, ?, ?, ? FROM people "
                        "WHERE uid = ?",
                        (root, name_digest(person.name), device, person.uid),
                    )
        except (OSError, sqlite3.Error) as error:
            raise _disk_error(error, f"the export to {target}") from error

    def _export_person(self, person: Person, folder: Path, skipped: list[Skipped] | None) -> int:
        folder.mkdir(mode=PRIVATE_DIR)
        count = 0
        for index, record in enumerate(self.photos(person.name)):
            try:
                data = self.read_png(record)
                decode_image(data, f"the stored photo {record.file}")  # damaged: left out
            except UserError as error:
                log.warning("not exported: %s", error)
                self.unreadable[record.id] = str(error)
                if skipped is not None:
                    skipped.append(Skipped(f"{person.uid}/{record.file.name}", str(error)))
                continue
            _write_file(folder / f"{index:03d}.png", data)
            count += 1
        fsync_dir(folder)
        return count

    def plan_import(self, source: Path) -> ImportPlan:
        """Check a folder for :meth:`import_folder` before anything is read or written:
        a :class:`UserError` lists every person folder that cannot be imported (an
        unsafe or too long name, two folders of one person under case or Unicode
        normalisation, an unreadable folder, a person already enrolled), so the folder
        is fixed once and imported whole. Files are only sorted here (photos, others)."""
        if not source.is_dir():
            raise UserError(
                f"{source} is not a folder of per-person folders (<dir>/<name>/<image>)"
            )
        aligned = (source / EXPORT_MARKER).exists()
        try:
            people, left_out = scan_people(source)
        except OSError as error:
            raise UserError(f"{source} cannot be read: {error.strerror or error}") from error
        problems = [f"{item.path}: {item.reason}" for item in left_out if item.kind == PERSON]
        enrolled = [name for name in people if self.find(name) is not None]
        if enrolled:
            shown = ", ".join(repr(n) for n in enrolled[:10])
            more = f" and {len(enrolled) - 10} more" if len(enrolled) > 10 else ""
            everyone = (
                " (all of them: this folder was imported already)"
                if len(enrolled) == len(people)
                else ""
            )
            problems.append(
                f"already enrolled{everyone}: {shown}{more}; remove their folders, or rename "
                "or delete them in the store (`kiosk people rename|delete`)"
            )
        if problems:
            raise UserError(
                f"nothing was imported from {source}: {len(problems)} problem(s) to fix "
                "first: " + "; ".join(problems)
            )
        if not people:
            raise UserError(f"{source} has no per-person folders (<dir>/<name>/<image>)")
        skipped = [item for item in left_out if item.kind != PERSON]
        inside = source.resolve()
        photos: dict[str, list[Path]] = {}
        for name, files in people.items():
            images, others = split_images(files)
            skipped += others
            kept: list[Path] = []
            for path in images:
                real = path.resolve()
                if real != inside and inside not in real.parents:
                    skipped.append(
                        Skipped(str(path), f"a link to {real}, outside {source}: copy it in")
                    )
                elif len(kept) >= MAX_IMPORT_PHOTOS:
                    skipped.append(
                        Skipped(str(path), f"over the {MAX_IMPORT_PHOTOS} photos kept per person")
                    )
                else:
                    kept.append(path)
            photos[name] = kept
        return ImportPlan(aligned, photos, skipped)

    def import_folder(
        self,
        source: Path,
        consent: Consent,
        align: Callable[[NDArray[np.uint8]], NDArray[np.uint8] | None] | None = None,
        skipped: list[Skipped] | None = None,
    ) -> dict[str, int]:
        """Add each ``<source>/<name>/`` as a person; the photos stored per name.

        All or nothing. The folder is checked first (:meth:`plan_import`: any person who
        cannot be imported refuses the whole import, before a photo is read); then every
        person is staged and all are committed in one transaction, so a failure or a
        ``kill -9`` leaves nobody imported and a rerun starts clean.

        The folders are read by the one folder-per-person rule (:func:`scan_people`).
        A folder written by :meth:`export` holds aligned crops, stored as they are; any
        other folder's images go through ``align`` (detect and align the largest face;
        None when there is none). What is left out (files that are not images, are
        refused by :func:`read_image` or link outside ``source``, photos without a face,
        people without a usable photo) is added to ``skipped``, each with its reason.
        """
        plan = self.plan_import(source)
        if not plan.aligned and align is None:
            raise UserError(f"{source} holds photos, not aligned crops: a face aligner is needed")
        left_out = list(plan.skipped)
        imported: dict[str, int] = {}
        with contextlib.ExitStack() as locks:
            staged: list[StagedPerson] = []
            try:
                for name, paths in plan.people.items():
                    photos = []
                    for path in paths:
                        try:
                            image = read_image(path, where="the file")  # path: beside
                        except ImageRefused as refused:
                            left_out.append(Skipped(str(path), str(refused)))
                            continue
                        crop = image if plan.aligned or align is None else align(image)
                        if crop is None:
                            left_out.append(Skipped(str(path), "no face found"))
                            continue
                        photos.append(NewPhoto(crop=np.asarray(crop, dtype=np.uint8)))
                    if not photos:
                        left_out.append(
                            Skipped(
                                str(source / name),
                                "no usable photo: not imported (import it on its own once "
                                "it has photos)",
                                PERSON,
                            )
                        )
                        continue
                    staged.append(self._stage(locks, name, photos, consent))
                    imported[name] = len(photos)
                if staged:
                    self.commit_staged(staged)
            except BaseException:
                for person in staged:
                    _remove(person.stage)
                raise
        if skipped is not None:
            skipped.extend(left_out)
        return imported

    # -- consistency -------------------------------------------------------------------

    def damaged_photos(self) -> dict[str, list[str]]:
        """Every stored photo that cannot be read back (missing, not decryptable, not an
        image), by person id: what `kiosk doctor` lists. Reads every photo."""
        damaged: dict[str, list[str]] = {}
        for person in self.people():
            for kind in ("aligned", "original"):
                for record in self.photos(person.name, kind):
                    try:
                        decode_image(self.read_png(record), f"stored photo {record.file.name}")
                    except UserError as error:
                        damaged.setdefault(person.uid, []).append(str(error))
        return damaged

    def check(self) -> list[str]:
        """What is inconsistent in the store (empty when all is well): the database's
        own check, people without their folder or photo files, folders or staging left
        behind, damaged photos. For tests, benchmarks and `kiosk doctor`."""
        problems = [
            f"database: {row[0]}"
            for row in self._db.execute("PRAGMA integrity_check")
            if row[0] != "ok"
        ]
        problems += [
            f"database: dangling row {row}" for row in self._db.execute("PRAGMA foreign_key_check")
        ]
        known = set()
        for person in self.people():
            known.add(person.uid)
            folder = self.photos_dir / person.uid
            if not folder.is_dir():
                problems.append(f"person {person.uid}: no photo folder")
                continue
            files = {
                f
                for (f,) in self._db.execute(
                    "SELECT ph.file FROM photos ph JOIN people p ON p.id = ph.person_id "
                    "WHERE p.uid = ?",
                    (person.uid,),
                )
            }
            on_disk = {p.name for p in folder.iterdir()}
            problems += [f"person {person.uid}: {f} is missing" for f in sorted(files - on_disk)]
            problems += [f"person {person.uid}: stray file {f}" for f in sorted(on_disk - files)]
        for path in sorted(self.photos_dir.iterdir()):
            if path.name not in known:
                problems.append(f"photos/{path.name}: belongs to nobody")
        for folder in (self.staging_dir, self.exports_dir):
            for path in sorted(folder.iterdir()):
                problems.append(f"{folder.name}/{path.name}: left behind")
        for uid, reasons in self.damaged_photos().items():
            problems += [f"person {uid}: {reason}" for reason in reasons]
        return problems
